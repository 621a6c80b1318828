/* test_qgemm.c: the integer forward of fake-quantized linear layers (ops/kernels/qgemm.h):
   SIMD against the scalar twins (bit-exact), thread-count determinism, and the tape's linear
   taking it (values as the fp32 product of the fake-quant operands, gradients unchanged). */
#include "nbtest.h"

#include "../core/simd.h"
#include "../core/status.h"
#include "../ops/fakequant.h"
#include "../ops/kernels/gemm.h"
#include "../ops/kernels/qgemm.h"
#include "../ops/ops.h"

/* Random codes and scales, and the fake-quant values they stand for. */
typedef struct qcase {
    int64_t M, N, K, G;
    int8_t *xq, *wq;
    float *xs, *ws, *x, *w;
} qcase;

static uint64_t st_;
static uint32_t rnd(void) {
    st_ ^= st_ << 13, st_ ^= st_ >> 7, st_ ^= st_ << 17;
    return (uint32_t)(st_ >> 32);
}

static qcase make(int64_t M, int64_t N, int64_t K, int64_t G, int wbits) {
    qcase c = {M, N, K, G, 0, 0, 0, 0, 0, 0};
    st_ = (uint64_t)(M * 1000003 + N * 101 + K * 7 + G) * 0x9E3779B97F4A7C15ull + 1;
    c.xq = nb_malloc((size_t)(M * K));
    c.wq = nb_malloc((size_t)(N * K));
    c.xs = nb_malloc((size_t)M * sizeof(float));
    c.ws = nb_malloc((size_t)(N * (K / G)) * sizeof(float));
    c.x = nb_malloc((size_t)(M * K) * sizeof(float));
    c.w = nb_malloc((size_t)(N * K) * sizeof(float));
    ck_assert(c.xq && c.wq && c.xs && c.ws && c.x && c.w);
    int wq = 1 << (wbits - 1);
    for (int64_t m = 0; m < M; m++) c.xs[m] = m % 11 == 5 ? 0.0f : 1e-3f * (float)(1 + rnd() % 1000);
    for (int64_t i = 0; i < M * K; i++) {
        c.xq[i] = (int8_t)((int)(rnd() % 256) - 128);
        if (c.xs[i / K] == 0.0f) c.xq[i] = 0;
        c.x[i] = (float)c.xq[i] * c.xs[i / K];
    }
    for (int64_t i = 0; i < N * (K / G); i++) c.ws[i] = i % 13 == 3 ? 0.0f : 1e-3f * (float)(1 + rnd() % 1000);
    for (int64_t i = 0; i < N * K; i++) {
        float s = c.ws[(i / K) * (K / G) + (i % K) / G];
        c.wq[i] = s == 0.0f ? 0 : (int8_t)((int)(rnd() % (2 * wq)) - wq);
        c.w[i] = (float)c.wq[i] * s;
    }
    return c;
}

static void drop(qcase *c) {
    nb_free(c->xq), nb_free(c->wq), nb_free(c->xs), nb_free(c->ws), nb_free(c->x), nb_free(c->w);
}

static const int64_t shapes[][4] = {{1, 1, 4, 4},    {3, 7, 12, 4},   {7, 17, 64, 32},  {13, 33, 96, 32},
                                    {17, 100, 172, 172}, {100, 64, 256, 32}, {33, 31, 128, 64}, {6, 32, 32, 32}};

START_TEST(test_qgemm_pack_x_levels) {
    for (int i = 0; i < 8; i++) {
        int64_t M = shapes[i][0], K = shapes[i][2] + (i & 1 ? 3 : 0); /* K need not be a multiple of 4 here */
        float *x0 = nb_malloc((size_t)(M * K + 1) * sizeof(float)), *xs = nb_malloc((size_t)M * sizeof(float));
        uint8_t *a = nb_malloc((size_t)(M * K + 1)), *b = nb_malloc((size_t)(M * K + 1));
        ck_assert(x0 && xs && a && b);
        float *x = x0 + 1; /* unaligned */
        nbt_fill(x, (long)(M * K), 7 + (unsigned long long)i);
        x[(M - 1) * K + K / 2] = NAN; /* the last row's scale becomes NaN */
        nb_simd_level max = nb_simd_active();
        for (int lvl = 0; lvl < 3; lvl++) {
            for (int64_t m = 0; m < M; m++) xs[m] = m % 5 == 2 ? 0.0f : 0.01f * (float)(m + 1); /* clamps too */
            if (lvl == 0) nb_qgemm_pack_x_ref(x, M, K, xs, a + 1);
            nb_simd_force(lvl == 2 ? NB_SIMD_SCALAR : max);
            if (lvl) nb_qgemm_pack_x(x, M, K, xs, b + 1);
            nb_simd_force(max);
            if (lvl)
                ck_assert_msg(!memcmp(a + 1, b + 1, (size_t)(M * K)), "pack_x %lld x %lld level %d differs",
                              (long long)M, (long long)K, lvl);
            ck_assert(isnan(xs[M - 1]));
            for (int64_t m = 0; m + 1 < M; m++) ck_assert(!isnan(xs[m]));
        }
        nb_free(x0), nb_free(xs), nb_free(a), nb_free(b);
    }
}
END_TEST

/* the packed weight: every level writes the same bytes (odd N, unaligned W, padding columns) */
START_TEST(test_qgemm_pack_w_levels) {
    for (int i = 0; i < 8; i++) {
        int64_t N = shapes[i][1], K = shapes[i][2], G = shapes[i][3];
        qcase c = make(3, N, K, G, 4);
        size_t nb = nb_qgemm_packed_bytes(N, K, G);
        float *w0 = nb_malloc((size_t)(N * K + 1) * sizeof(float));
        uint8_t *a = nb_malloc(nb), *b = nb_malloc(nb);
        ck_assert(w0 && a && b);
        memcpy(w0 + 1, c.w, (size_t)(N * K) * sizeof(float));
        w0[1] = 100.0f;          /* beyond the grid: clamped to qmax */
        w0[1 + N * K - 1] = NAN; /* the last column's last group gets a NaN scale */
        for (int tensor = 0; tensor < 2; tensor++) {
            memset(a, 0xAB, nb), memset(b, 0xCD, nb);
            nb_qgemm_pack_w_ref(w0 + 1, N, K, G, c.ws, tensor, -8, 7, a);
            nb_qgemm_pack_w(w0 + 1, N, K, G, c.ws, tensor, -8, 7, b);
            ck_assert_msg(!memcmp(a, b, nb), "pack_w N %lld K %lld G %lld tensor %d differs", (long long)N,
                          (long long)K, (long long)G, tensor);
        }
        nb_free(w0), nb_free(a), nb_free(b);
        drop(&c);
    }
}
END_TEST

/* packed (both levels, 1 and 2 threads) == the spec on plain codes, bit for bit */
START_TEST(test_qgemm_exact_vs_ref) {
    for (int i = 0; i < 8; i++) {
        int64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2], G = shapes[i][3], ldc = N + 3;
        for (int wbits = 4; wbits <= 8; wbits += 4) {
            qcase c = make(M, N, K, G, wbits);
            uint8_t *xa = nb_malloc((size_t)(M * K));
            void *wp = nb_malloc(nb_qgemm_packed_bytes(N, K, G));
            float *R = nb_malloc((size_t)(M * ldc) * sizeof(float)), *C0 = nb_malloc((size_t)(M * ldc + 1) * sizeof(float));
            ck_assert(xa && wp && R && C0);
            float *C = C0 + 1;
            nb_qgemm_ref(M, N, K, G, c.xq, c.xs, c.wq, c.ws, R, ldc);
            nb_qgemm_pack_x(c.x, M, K, c.xs, xa);
            for (int64_t j = 0; j < M * K; j++) ck_assert_int_eq(xa[j], c.xq[j] + 128);
            nb_qgemm_pack_w(c.w, N, K, G, c.ws, 0, -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1, wp);
            nb_simd_level max = nb_simd_active();
            for (int lvl = 0; lvl < 2; lvl++)
                for (int th = 1; th <= 2; th++) {
                    nb_simd_force(lvl ? max : NB_SIMD_SCALAR);
                    nb_threads_set(th);
                    for (int64_t j = 0; j < M * ldc; j++) C[j] = -7.0f;
                    nb_qgemm(M, N, K, G, xa, c.xs, wp, C, ldc);
                    for (int64_t m = 0; m < M; m++) {
                        ck_assert_msg(!memcmp(C + m * ldc, R + m * ldc, (size_t)N * sizeof(float)),
                                      "qgemm %lldx%lldx%lld G %lld level %d threads %d row %lld differs", (long long)M,
                                      (long long)N, (long long)K, (long long)G, lvl, th, (long long)m);
                        for (int64_t j = N; j < ldc && m + 1 < M; j++) ck_assert(C[m * ldc + j] == -7.0f);
                    }
                }
            nb_simd_force(max);
            nb_threads_set(2);
            /* and it is the fp32 product of the fake-quant values, up to rounding */
            nb_sgemm_ref(0, 1, M, N, K, c.x, K, c.w, K, 0.0f, C, ldc);
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    double d = fabs((double)C[m * ldc + n] - R[m * ldc + n]);
                    ck_assert_msg(d <= 1e-5 * (1.0 + fabs((double)R[m * ldc + n])) * (double)K, "fp32 %g vs int %g",
                                  (double)C[m * ldc + n], (double)R[m * ldc + n]);
                }
            nb_free(xa), nb_free(wp), nb_free(R), nb_free(C0);
            drop(&c);
        }
    }
}
END_TEST

/* nb_linear on a per-token fake-quant and a grouped weight fake-quant takes the integer path
   (when the CPU has it): forward as the plain matmul up to rounding, gradients identical. */
START_TEST(test_qgemm_linear_on_tape) {
    int64_t R = 37, K = 96, N = 40;
    nb_qspec as = {.format = NB_QFMT_INT, .bits = 8, .symmetric = 1, .gran = NB_QGRAN_ROW};
    nb_fq wc = {.spec = {.format = NB_QFMT_INT, .bits = 4, .symmetric = 1, .gran = NB_QGRAN_GROUP, .group_size = 32},
                .est = NB_QEST_STE, .lambda = 1};
    float *got[2][3];
    for (int pass = 0; pass < 2; pass++) {
        env e;
        env_init(&e);
        nb_tape *t = &e.t;
        nb_tensor *x = nb_tape_tensor(t, 2, (int64_t[]){R, K}), *w = nb_tape_tensor(t, 2, (int64_t[]){N, K});
        nb_tensor *s = nb_tape_tensor(t, 1, (int64_t[]){N * K / 32});
        nbt_fill(x->data, (long)(R * K), 1);
        nbt_fill(w->data, (long)(N * K), 2);
        for (int64_t i = 0; i < N * K / 32; i++) nb_f32(s)[i] = 0.3f + 0.01f * (float)(i % 7);
        x->requires_grad = w->requires_grad = 1;
        nb_tensor *xq = nb_fakequant_token(t, x, &as, 1.0f);
        nb_tensor *wq = nb_fakequant(t, w, &wc, s, NULL);
        nb_tensor *y = pass ? nb_linear(t, xq, wq) : nb_matmul(t, xq, wq, 0, 1);
        ck_assert_ptr_nonnull(y);
        nb_tensor *l = nb_sum(t, nb_mul(t, y, y));
        ck_assert_int_eq(nb_backward(t, l, NULL), NB_OK);
        got[pass][0] = malloc((size_t)(R * N) * sizeof(float));
        got[pass][1] = malloc((size_t)(R * K) * sizeof(float));
        got[pass][2] = malloc((size_t)(N * K) * sizeof(float));
        memcpy(got[pass][0], y->data, (size_t)(R * N) * sizeof(float));
        memcpy(got[pass][1], x->grad, (size_t)(R * K) * sizeof(float));
        memcpy(got[pass][2], w->grad, (size_t)(N * K) * sizeof(float));
        if (pass && nb_qgemm_available()) { /* the integer path ran: its node holds the packed weight */
            int found = 0;
            for (int i = 0; i < t->n_nodes; i++) found |= t->nodes[i]->out == y && t->nodes[i]->p[0] != NULL;
            ck_assert_msg(found, "nb_linear did not take the integer path");
        }
        env_free(&e);
    }
    ck_assert(nbt_maxrel(got[1][0], got[0][0], (long)(R * N)) < 1e-5);
    /* dy = 2 y differs by rounding, so the gradients agree to rounding too */
    ck_assert(nbt_maxrel(got[1][1], got[0][1], (long)(R * K)) < 1e-4);
    ck_assert(nbt_maxrel(got[1][2], got[0][2], (long)(N * K)) < 1e-4);
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 3; k++) free(got[p][k]);
}
END_TEST

/* the per-token fake-quant op runs blocks of rows in parallel: the same bits and scales as one
   serial nb_fakequant_dynamic, at 1 and 2 threads */
START_TEST(test_token_fq_rows_parallel) {
    int64_t R = 301, K = 250;
    nb_qspec as = {.format = NB_QFMT_INT, .bits = 8, .symmetric = 1, .gran = NB_QGRAN_ROW};
    float *want = malloc((size_t)(R * K) * sizeof(float)), *ws = malloc((size_t)R * sizeof(float));
    ck_assert(want && ws);
    for (int th = 1; th <= 2; th++) {
        nb_threads_set(th);
        env e;
        env_init(&e);
        nb_tensor *x = nb_tape_tensor(&e.t, 2, (int64_t[]){R, K});
        nbt_fill(x->data, (long)(R * K), 11);
        x->requires_grad = 1;
        if (th == 1) nb_fakequant_dynamic(&as, x->data, R, K, want, ws);
        nb_tensor *y = nb_fakequant_token(&e.t, x, &as, 1.0f);
        ck_assert_ptr_nonnull(y);
        ck_assert(!memcmp(y->data, want, (size_t)(R * K) * sizeof(float)));
        const float *xs;
        const uint8_t *codes;
        if (nb_qgemm_available()) {
            ck_assert(nb_fakequant_token_codes(&e.t, y, &xs, &codes));
            ck_assert(!memcmp(xs, ws, (size_t)R * sizeof(float)));
        }
        env_free(&e);
    }
    nb_threads_set(2);
    free(want), free(ws);
}
END_TEST

NB_SUITE("qgemm") {
    tcase_add_test(tc, test_token_fq_rows_parallel);
    tcase_add_test(tc, test_qgemm_pack_x_levels);
    tcase_add_test(tc, test_qgemm_pack_w_levels);
    tcase_add_test(tc, test_qgemm_exact_vs_ref);
    tcase_add_test(tc, test_qgemm_linear_on_tape);
}
