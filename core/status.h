/* status.h: status codes, error messages, assertions and the allocation hook. */
#ifndef NB_STATUS_H
#define NB_STATUS_H

#include <stddef.h>
#include <stdint.h>

/* Status codes. Values are stable (exit codes and tests refer to them). */
typedef enum nb_status {
    NB_OK = 0,
    NB_EINVAL = 1,       /* bad argument or value (user input) */
    NB_ESHAPE = 2,       /* shapes do not fit together */
    NB_EIO = 3,          /* open/read/write failed */
    NB_EFORMAT = 4,      /* file is truncated, corrupted or foreign */
    NB_ENOMEM = 5,       /* allocation failed or refused (absurd size) */
    NB_ENAN = 6,         /* non-finite value met */
    NB_ERANGE = 7,       /* value out of range */
    NB_EINTR = 8,        /* interrupted (Ctrl-C) */
    NB_EUNSUPPORTED = 9, /* valid request that this build or format cannot do */
} nb_status;

/* Records a printf-style message for the calling thread and returns code. The message is
   read with nb_errmsg() until the next nb_fail. */
nb_status nb_fail(nb_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with "prefix: " (e.g. a file name) and returns code. */
nb_status nb_fail_prefix(nb_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *nb_errmsg(void);
const char *nb_status_name(nb_status s);
void nb_clear_error(void);

/* A caller bug (not bad input): print file:line and abort. */
#define NB_ASSERT(c)                                                                    \
    do {                                                                                \
        if (!(c)) nb_assert_fail(#c, __FILE__, __LINE__);                               \
    } while (0)
void nb_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* Return early on failure. */
#define NB_TRY(expr)                                                                    \
    do {                                                                                \
        nb_status nb_try_s_ = (expr);                                                   \
        if (nb_try_s_ != NB_OK) return nb_try_s_;                                       \
    } while (0)

/* Heap allocation, 64-byte aligned. All library allocation goes through these so tests can
   inject failures (nb_alloc_fail_after). Sizes above NB_MAX_ALLOC are refused with NB_ENOMEM. */
#define NB_MAX_ALLOC ((size_t)16 << 30)
void *nb_malloc(size_t bytes);
void *nb_calloc(size_t n, size_t size);
void *nb_realloc(void *p, size_t bytes);
/* nb_malloc for big buffers read over and over (weights, KV caches): from 2 MiB up, 2 MiB-aligned
   and advised for transparent huge pages (madvise), so that streaming them does not miss the TLB
   on every 4 KiB page; below that, nb_malloc. Freed with nb_free. */
void *nb_malloc_huge(size_t bytes);
void nb_free(void *p);
char *nb_strdup(const char *s);
/* Test hook: the n-th allocation from now fails (n < 0 disables). */
void nb_alloc_fail_after(long n);

#endif
