/* test_core.c: status, arena, tensor views, rng, fp16, SIMD dispatch. */
#include "nbtest.h"

#include "../core/arena.h"
#include "../core/fp16.h"
#include "../core/simd.h"
#include "../core/tensor.h"

START_TEST(test_status_message) {
    nb_status s = nb_fail(NB_EFORMAT, "%s: bad magic %x", "x.h5", 0xab);
    ck_assert_int_eq(s, NB_EFORMAT);
    ck_assert_str_eq(nb_errmsg(), "x.h5: bad magic ab");
    nb_fail_prefix(s, "loading %s", "ckpt");
    ck_assert_str_eq(nb_errmsg(), "loading ckpt: x.h5: bad magic ab");
}
END_TEST

START_TEST(test_alloc_refuses_absurd) {
    ck_assert_ptr_null(nb_malloc((size_t)1 << 62));
    ck_assert_ptr_null(nb_calloc((size_t)1 << 40, (size_t)1 << 40));
    nb_alloc_fail_after(0);
    ck_assert_ptr_null(nb_malloc(16));
    nb_alloc_fail_after(-1);
    void *p = nb_malloc(16);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq((uintptr_t)p % 64, 0);
    nb_free(p);
}
END_TEST

START_TEST(test_arena_no_malloc_after_first_step) {
    nb_arena a;
    nb_arena_init(&a, 1024);
    for (int step = 0; step < 5; step++) {
        nb_arena_reset(&a);
        long before = a.n_mallocs;
        for (int i = 0; i < 100; i++) {
            char *p = nb_arena_alloc(&a, 1000 + i);
            ck_assert_ptr_nonnull(p);
            ck_assert_int_eq((uintptr_t)p % 64, 0);
            memset(p, i, 1000 + i);
        }
        if (step >= 2) ck_assert_int_eq(a.n_mallocs, before); /* coalesced after step 0 */
    }
    a.limit = 4096;
    nb_arena_reset(&a);
    ck_assert_ptr_null(nb_arena_alloc(&a, 10000));
    ck_assert(strstr(nb_errmsg(), "exceeds the limit") != NULL);
    nb_arena_free(&a);
}
END_TEST

START_TEST(test_tensor_views) {
    nb_arena a;
    nb_arena_init(&a, 1 << 16);
    nb_tensor *t = nb_tensor_new(&a, NB_F32, 3, (int64_t[]){2, 3, 4});
    ck_assert_ptr_nonnull(t);
    for (int i = 0; i < 24; i++) nb_f32(t)[i] = (float)i;
    nb_tensor r, tr, sl;
    ck_assert_int_eq(nb_view_reshape(t, 2, (int64_t[]){6, 4}, &r), NB_OK);
    ck_assert_int_eq(r.shape[0], 6);
    ck_assert_int_ne(nb_view_reshape(t, 2, (int64_t[]){5, 4}, &r), NB_OK);
    ck_assert(strstr(nb_errmsg(), "24 elements") != NULL);
    nb_view_transpose(t, &tr);
    ck_assert_int_eq(tr.shape[1], 4);
    ck_assert_int_eq(tr.shape[2], 3);
    ck_assert(!nb_is_contiguous(&tr));
    ck_assert_int_eq(nb_view_slice0(t, 1, 1, &sl), NB_OK);
    ck_assert_float_eq(nb_f32(&sl)[0], 12.0f);
    ck_assert_int_ne(nb_view_slice0(t, 1, 2, &sl), NB_OK);
    nb_tensor bad;
    ck_assert_int_ne(nb_tensor_setup(&bad, NB_F32, 5, (int64_t[]){1, 1, 1, 1, 1}), NB_OK);
    ck_assert_int_ne(nb_tensor_setup(&bad, NB_F32, 2, (int64_t[]){-1, 3}), NB_OK);
    ck_assert_int_ne(nb_tensor_setup(&bad, NB_F32, 2, (int64_t[]){1 << 30, 1 << 30}), NB_OK);
    nb_f32(t)[5] = NAN;
    t->name = "probe";
    ck_assert_int_eq(nb_check_finite(t), NB_ENAN);
    ck_assert(strstr(nb_errmsg(), "probe: element 5 is NaN") != NULL);
    nb_tensor *i4 = nb_tensor_new(&a, NB_I4, 1, (int64_t[]){7});
    ck_assert_int_eq(nb_nbytes(i4), 4);
    nb_arena_free(&a);
}
END_TEST

START_TEST(test_rng_counter_based) {
    nb_rng r = nb_rng_make(42, 1);
    uint64_t x[10];
    for (int i = 0; i < 10; i++) x[i] = nb_rng_u64(&r);
    nb_rng s = nb_rng_make(42, 1);
    s.counter = 7;
    ck_assert_uint_eq(nb_rng_u64(&s), x[7]);
    nb_rng o = nb_rng_make(42, 2);
    ck_assert_uint_ne(nb_rng_u64(&o), x[0]);
    /* moments of uniform and normal */
    double m = 0, v = 0, mu = 0;
    for (int i = 0; i < 100000; i++) {
        float z = nb_rng_normal(&r);
        m += z;
        v += z * z;
        float u = nb_rng_uniform(&r);
        ck_assert(u >= 0 && u < 1);
        mu += u;
    }
    ck_assert(fabs(m / 1e5) < 0.02 && fabs(v / 1e5 - 1) < 0.03 && fabs(mu / 1e5 - 0.5) < 0.01);
    for (int i = 0; i < 1000; i++) ck_assert_uint_lt(nb_rng_below(&r, 7), 7);
}
END_TEST

START_TEST(test_fp16_roundtrip_exhaustive) {
    /* every half value survives half -> float -> half; ties round to even */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = nb_fp16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        ck_assert_uint_eq(nb_fp32_to_fp16(f), h);
    }
    ck_assert_uint_eq(nb_fp32_to_fp16(1.0f + 1.0f / 2048), 0x3c00); /* tie -> even */
    ck_assert_uint_eq(nb_fp32_to_fp16(1.0f + 3.0f / 2048), 0x3c02);
    ck_assert_uint_eq(nb_fp32_to_fp16(65520.0f), 0x7c00);
    ck_assert_uint_eq(nb_fp32_to_fp16(65519.0f), 0x7bff);
    ck_assert_float_eq(nb_round_fp16(0.1f), 0.0999755859375f);
    /* against the hardware converter when the CPU has F16C */
#if defined(__F16C__)
#endif
    ck_assert_float_eq(nb_bf16_to_fp32(nb_fp32_to_bf16(1.00390625f)), 1.0f);
}
END_TEST

START_TEST(test_simd_force) {
    nb_simd_level max = nb_simd_detect();
    ck_assert_int_eq(nb_simd_force(NB_SIMD_SCALAR), NB_SIMD_SCALAR);
    ck_assert_int_eq(nb_simd_active(), NB_SIMD_SCALAR);
    ck_assert_int_eq(nb_simd_force(NB_SIMD_AVX512), max);
}
END_TEST

NB_SUITE("core") {
    tcase_add_test(tc, test_status_message);
    tcase_add_test(tc, test_alloc_refuses_absurd);
    tcase_add_test(tc, test_arena_no_malloc_after_first_step);
    tcase_add_test(tc, test_tensor_views);
    tcase_add_test(tc, test_rng_counter_based);
    tcase_add_test(tc, test_fp16_roundtrip_exhaustive);
    tcase_add_test(tc, test_simd_force);
}
