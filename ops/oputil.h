/* oputil.h: input checks and threading thresholds shared by the op families (internal to ops/). */
#ifndef NB_OPUTIL_H
#define NB_OPUTIL_H

#include <stdio.h>

#include "ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Thread a loop only when it has at least this many float operations: below it the fork/join
   costs more than the loop (measured order of magnitude: ~2 us per region on 2 cores). */
#define NB_OMP_MIN 32768
/* Rows per partial sum when parameter gradients (dw of a norm) are reduced over rows: a fixed
   chunk size, so the order of float additions does not depend on the thread count. */
#define NB_CHUNK_ROWS 64

static inline int omp_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* threads of the current parallel region (1 outside one) */
static inline int omp_threads_in_region(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static inline int omp_tid(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* "(2, 3, 4)" into a caller buffer of 64 bytes */
#define SHAPE(x, buf) nb_shape_str((x), (buf), sizeof(buf))

/* An f32 input must be present, contiguous and non-empty unless allow_empty. Returns 1 (and makes
   the tape's status sticky) when not. */
static inline int bad_f32(nb_tape *t, const char *op, const char *arg, const nb_tensor *x, int allow_empty) {
    if (t->status != NB_OK) return 1;
    if (!x) {
        nb_tape_fail(t, NB_EINVAL, "%s: %s is NULL", op, arg);
        return 1;
    }
    char b[64];
    if (x->dtype != NB_F32) {
        nb_tape_fail(t, NB_EINVAL, "%s: %s %s must be f32, got %s", op, arg, SHAPE(x, b), nb_dtype_name(x->dtype));
        return 1;
    }
    if (!nb_is_contiguous(x)) {
        nb_tape_fail(t, NB_ESHAPE, "%s: %s %s must be contiguous", op, arg, SHAPE(x, b));
        return 1;
    }
    if (!allow_empty && nb_numel(x) == 0) {
        nb_tape_fail(t, NB_ESHAPE, "%s: %s %s is empty", op, arg, SHAPE(x, b));
        return 1;
    }
    return 0;
}

/* Same for an I32 index tensor (ids, targets). */
static inline int bad_i32(nb_tape *t, const char *op, const char *arg, const nb_tensor *x) {
    if (t->status != NB_OK) return 1;
    if (!x) {
        nb_tape_fail(t, NB_EINVAL, "%s: %s is NULL", op, arg);
        return 1;
    }
    char b[64];
    if (x->dtype != NB_I32) {
        nb_tape_fail(t, NB_EINVAL, "%s: %s %s must be i32, got %s", op, arg, SHAPE(x, b), nb_dtype_name(x->dtype));
        return 1;
    }
    if (!nb_is_contiguous(x) || nb_numel(x) == 0) {
        nb_tape_fail(t, NB_ESHAPE, "%s: %s %s must be contiguous and non-empty", op, arg, SHAPE(x, b));
        return 1;
    }
    return 0;
}

/* Shape mismatch message naming both shapes. */
static inline void *fail_shapes(nb_tape *t, const char *op, const char *what, const nb_tensor *a, const nb_tensor *b) {
    char b1[64], b2[64];
    return nb_tape_fail(t, NB_ESHAPE, "%s: %s: %s vs %s", op, what, SHAPE(a, b1), SHAPE(b, b2));
}

#endif
