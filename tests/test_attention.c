/* test_attention.c: the attention kernels (ops/kernels/attn.h) agree with their scalar twins bit
   for bit at every SIMD level, and the fused attention op gives the same bits at every level and
   thread count, on odd shapes and unaligned data. (Accuracy against the unfused ops is in
   test_ops.c; gradients in test_autograd.c.) */
#include <stdint.h>
#include <stdio.h>

#include "../core/fp16.h"
#include "../core/simd.h"
#include "../ops/kernels/attn.h"
#include "../ops/ops.h"
#include "nbtest.h"

#define TQ NB_ATTN_TQ

/* memcmp that names the first differing index */
static void same_bits(const float *a, const float *b, long n, const char *what) {
    for (long i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0)
            ck_abort_msg("%s: element %ld of %ld differs: %.9g vs %.9g", what, i, n, a[i], b[i]);
}

/* the SIMD tables this build and CPU can run (the reference excluded) */
static int simd_tables(const nb_attn_kernels **out) {
    int n = 0;
    for (int l = NB_SIMD_SCALAR + 1; l <= (int)nb_simd_detect(); l++) {
        const nb_attn_kernels *k = nb_attn_level((nb_simd_level)l);
        if (k) out[n++] = k;
    }
    return n;
}

START_TEST(test_exp_twin_exact) {
    enum { N = 4096 };
    float *x = malloc((N + 1) * sizeof(float)), *y = malloc((N + 1) * sizeof(float));
    float *r = malloc(N * sizeof(float));
    /* a sweep over the clamped range and past it, the clamp points, specials */
    for (int i = 0; i < N; i++) x[i + 1] = -100.0f + 200.0f * (float)i / N;
    const float special[] = {0.0f, -0.0f, 88.0f, -87.0f, 88.5f, -87.5f, 1e-30f, -1e-30f, 0.5f, -0.34657359f,
                             INFINITY, -INFINITY, 1e30f, -1e30f, 0.693359375f};
    for (int i = 0; i < (int)(sizeof special / sizeof *special); i++) x[1 + 17 * i] = special[i];
    for (int i = 0; i < N; i++) r[i] = nb_attn_exp(x[i + 1]);
    for (int i = 0; i < N; i++) { /* the spec itself is accurate */
        double e = exp(fmin(88.0, fmax(-87.0, (double)x[i + 1])));
        ck_assert_msg(fabs(r[i] - e) <= 3e-7 * e, "exp(%g) = %.9g, want %.9g", x[i + 1], r[i], e);
    }
    const nb_attn_kernels *ks[4];
    int nt = simd_tables(ks);
    const long sizes[] = {1, 3, 7, 17, 33, 100, 1000, N};
    for (int t = 0; t < nt; t++)
        for (int s = 0; s < 8; s++) {
            ks[t]->exp(y + 1, x + 1, sizes[s]); /* unaligned */
            same_bits(y + 1, r, sizes[s], ks[t]->name);
        }
    float nan_in = NAN, nan_out = 0.0f;
    for (int t = 0; t < nt; t++) {
        ks[t]->exp(&nan_out, &nan_in, 1);
        ck_assert(isnan(nan_out));
    }
    ck_assert(isnan(nb_attn_exp(NAN)));
    free(x);
    free(y);
    free(r);
}
END_TEST

/* one mm shape on every table against the reference, exact; A, B, C unaligned */
static void mm_case(int ta, int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc, int acc) {
    int64_t na = (ta ? K : M) * lda + 1, nb = K * ldb + 1, nc = M * ldc + 1;
    float *A = malloc(na * sizeof(float)), *B = malloc(nb * sizeof(float));
    float *C0 = malloc(nc * sizeof(float)), *C1 = malloc(nc * sizeof(float));
    nbt_fill(A, (long)na, 1);
    nbt_fill(B, (long)nb, 2);
    nbt_fill(C0, (long)nc, 3);
    memcpy(C1, C0, nc * sizeof(float));
    nb_attn_ref.mm(ta, M, N, K, A + 1, lda, B + 1, ldb, C0 + 1, ldc, acc);
    const nb_attn_kernels *ks[4];
    int nt = simd_tables(ks);
    for (int t = 0; t < nt; t++) {
        float *C = malloc(nc * sizeof(float));
        nbt_fill(C, (long)nc, 3);
        ks[t]->mm(ta, M, N, K, A + 1, lda, B + 1, ldb, C + 1, ldc, acc);
        char what[128];
        snprintf(what, sizeof what, "%s mm ta %d M %lld N %lld K %lld lda %lld acc %d", ks[t]->name, ta, (long long)M,
                 (long long)N, (long long)K, (long long)lda, acc);
        same_bits(C, C0, (long)nc, what); /* also: nothing written outside C's M x N */
        free(C);
    }
    /* and the reference is the plain product */
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = acc ? C1[1 + m * ldc + n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)(ta ? A[1 + k * lda + m] : A[1 + m * lda + k]) * B[1 + k * ldb + n];
            ck_assert(fabs(C0[1 + m * ldc + n] - s) < 1e-4 * (1 + fabs(s)) * (1 + K / 16.0));
        }
    free(A);
    free(B);
    free(C0);
    free(C1);
}

START_TEST(test_mm_twins_exact) {
    const int64_t Ms[] = {1, 3, 7, 17, 33, 100}, Ns[] = {1, 7, 8, 16, 32, 33, 48, 64, 100}, Ks[] = {1, 7, 48};
    for (int ta = 0; ta < 2; ta++)
        for (int a = 0; a < 6; a++)
            for (int b = 0; b < 9; b++)
                for (int c = 0; c < 3; c++) {
                    int64_t M = Ms[a], N = Ns[b], K = Ks[c];
                    /* lda: the strip stride when it fits (the fast layout), else a loose one */
                    int64_t lda = (ta ? M : K) <= TQ && (a + b) % 2 ? TQ : (ta ? M : K) + 3;
                    mm_case(ta, M, N, K, lda, N + 5, N + 2, (a + b + c) % 2);
                }
}
END_TEST

/* the strip kernels: softmax, probs, dscores on every table, exact */
START_TEST(test_strips_exact) {
    const int64_t nks[] = {1, 7, 33, 100};
    const nb_attn_kernels *ks[4];
    int nt = simd_tables(ks);
    for (int a = 0; a < 4; a++)
        for (int64_t t0 = 0; t0 < nks[a]; t0 += 13) {
            int64_t nk = nks[a], n = nk * TQ + 1;
            float *S0 = malloc(n * sizeof(float)), *S1 = malloc(n * sizeof(float)), *G0 = malloc(n * sizeof(float));
            float *G1 = malloc(n * sizeof(float)), v0[4][TQ], v1[4][TQ];
            nbt_fill(S0, (long)n, 4 + a);
            nbt_fill(G0, (long)n, 9 + a);
            for (long i = 0; i < n; i++) S0[i] *= 4.0f;
            for (int i = 0; i < TQ; i++) v0[2][i] = 1.0f + 0.1f * i;
            float *s0 = malloc(n * sizeof(float)), *g0 = malloc(n * sizeof(float));
            memcpy(s0, S0, n * sizeof(float));
            memcpy(g0, G0, n * sizeof(float));
            nb_attn_ref.softmax(S0 + 1, nk, t0, v0[0], v0[1]);
            for (int i = 0; i < TQ; i++) /* masked entries are exact zeros; each column sums to l */
                for (int64_t j = 0; j < nk; j++)
                    if (j > t0 + i) ck_assert(S0[1 + j * TQ + i] == 0.0f);
            for (int t = 0; t < nt; t++) {
                memcpy(S1, s0, n * sizeof(float));
                ks[t]->softmax(S1 + 1, nk, t0, v1[0], v1[1]);
                same_bits(S1, S0, (long)n, "softmax strip");
                same_bits(v1[0], v0[0], TQ, "softmax max");
                same_bits(v1[1], v0[1], TQ, "softmax sum");
            }
            float *c0 = malloc(n * sizeof(float)); /* colscale of the softmax output */
            memcpy(c0, S0, n * sizeof(float));
            nb_attn_ref.colscale(c0 + 1, nk, v0[2]);
            for (int t = 0; t < nt; t++) {
                memcpy(S1, S0, n * sizeof(float));
                ks[t]->colscale(S1 + 1, nk, v0[2]);
                same_bits(S1, c0, (long)n, "colscale strip");
            }
            free(c0);
            memcpy(S0, s0, n * sizeof(float));
            nb_attn_ref.probs(S0 + 1, nk, t0, v0[2]);
            memcpy(G1, g0, n * sizeof(float));
            nb_attn_ref.dscores(G0 + 1, S0 + 1, nk, 0.37f);
            for (int t = 0; t < nt; t++) {
                memcpy(S1, s0, n * sizeof(float));
                ks[t]->probs(S1 + 1, nk, t0, v0[2]);
                same_bits(S1, S0, (long)n, "probs strip");
                memcpy(G1, g0, n * sizeof(float));
                ks[t]->dscores(G1 + 1, S1 + 1, nk, 0.37f);
                same_bits(G1, G0, (long)n, "dscores strip");
            }
            free(S0), free(S1), free(G0), free(G1), free(s0), free(g0);
        }
}
END_TEST

/* the block transpose: every table equals the reference, padding zeroed, source unaligned */
START_TEST(test_load_t_exact) {
    const int64_t ms[] = {1, 7, 8, 17, 32}, Hs[] = {1, 5, 8, 13, 48, 64};
    const nb_attn_kernels *ks[4];
    int nt = simd_tables(ks);
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 6; b++) {
            int64_t m = ms[a], H = Hs[b], ld = H * 3 + 1;
            float *X = malloc((m * ld + 1) * sizeof(float)), *r = malloc(H * TQ * sizeof(float));
            float *y = malloc((H * TQ + 1) * sizeof(float));
            nbt_fill(X, (long)(m * ld + 1), 21);
            nb_attn_ref.load_t(r, X + 1, ld, H, m, 0.3f);
            for (int64_t d = 0; d < H; d++)
                for (int64_t i = 0; i < TQ; i++)
                    ck_assert(r[d * TQ + i] == (i < m ? X[1 + i * ld + d] * 0.3f : 0.0f));
            for (int t = 0; t < nt; t++) {
                for (long i = 0; i < H * TQ + 1; i++) y[i] = NAN; /* every element must be written */
                ks[t]->load_t(y + 1, X + 1, ld, H, m, 0.3f);
                same_bits(y + 1, r, (long)(H * TQ), "load_t");
            }
            free(X), free(r), free(y);
        }
}
END_TEST

/* The whole op on unaligned copies: out and the three gradients into `res` (4 blocks). */
static void run_op(int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t H, float *res) {
    env e;
    env_init(&e);
    int64_t nq = B * T * NH * H, nk = B * T * NKV * H;
    float *buf = nb_arena_calloc(&e.a, (size_t)(2 * nq + 4 * nk + 8) * sizeof(float));
    ck_assert_ptr_nonnull(buf);
    float *pq = buf + 1, *pk = pq + nq + 1, *pv = pk + nk + 1, *gq = pv + nk + 1, *gk = gq + nq + 1, *gv = gk + nk + 1;
    nbt_fill(pq, (long)nq, 11);
    nbt_fill(pk, (long)nk, 12);
    nbt_fill(pv, (long)nk, 13);
    nb_tensor q = nb_tensor_wrap(pq, NB_F32, 4, (int64_t[]){B, T, NH, H});
    nb_tensor k = nb_tensor_wrap(pk, NB_F32, 4, (int64_t[]){B, T, NKV, H});
    nb_tensor v = nb_tensor_wrap(pv, NB_F32, 4, (int64_t[]){B, T, NKV, H});
    q.requires_grad = k.requires_grad = v.requires_grad = 1;
    q.grad = gq, k.grad = gk, v.grad = gv;
    nb_tensor *o = nb_attention(&e.t, &q, &k, &v);
    ck_assert_ptr_nonnull(o);
    float *seed = nb_arena_calloc(&e.a, (size_t)nq * sizeof(float));
    nbt_fill(seed, (long)nq, 14);
    ck_assert_int_eq(nb_backward(&e.t, o, seed), NB_OK);
    memcpy(res, o->data, nq * sizeof(float));
    memcpy(res + nq, gq, nq * sizeof(float));
    memcpy(res + 2 * nq, gk, nk * sizeof(float));
    memcpy(res + 2 * nq + nk, gv, nk * sizeof(float));
    env_free(&e);
}

START_TEST(test_op_same_bits_everywhere) {
    static const int64_t shapes[][5] = {/* B, T, nh, nkv, H */
                                        {2, 1, 2, 1, 8},  {1, 7, 4, 2, 8},   {2, 33, 6, 3, 48}, {1, 100, 2, 2, 64},
                                        {1, 33, 3, 1, 5}, {2, 65, 2, 1, 17}, {1, 32, 1, 1, 16},
                                        {1, 270, 1, 1, 32}}; /* the last: H >= 32 but T too long to keep P */
    nb_simd_level top = nb_simd_detect();
    int keep = nb_threads_get();
    for (int s = 0; s < (int)(sizeof shapes / sizeof *shapes); s++) {
        const int64_t *g = shapes[s];
        int64_t n = 2 * g[0] * g[1] * g[2] * g[4] + 2 * g[0] * g[1] * g[3] * g[4];
        float *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
        nb_simd_force(NB_SIMD_SCALAR);
        nb_threads_set(1);
        run_op(g[0], g[1], g[2], g[3], g[4], ref);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += fabs(ref[i]);
        ck_assert(sum > 0 && isfinite(sum));
        for (int l = NB_SIMD_SCALAR; l <= (int)top; l++)
            for (int th = 1; th <= 2; th++) {
                nb_simd_force((nb_simd_level)l);
                nb_threads_set(th);
                run_op(g[0], g[1], g[2], g[3], g[4], got);
                char what[96];
                snprintf(what, sizeof what, "attention shape %d at %s, %d threads", s, nb_simd_name(nb_simd_active()), th);
                same_bits(got, ref, (long)n, what);
            }
        free(ref);
        free(got);
    }
    nb_simd_force(top);
    nb_threads_set(keep);
}
END_TEST

/* nb_attn_forward_rows: row t's bits do not depend on how the rows are split between calls
   (one call, one row per call as in decode, chunks of 5 from an offset as in a prefill), match
   nb_attention's forward, and are the same at every SIMD level */
START_TEST(test_forward_rows_any_split) {
    /* T, nh, nkv, H; one row per call takes the decode path (forward_one_row: keys 32 at a time) */
    static const int64_t shapes[][4] = {{40, 2, 1, 8}, {70, 3, 3, 48}, {33, 2, 2, 64}, {9, 1, 1, 5}, {130, 4, 2, 16}};
    nb_simd_level top = nb_simd_detect();
    for (int s = 0; s < 5; s++) {
        int64_t T = shapes[s][0], NH = shapes[s][1], NKV = shapes[s][2], H = shapes[s][3];
        env e;
        env_init(&e);
        nb_tensor *q = nb_tensor_new(&e.a, NB_F32, 4, (int64_t[]){1, T, NH, H});
        nb_tensor *k = nb_tensor_new(&e.a, NB_F32, 4, (int64_t[]){1, T, NKV, H});
        nb_tensor *v = nb_tensor_new(&e.a, NB_F32, 4, (int64_t[]){1, T, NKV, H});
        nbt_fill(q->data, (long)nb_numel(q), 31);
        nbt_fill(k->data, (long)nb_numel(k), 32);
        nbt_fill(v->data, (long)nb_numel(v), 33);
        nb_simd_force(NB_SIMD_SCALAR);
        nb_tensor *ref = nb_attention(&e.t, q, k, v); /* no grad: the plain forward */
        ck_assert_ptr_nonnull(ref);
        q->requires_grad = 1; /* a training forward (which may keep P) gives the same output bits */
        nb_tensor *trained = nb_attention(&e.t, q, k, v);
        ck_assert_ptr_nonnull(trained);
        ck_assert(trained->requires_grad);
        same_bits(nb_f32(trained), nb_f32(ref), (long)nb_numel(ref), "training forward vs plain forward");
        float *o = malloc(T * NH * H * sizeof(float)), *scr = malloc(nb_attn_scratch_floats(T, H) * sizeof(float));
        for (int l = NB_SIMD_SCALAR; l <= (int)top; l++) {
            const nb_attn_kernels *kk = nb_attn_level((nb_simd_level)l);
            if (!kk) continue;
            for (int split = 0; split < 3; split++) {
                for (int64_t h = 0; h < NH; h++) {
                    const float *qh = nb_f32(q) + h * H, *kh = nb_f32(k) + h / (NH / NKV) * H;
                    const float *vh = nb_f32(v) + h / (NH / NKV) * H;
                    int64_t step = split == 0 ? T : split == 1 ? 1 : 5, first = split == 2 ? 3 : 0;
                    if (first) /* a prefill of 3 rows, then chunks of 5 */
                        nb_attn_forward_rows(kk, qh, NH * H, kh, vh, NKV * H, o + h * H, NH * H, 0, first, H, NULL,
                                             NULL, scr);
                    for (int64_t p = first; p < T; p += step) {
                        int64_t n = T - p < step ? T - p : step;
                        nb_attn_forward_rows(kk, qh + p * NH * H, NH * H, kh, vh, NKV * H, o + p * NH * H + h * H,
                                             NH * H, p, n, H, NULL, NULL, scr);
                    }
                }
                char what[96];
                snprintf(what, sizeof what, "forward rows T %lld H %lld %s split %d", (long long)T, (long long)H,
                         kk->name, split);
                same_bits(o, nb_f32(ref), (long)(T * NH * H), what);
            }
        }
        free(o);
        free(scr);
        env_free(&e);
    }
    nb_simd_force(top);
}
END_TEST

/* pv_l (decode rows' outputs and normalisers, several heads side by side) on every table against
   the reference, exact: 1 to 8 heads (groups of every size the kernels make), odd head dims (one
   to seven vectors, partial ones), odd key counts, each head's e, v and o at its own unaligned
   place, o of one head written only in its H columns */
START_TEST(test_pv_l_exact) {
    const int64_t Hs[] = {1, 7, 8, 16, 33, 48, 64, 100, 130}, nks[] = {1, 7, 33, 100, 257};
    const int ns[] = {1, 2, 3, 5, 8};
    const nb_attn_kernels *ks[4];
    int nt = simd_tables(ks);
    for (size_t a = 0; a < sizeof Hs / sizeof *Hs; a++)
        for (size_t b = 0; b < sizeof nks / sizeof *nks; b++)
            for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
                const int64_t H = Hs[a], nk = nks[b], ldv = H * ns[c] + 3, n = ns[c];
                float *e = malloc((size_t)(n * (nk + 1) + 1) * sizeof(float));
                float *v = malloc((size_t)(nk * ldv + 1) * sizeof(float));
                float *o0 = malloc((size_t)(n * (H + 1)) * sizeof(float)), *o1 = malloc((size_t)(n * (H + 1) + 2) * sizeof(float));
                nbt_fill(e, (long)(n * (nk + 1) + 1), 31 + (int)n);
                for (int64_t j = 0; j < n * (nk + 1) + 1; j++) e[j] = fabsf(e[j]); /* probabilities are >= 0 */
                nbt_fill(v, (long)(nk * ldv + 1), 32);
                const float *eh[NB_ATTN_PV_HEADS], *vh[NB_ATTN_PV_HEADS];
                float *oh0[NB_ATTN_PV_HEADS], *oh1[NB_ATTN_PV_HEADS], l0[NB_ATTN_PV_HEADS], l1[NB_ATTN_PV_HEADS];
                for (int i = 0; i < n; i++) {
                    eh[i] = e + 1 + i * (nk + 1);
                    vh[i] = v + 1 + ((i * 5) % n) * H; /* heads in any order (and shared, as kv groups are) */
                    oh0[i] = o0 + i * (H + 1);
                    oh1[i] = o1 + 1 + i * (H + 1);
                }
                nb_attn_ref.pv_l((int)n, eh, nk, vh, ldv, H, oh0, l0);
                for (int t = 0; t < nt; t++) {
                    for (int64_t i = 0; i < n * (H + 1) + 2; i++) o1[i] = 12345.0f;
                    ks[t]->pv_l((int)n, eh, nk, vh, ldv, H, oh1, l1);
                    for (int i = 0; i < n; i++) {
                        ck_assert_msg(nb_f32_bits(l1[i]) == nb_f32_bits(l0[i]), "%s pv_l n %d H %lld nk %lld: l[%d] %a vs %a",
                                      ks[t]->name, (int)n, (long long)H, (long long)nk, i, l1[i], l0[i]);
                        same_bits(oh1[i], oh0[i], (long)H, ks[t]->name);
                        ck_assert(oh1[i][H] == 12345.0f); /* nothing written past H */
                    }
                    ck_assert(o1[0] == 12345.0f);
                    ks[t]->pv_l((int)n, eh, nk, vh, ldv, H, oh1, NULL); /* no normalisers wanted: the same o */
                    for (int i = 0; i < n; i++) same_bits(oh1[i], oh0[i], (long)H, ks[t]->name);
                }
                free(e), free(v), free(o0), free(o1);
            }
}
END_TEST

/* max_exp on every table against the reference, exact: odd lengths, unaligned, scores of any sign */
START_TEST(test_max_exp_exact) {
    const int64_t ns[] = {1, 7, 15, 16, 17, 33, 100, 1000};
    const nb_attn_kernels *ks[4];
    int nt = simd_tables(ks);
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++) {
        const int64_t n = ns[a];
        float *s = malloc((size_t)(n + 1) * sizeof(float)), *e0 = malloc((size_t)n * sizeof(float));
        float *e1 = malloc((size_t)(n + 2) * sizeof(float));
        nbt_fill(s, (long)n + 1, 40);
        for (int64_t j = 0; j <= n; j++) s[j] *= 30.0f;
        const float m0 = nb_attn_ref.max_exp(e0, s + 1, n);
        for (int t = 0; t < nt; t++) {
            e1[n + 1] = 12345.0f;
            const float m1 = ks[t]->max_exp(e1 + 1, s + 1, n);
            ck_assert_msg(nb_f32_bits(m1) == nb_f32_bits(m0), "%s max_exp n %lld: max %a vs %a", ks[t]->name,
                          (long long)n, m1, m0);
            same_bits(e1 + 1, e0, (long)n, ks[t]->name);
            ck_assert(e1[n + 1] == 12345.0f);
        }
        free(s), free(e0), free(e1);
    }
}
END_TEST

NB_SUITE("attention") {
    tcase_add_test(tc, test_pv_l_exact);
    tcase_add_test(tc, test_max_exp_exact);
    tcase_add_test(tc, test_exp_twin_exact);
    tcase_add_test(tc, test_mm_twins_exact);
    tcase_add_test(tc, test_strips_exact);
    tcase_add_test(tc, test_load_t_exact);
    tcase_add_test(tc, test_op_same_bits_everywhere);
    tcase_add_test(tc, test_forward_rows_any_split);
}
