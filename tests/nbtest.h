/* nbtest.h: shared helpers for the Check suites. Each tests/test_*.c defines its suite with
   NB_SUITE(name) { tcase_add_test(tc, ...); ... } and gets a main() from NB_TEST_MAIN. */
#ifndef NB_TEST_H
#define NB_TEST_H

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../autograd/tape.h"
#include "../core/rng.h"

/* Path of the project root and of ../shared/data, given by meson as macros. */
#ifndef NB_SOURCE_ROOT
#define NB_SOURCE_ROOT "."
#endif
#define NB_TEST_DATA(rel) NB_SOURCE_ROOT "/examples/data/" rel

#define NB_SUITE(sname)                                                                 \
    static void add_tests_(TCase *tc);                                                  \
    int main(void) {                                                                    \
        Suite *s = suite_create(sname);                                                 \
        TCase *tc = tcase_create("all");                                                \
        tcase_set_timeout(tc, 600);                                                     \
        add_tests_(tc);                                                                 \
        suite_add_tcase(s, tc);                                                         \
        SRunner *sr = srunner_create(s);                                                \
        srunner_run_all(sr, CK_NORMAL);                                                 \
        int nf = srunner_ntests_failed(sr);                                             \
        srunner_free(sr);                                                               \
        return nf ? EXIT_FAILURE : EXIT_SUCCESS;                                        \
    }                                                                                   \
    static void add_tests_(TCase *tc)

/* An arena and a tape for op-level tests (1 MiB first chunk; grows as needed). */
typedef struct env {
    nb_arena a;
    nb_tape t;
} env;

static inline void env_init(env *e) {
    nb_arena_init(&e->a, 1 << 20);
    nb_tape_init(&e->t, &e->a);
}

static inline void env_free(env *e) {
    nb_tape_free(&e->t);
    nb_arena_free(&e->a);
}

/* Fill with normal(0,1) from a fixed seed. */
static inline void nbt_fill(float *x, long n, unsigned long long seed) {
    nb_rng r = nb_rng_make(seed, 99);
    for (long i = 0; i < n; i++) x[i] = nb_rng_normal(&r);
}

/* max |a - b| / (1 + |b|) */
static inline double nbt_maxrel(const float *a, const float *b, long n) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

#endif
