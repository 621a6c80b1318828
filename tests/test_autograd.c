/* test_autograd.c: finite-difference gradient check of every registered op case, and the
   tape's sticky errors. */
#include "nbtest.h"

#include <stdio.h>

#include "../autograd/gradcheck.h"
#include "../ops/ops.h"

START_TEST(test_gradcheck_all_registered) {
    int n = 0, bad = 0;
    for (int k = 0; nb_opcase_tables[k]; k++)
        for (const nb_opcase *c = nb_opcase_tables[k]; c->name; c++) {
            nb_gradcheck_result r;
            nb_status s = nb_gradcheck(c, 1234, &r);
            n++;
            if (s != NB_OK) {
                fprintf(stderr, "FAIL %s\n", nb_errmsg());
                bad++;
            } else {
                printf("gradcheck %-28s max rel %.2e over %d elements\n", c->name, r.max_rel, r.n_checked);
            }
        }
    ck_assert_int_ge(n, 7);
    ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(test_tape_sticky_shape_error) {
    nb_arena a;
    nb_arena_init(&a, 1 << 16);
    nb_tape t;
    nb_tape_init(&t, &a);
    nb_tensor *x = nb_tensor_zeros(&a, NB_F32, 2, (int64_t[]){3, 4});
    nb_tensor *w = nb_tensor_zeros(&a, NB_F32, 2, (int64_t[]){5, 3});
    nb_tensor *y = nb_linear(&t, x, w);
    ck_assert_ptr_null(y);
    nb_tensor *z = nb_linear(&t, y, w); /* no-op after the failure */
    ck_assert_ptr_null(z);
    ck_assert_int_eq(nb_tape_status(&t), NB_ESHAPE);
    ck_assert_msg(strstr(nb_errmsg(), "inner sizes 4 and 3") != NULL, "%s", nb_errmsg());
    nb_tape_free(&t);
    nb_arena_free(&a);
}
END_TEST

START_TEST(test_backward_needs_param) {
    nb_arena a;
    nb_arena_init(&a, 1 << 16);
    nb_tape t;
    nb_tape_init(&t, &a);
    nb_tensor *x = nb_tensor_zeros(&a, NB_F32, 2, (int64_t[]){3, 4});
    nb_tensor *w = nb_tensor_zeros(&a, NB_F32, 2, (int64_t[]){5, 4});
    nb_tensor *y = nb_linear(&t, x, w);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(nb_backward(&t, y, NULL), NB_EINVAL);
    /* no-grad mode records nothing */
    w->requires_grad = 1;
    nb_tape_grad(&t, 0);
    y = nb_linear(&t, x, w);
    ck_assert_int_eq(t.n_nodes, 0);
    ck_assert(!y->requires_grad);
    nb_tape_free(&t);
    nb_arena_free(&a);
}
END_TEST

NB_SUITE("autograd") {
    tcase_add_test(tc, test_gradcheck_all_registered);
    tcase_add_test(tc, test_tape_sticky_shape_error);
    tcase_add_test(tc, test_backward_needs_param);
}
