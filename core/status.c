/* status.c: thread-local error messages and the allocation hook. */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>

static _Thread_local char msg[1024];

nb_status nb_fail(nb_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return code;
}

nb_status nb_fail_prefix(nb_status code, const char *fmt, ...) {
    char pre[256], old[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", msg);
    snprintf(msg, sizeof msg, "%s: %s", pre, old);
    return code;
}

const char *nb_errmsg(void) { return msg; }
void nb_clear_error(void) { msg[0] = 0; }

const char *nb_status_name(nb_status s) {
    static const char *names[] = {"ok", "invalid argument", "shape mismatch", "I/O error",
                                  "bad file format", "out of memory", "non-finite value",
                                  "out of range", "interrupted", "unsupported"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown status";
}

void nb_assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "nibble: internal error: assertion `%s` failed at %s:%d\n", expr, file, line);
    abort();
}

static long fail_after = -1;

void nb_alloc_fail_after(long n) { __atomic_store_n(&fail_after, n, __ATOMIC_SEQ_CST); }

static int injected_failure(void) {
    long n = __atomic_load_n(&fail_after, __ATOMIC_SEQ_CST);
    if (n < 0) return 0;
    if (n == 0) return 1;
    __atomic_store_n(&fail_after, n - 1, __ATOMIC_SEQ_CST);
    return 0;
}

void *nb_malloc(size_t bytes) {
    if (bytes > NB_MAX_ALLOC || injected_failure()) return NULL;
    if (bytes == 0) bytes = 1;
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void *nb_malloc_huge(size_t bytes) {
    const size_t huge = (size_t)1 << 21;
    if (bytes < huge) return nb_malloc(bytes);
    if (bytes > NB_MAX_ALLOC || injected_failure()) return NULL;
    size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE); /* advice only: without it the pages stay 4 KiB */
#endif
    return p;
}

void *nb_calloc(size_t n, size_t size) {
    if (size != 0 && n > NB_MAX_ALLOC / size) return NULL;
    void *p = nb_malloc(n * size);
    if (p) memset(p, 0, n * size);
    return p;
}

void *nb_realloc(void *p, size_t bytes) {
    if (bytes > NB_MAX_ALLOC || injected_failure()) return NULL;
    return realloc(p, bytes ? bytes : 1); /* realloc keeps malloc's 16-byte alignment only */
}

void nb_free(void *p) { free(p); }

char *nb_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = nb_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
