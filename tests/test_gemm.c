/* test_gemm.c: nb_sgemm at every SIMD level against nb_sgemm_ref; thread-count determinism. */
#include "nbtest.h"

#include <pthread.h>

#include "../core/simd.h"
#include "../core/status.h"
#include "../ops/kernels/gemm.h"

/* One case: op(A) (M x K) op(B) (K x N) with padded leading dims and a 1-float offset (so no
   operand is 64-byte aligned), C starting from garbage (beta 0) or from values (beta 1). */
typedef struct gcase {
    int ta, tb;
    int64_t M, N, K, pad;
    float beta;
} gcase;

/* Uniform [-1, 1) from a fixed seed (cheaper than nbt_fill's normals for these sizes). */
static void fill(float *x, int64_t n, uint64_t seed) {
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        x[i] = (float)((int32_t)(st >> 32)) * (1.0f / 2147483648.0f);
    }
}

static float *buf(int64_t n) { return (float *)nb_malloc((size_t)(n + 1) * sizeof(float)); }

/* Runs nb_sgemm at the active level and returns max rel error vs the reference, scaled by K. */
static double run_case(gcase g, float *out_c, int64_t *out_n) {
    int64_t rows_a = g.ta ? g.K : g.M, cols_a = g.ta ? g.M : g.K;
    int64_t rows_b = g.tb ? g.N : g.K, cols_b = g.tb ? g.K : g.N;
    int64_t lda = cols_a + g.pad, ldb = cols_b + g.pad, ldc = g.N + g.pad;
    float *a0 = buf(rows_a * lda), *b0 = buf(rows_b * ldb), *c0 = buf(g.M * ldc), *r0 = buf(g.M * ldc);
    ck_assert(a0 && b0 && c0 && r0);
    float *A = a0 + 1, *B = b0 + 1, *C = c0 + 1, *R = r0 + 1;
    fill(A, rows_a * lda, 1 + g.M * 7 + g.K);
    fill(B, rows_b * ldb, 2 + g.N * 5 + g.K);
    fill(C, g.M * ldc, 3);
    memcpy(R, C, (size_t)(g.M * ldc) * sizeof(float));
    if (g.beta == 0.0f) /* C need not be initialised: NaN must be overwritten */
        for (int64_t m = 0; m < g.M; m++)
            for (int64_t n = 0; n < g.N; n++) C[m * ldc + n] = NAN;
    nb_sgemm(g.ta, g.tb, g.M, g.N, g.K, A, lda, B, ldb, g.beta, C, ldc);
    nb_sgemm_ref(g.ta, g.tb, g.M, g.N, g.K, A, lda, B, ldb, g.beta, R, ldc);
    double err = 0;
    for (int64_t m = 0; m < g.M; m++) {
        double e = nbt_maxrel(C + m * ldc, R + m * ldc, g.N);
        if (!(e <= err)) err = e;
        /* the padding past N is never written */
        for (int64_t n = g.N; n < ldc && m < g.M - 1; n++) ck_assert(C[m * ldc + n] == R[m * ldc + n]);
    }
    if (out_c) {
        for (int64_t m = 0; m < g.M; m++) memcpy(out_c + m * g.N, C + m * ldc, (size_t)g.N * sizeof(float));
        *out_n = g.M * g.N;
    }
    nb_free(a0);
    nb_free(b0);
    nb_free(c0);
    nb_free(r0);
    return err;
}

static double tol(int64_t K) { return 2e-6 * sqrt((double)K) * 8 + 1e-6; }

START_TEST(test_gemm_levels_odd_shapes) {
    static const int64_t sz[] = {1, 3, 7, 17, 33, 100, 257};
    int ns = (int)(sizeof sz / sizeof sz[0]);
    nb_simd_level max = nb_simd_detect();
    int64_t ncases = 0;
    for (int lvl = 0; lvl <= (int)max; lvl++) {
        nb_simd_force((nb_simd_level)lvl);
        for (int im = 0; im < ns; im++)
            for (int in = 0; in < ns; in++)
                for (int ik = 0; ik < ns; ik++) {
                    /* the scalar level is the reference itself (rows in parallel): sample it */
                    if ((getenv("NB_SANITIZE") || lvl == NB_SIMD_SCALAR) && (im + in + ik) % 3 != 0) continue;
                    int v = im * 49 + in * 7 + ik; /* vary the other parameters across the grid */
                    gcase g = {v & 1, (v >> 1) & 1, sz[im], sz[in], sz[ik], (v >> 2) % 3 == 0 ? 0 : 5,
                               ((v >> 3) & 1) ? 1.0f : 0.0f};
                    double e = run_case(g, NULL, NULL);
                    ncases++;
                    if (!(e <= tol(g.K)))
                        ck_abort_msg("%s ta=%d tb=%d M=%lld N=%lld K=%lld beta=%g: rel err %g", nb_simd_name(lvl),
                                     g.ta, g.tb, (long long)g.M, (long long)g.N, (long long)g.K, g.beta, e);
                }
        /* every (ta, tb, beta) on a few shapes, and the larger cases that cross block sizes */
        for (int v = 0; v < 8; v++) {
            gcase shapes[] = {{0, 0, 33, 100, 17, 3, 0}, {0, 0, 1, 257, 100, 1, 0}, {0, 0, 257, 1, 33, 0, 0},
                              {0, 0, 1000, 37, 300, 2, 0}, {0, 0, 45, 1000, 520, 0, 0}};
            for (int s = 0; s < 5; s++) {
                gcase g = shapes[s];
                g.ta = v & 1, g.tb = (v >> 1) & 1, g.beta = (v >> 2) ? 1.0f : 0.0f;
                if (getenv("NB_SANITIZE") && s >= 3 && v != 5) continue;
                double e = run_case(g, NULL, NULL);
                if (!(e <= tol(g.K)))
                    ck_abort_msg("%s ta=%d tb=%d M=%lld N=%lld K=%lld beta=%g: rel err %g", nb_simd_name(lvl), g.ta,
                                 g.tb, (long long)g.M, (long long)g.N, (long long)g.K, g.beta, e);
            }
        }
    }
    nb_simd_force(max);
    ck_assert(ncases > 0);
}
END_TEST

/* The same call with 1 and 2 threads gives the same bits (threads split C, never K). */
START_TEST(test_gemm_threads_bit_identical) {
    gcase cases[] = {{0, 1, 700, 96, 200, 0, 0},  {0, 0, 300, 288, 600, 3, 1}, {1, 0, 96, 130, 900, 0, 1},
                     {1, 1, 50, 400, 300, 1, 0},  {0, 1, 4096 / 8, 64, 64, 0, 0}, {0, 0, 20, 1000, 270, 0, 0},
                     {1, 1, 2, 3000, 400, 1, 1}, {0, 0, 3, 2000, 500, 0, 0}, /* small-M path */
                     {0, 1, 17, 20, 8000, 0, 0}, /* split into 14 + 3 rows: the 3 must not take the small-M path */
                     {0, 1, 1600, 40, 600, 0, 1}}; /* more chunks than threads, dynamic schedule */
    int nc = (int)(sizeof cases / sizeof cases[0]);
    nb_simd_level max = nb_simd_detect();
    for (int lvl = 0; lvl <= (int)max; lvl++) {
        nb_simd_force((nb_simd_level)lvl);
        for (int i = 0; i < nc; i++) {
            gcase g = cases[i];
            float *c1 = buf(g.M * g.N), *c2 = buf(g.M * g.N);
            int64_t n1 = 0, n2 = 0;
            nb_threads_set(1);
            run_case(g, c1, &n1);
            nb_threads_set(2);
            run_case(g, c2, &n2);
            ck_assert_int_eq(n1, n2);
            if (memcmp(c1, c2, (size_t)n1 * sizeof(float)) != 0)
                ck_abort_msg("%s case %d: 1 and 2 threads differ", nb_simd_name(lvl), i);
            nb_free(c1);
            nb_free(c2);
        }
    }
    nb_simd_force(max);
}
END_TEST

/* nb_sgemm_batched (one product per thread when small) gives the bits of a loop of nb_sgemm. */
START_TEST(test_gemm_batched) {
    const int64_t Z = 8, M = 100, N = 90, K = 40; /* 8 x 360k multiply-adds: the per-thread path */
    nb_simd_level max = nb_simd_detect();
    float *A = buf(Z * M * K), *B = buf(Z * K * N), *C1 = buf(Z * M * N), *C2 = buf(Z * M * N), *R = buf(M * N);
    fill(A, Z * M * K, 11);
    fill(B, Z * K * N, 12);
    for (int lvl = 0; lvl <= (int)max; lvl++)
        for (int v = 0; v < 4; v++) {
            int ta = v & 1, tb = v >> 1;
            int64_t lda = ta ? M : K, ldb = tb ? K : N;
            nb_simd_force((nb_simd_level)lvl);
            fill(C1, Z * M * N, 13);
            memcpy(C2, C1, (size_t)(Z * M * N) * sizeof(float));
            nb_threads_set(2);
            nb_sgemm_batched(ta, tb, Z, M, N, K, A, lda, M * K, B, ldb, K * N, 1.0f, C1, N, M * N);
            nb_threads_set(1);
            for (int64_t z = 0; z < Z; z++)
                nb_sgemm(ta, tb, M, N, K, A + z * M * K, lda, B + z * K * N, ldb, 1.0f, C2 + z * M * N, N);
            ck_assert_msg(memcmp(C1, C2, (size_t)(Z * M * N) * sizeof(float)) == 0, "%s ta=%d tb=%d differ",
                          nb_simd_name(lvl), ta, tb);
            fill(R, M * N, 13); /* batch 0 against the reference */
            nb_sgemm_ref(ta, tb, M, N, K, A, lda, B, ldb, 1.0f, R, N);
            ck_assert(nbt_maxrel(C1, R, M * N) <= tol(K));
        }
    nb_threads_set(2);
    nb_simd_force(max);
    nb_free(A);
    nb_free(B);
    nb_free(C1);
    nb_free(C2);
    nb_free(R);
}
END_TEST

/* A thread that ran a GEMM frees its packing buffers when it exits (the sanitizer run's leak
   check would report them otherwise). */
static void *gemm_in_thread(void *arg) {
    float *x = arg; /* A, B, C: 64 x 64 each */
    nb_sgemm(0, 1, 64, 64, 64, x, 64, x + 4096, 64, 0.0f, x + 8192, 64);
    return NULL;
}

START_TEST(test_gemm_thread_exit_frees) {
    float *x = buf(3 * 4096);
    fill(x, 2 * 4096, 5);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, gemm_in_thread, x), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    float r[64];
    nb_sgemm_ref(0, 1, 1, 64, 64, x, 64, x + 4096, 64, 0.0f, r, 64);
    ck_assert(nbt_maxrel(x + 8192, r, 64) <= tol(64));
    nb_free(x);
}
END_TEST

/* K = 0 is an empty sum; M or N = 0 touches nothing. */
START_TEST(test_gemm_empty) {
    float C[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, A[1] = {1}, B[1] = {1};
    nb_sgemm(0, 0, 2, 3, 0, A, 1, B, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) ck_assert(C[i] == 0.0f);
    C[0] = 5;
    nb_sgemm(0, 0, 2, 3, 0, A, 1, B, 3, 1.0f, C, 3);
    ck_assert(C[0] == 5.0f);
    nb_sgemm(0, 0, 0, 3, 4, A, 1, B, 3, 0.0f, C, 3);
    nb_sgemm(0, 0, 2, 0, 4, A, 1, B, 3, 0.0f, C, 3);
    ck_assert(C[0] == 5.0f && C[1] == 0.0f);
}
END_TEST

/* A refused packing buffer falls back to the reference instead of failing. */
START_TEST(test_gemm_alloc_failure) {
    int64_t M = 40, N = 3000, K = 300; /* large enough to need a bigger buffer than earlier tests */
    float *A = buf(M * K), *B = buf(K * N), *C = buf(M * N), *R = buf(M * N);
    nbt_fill(A, M * K, 1);
    nbt_fill(B, K * N, 2);
    nb_threads_set(1);
    nb_alloc_fail_after(0);
    nb_sgemm(0, 0, M, N, K, A, K, B, N, 0.0f, C, N);
    nb_alloc_fail_after(-1);
    nb_sgemm_ref(0, 0, M, N, K, A, K, B, N, 0.0f, R, N);
    ck_assert(nbt_maxrel(C, R, M * N) <= tol(K));
    nb_threads_set(2);
    nb_free(A);
    nb_free(B);
    nb_free(C);
    nb_free(R);
}
END_TEST

NB_SUITE("gemm") {
    tcase_add_test(tc, test_gemm_levels_odd_shapes);
    tcase_add_test(tc, test_gemm_threads_bit_identical);
    tcase_add_test(tc, test_gemm_batched);
    tcase_add_test(tc, test_gemm_thread_exit_frees);
    tcase_add_test(tc, test_gemm_empty);
    tcase_add_test(tc, test_gemm_alloc_failure);
}
