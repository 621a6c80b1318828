/* gradcheck.h: one finite-difference harness for every op in ops/registry.c. */
#ifndef NB_GRADCHECK_H
#define NB_GRADCHECK_H

#include "tape.h"

/* A test case for an op: input shapes and how to apply the op. Inputs are f32 normal(0,1) unless
   dtype or init says otherwise; inputs in the `nondiff` bitmask are not differentiated. */
typedef struct nb_opcase {
    const char *name;
    int n_in;
    int ndim[NB_NODE_MAX_IN];
    int64_t shape[NB_NODE_MAX_IN][NB_MAX_DIMS];
    nb_dtype dtype[NB_NODE_MAX_IN]; /* 0 = NB_F32 */
    unsigned nondiff;               /* bit i: input i has no gradient */
    nb_tensor *(*apply)(nb_tape *t, nb_tensor **in);
    void (*init)(nb_tensor **in, nb_rng *r); /* optional: custom input values */
    double rtol;                    /* relative tolerance of analytic vs central difference */
    double eps;                     /* finite-difference step (0 = 1e-3) */
} nb_opcase;

extern const nb_opcase *const nb_opcase_tables[]; /* NULL-terminated list of name-terminated tables */

typedef struct nb_gradcheck_result {
    double max_rel;        /* worst |analytic - numeric| / max(|a|, |n|, 1e-2 scale) */
    int n_checked;
    char where[128];       /* input index and element of the worst case */
} nb_gradcheck_result;

/* Runs the case with the given seed: loss = sum(out * w) for fixed random w, compares the
   analytic gradient of every differentiable input (all elements, or 200 sampled ones for large
   inputs) with central differences in double. Returns NB_OK when every element is within rtol. */
nb_status nb_gradcheck(const nb_opcase *c, uint64_t seed, nb_gradcheck_result *res);

#endif
