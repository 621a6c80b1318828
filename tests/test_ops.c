/* test_ops.c: SIMD row kernels vs their scalar twins, fused attention vs a naive composition,
   rope vs llama2.c's formula, dropout reproducibility, determinism across thread counts and
   bad-input messages. */
#include "nbtest.h"

#include <stdio.h>

#include "../core/simd.h"
#include "../ops/kernels/vec.h"
#include "../ops/ops.h"

static const int64_t sizes[] = {1, 3, 7, 17, 33, 100, 1000};
#define NSIZES (int)(sizeof sizes / sizeof sizes[0])
#define MAXN 1024

/* one unaligned (offset by one float) buffer of normal * scale values */
static float *ubuf(float *store, unsigned long long seed, float scale) {
    float *p = store + 1;
    nbt_fill(p, MAXN, seed);
    for (int i = 0; i < MAXN; i++) p[i] *= scale;
    return p;
}

#define CHECK_VEC(nm, a, b, n, tol)                                                                     \
    do {                                                                                                  \
        double e_ = nbt_maxrel((a), (b), (long)(n));                                                      \
        ck_assert_msg(e_ <= (tol), "%s %s n=%lld: max rel %.3g > %.3g", nm, k->name, (long long)(n), e_, \
                      (double)(tol));                                                                     \
    } while (0)
#define CHECK_SCALAR(nm, a, b, n, tol) \
    do {                                                                                               \
        float a_ = (a), b_ = (b);                                                                      \
        CHECK_VEC(nm, &a_, &b_, 1, tol);                                                             \
    } while (0)

/* Every kernel of every SIMD level this machine has, against nb_vec_ref. */
START_TEST(test_vec_twins) {
    static float sa[MAXN + 16], sb[MAXN + 16], sc[MAXN + 16], sd[MAXN + 16], se[MAXN + 16], sf[MAXN + 16];
    static float sw[MAXN + 16], y1[MAXN + 16], y2[MAXN + 16], z1[MAXN + 16], z2[MAXN + 16];
    const nb_vec_kernels *R = &nb_vec_ref;
    int tested = 0;
    for (int lvl = NB_SIMD_AVX2; lvl <= NB_SIMD_AVX512; lvl++) {
        const nb_vec_kernels *k = nb_vec_level((nb_simd_level)lvl);
        if (!k) continue;
        tested++;
        for (int si = 0; si < NSIZES; si++) {
            int64_t n = sizes[si];
            float *a = ubuf(sa, 1 + si, 1.0f), *b = ubuf(sb, 2 + si, 1.0f), *x = ubuf(sc, 3 + si, 3.0f);
            float *u = ubuf(sd, 4 + si, 1.0f), *dy = ubuf(se, 5 + si, 1.0f), *w = ubuf(sw, 6 + si, 1.0f);
            float *p = ubuf(sf, 7 + si, 0.1f);
            float tol_red = 2e-6f * (float)(n < 16 ? 16 : n); /* reductions: order differs */
            CHECK_SCALAR("dot", k->dot(a, b, n), R->dot(a, b, n), n, tol_red);
            memcpy(y1, a, n * 4), memcpy(y2, a, n * 4);
            k->axpy(y1 + 1, 0.7f, b, n), R->axpy(y2 + 1, 0.7f, b, n);
            CHECK_VEC("axpy", y1 + 1, y2 + 1, n, 1e-6);
            memcpy(y1 + 1, a, n * 4), memcpy(y2 + 1, a, n * 4);
            k->scal(y1 + 1, -1.3f, n), R->scal(y2 + 1, -1.3f, n);
            CHECK_VEC("scal", y1 + 1, y2 + 1, n, 0);
            ck_assert_float_eq(k->max(x, n), R->max(x, n));
            float m = R->max(x, n);
            float s1 = k->expsum(y1 + 1, x, m, n), s2 = R->expsum(y2 + 1, x, m, n);
            CHECK_VEC("expsum y", y1 + 1, y2 + 1, n, 1e-6);
            CHECK_SCALAR("expsum", s1, s2, n, tol_red);
            CHECK_SCALAR("expsum NULL", k->expsum(NULL, x, m, n), s2, n, tol_red);
            /* softmax backward on a real softmax row */
            R->scal(y2 + 1, 1.0f / s2, n);
            memcpy(z1, u, n * 4), memcpy(z2, u, n * 4);
            k->softmax_bwd(z1, y2 + 1, dy, n), R->softmax_bwd(z2, y2 + 1, dy, n);
            CHECK_VEC("softmax_bwd", z1, z2, n, tol_red);
            memcpy(z1 + 1, dy, n * 4), memcpy(z2 + 1, dy, n * 4);
            k->mul_sub(z1 + 1, p, 0.3f, n), R->mul_sub(z2 + 1, p, 0.3f, n);
            CHECK_VEC("mul_sub", z1 + 1, z2 + 1, n, 1e-6);
            float lse = m + logf(s2);
            memcpy(z1, u, n * 4), memcpy(z2, u, n * 4);
            k->xent_bwd(z1, x, lse, 0.25f, n), R->xent_bwd(z2, x, lse, 0.25f, n);
            CHECK_VEC("xent_bwd", z1, z2, n, 1e-6);
            float r1 = k->rmsnorm_fwd(y1 + 1, a, w, 1e-5f, n), r2 = R->rmsnorm_fwd(y2 + 1, a, w, 1e-5f, n);
            CHECK_SCALAR("rmsnorm r", r1, r2, n, tol_red);
            CHECK_VEC("rmsnorm_fwd", y1 + 1, y2 + 1, n, tol_red);
            memcpy(z1, u, n * 4), memcpy(z2, u, n * 4), memcpy(y1, b, n * 4), memcpy(y2, b, n * 4);
            k->rmsnorm_bwd(z1, y1, dy, a, w, r2, n), R->rmsnorm_bwd(z2, y2, dy, a, w, r2, n);
            CHECK_VEC("rmsnorm_bwd dx", z1, z2, n, tol_red);
            CHECK_VEC("rmsnorm_bwd dw", y1, y2, n, 1e-6);
            k->silu_fwd(y1 + 1, x, n), R->silu_fwd(y2 + 1, x, n);
            CHECK_VEC("silu_fwd", y1 + 1, y2 + 1, n, 1e-6);
            memcpy(z1 + 1, u, n * 4), memcpy(z2 + 1, u, n * 4);
            k->silu_bwd(z1 + 1, dy, x, n), R->silu_bwd(z2 + 1, dy, x, n);
            CHECK_VEC("silu_bwd", z1 + 1, z2 + 1, n, 1e-6);
            k->swiglu_fwd(y1 + 1, x, b, n), R->swiglu_fwd(y2 + 1, x, b, n);
            CHECK_VEC("swiglu_fwd", y1 + 1, y2 + 1, n, 1e-6);
            memcpy(z1 + 1, u, n * 4), memcpy(z2 + 1, u, n * 4), memcpy(y1, a, n * 4), memcpy(y2, a, n * 4);
            k->swiglu_bwd(z1 + 1, y1, dy, x, b, n), R->swiglu_bwd(z2 + 1, y2, dy, x, b, n);
            CHECK_VEC("swiglu_bwd dg", z1 + 1, z2 + 1, n, 1e-6);
            CHECK_VEC("swiglu_bwd du", y1, y2, n, 1e-6);
            k->swiglu_bwd(NULL, y1, dy, x, b, n), R->swiglu_bwd(NULL, y2, dy, x, b, n);
            CHECK_VEC("swiglu_bwd du only", y1, y2, n, 1e-6);
            int64_t ne = n < 2 ? 2 : n & ~(int64_t)1; /* rope works on pairs */
            for (int acc = 0; acc < 2; acc++) {
                memcpy(y1 + 1, u, ne * 4), memcpy(y2 + 1, u, ne * 4);
                k->rope(y1 + 1, a, b, w, ne, acc), R->rope(y2 + 1, a, b, w, ne, acc);
                CHECK_VEC("rope", y1 + 1, y2 + 1, ne, 1e-6);
            }
        }
        /* NaN propagates through the reductions and exp */
        float nanrow[5] = {1, 2, NAN, 4, 5};
        ck_assert(isnan(k->max(nanrow, 5)));
        ck_assert(isnan(k->expsum(NULL, nanrow, 0.0f, 5)));
        /* exp of very negative numbers goes to (about) zero, not garbage */
        float neg[3] = {-1000.0f, -INFINITY, 0.0f}, e[3];
        k->expsum(e, neg, 0.0f, 3);
        ck_assert(e[0] >= 0.0f && e[0] < 1e-30f && e[1] >= 0.0f && e[1] < 1e-30f && fabsf(e[2] - 1.0f) < 1e-6f);
    }
    printf("vec twins: %d SIMD level(s) checked against scalar\n", tested);
}
END_TEST

/* ---- helpers for op-level tests ---- */
static nb_tensor *randn(env *e, int ndim, const int64_t *shape, unsigned long long seed, int grad) {
    nb_tensor *x = nb_tensor_new(&e->a, NB_F32, ndim, shape);
    nbt_fill(x->data, (long)nb_numel(x), seed);
    x->requires_grad = grad;
    return x;
}

/* Fused attention vs matmul -> scale -> causal mask -> softmax -> matmul, per head, at every
   SIMD level: outputs and all three input gradients. */
static void attention_vs_naive(int64_t B, int64_t T, int64_t NH, int64_t NKV, int64_t H) {
    env e;
    env_init(&e);
    nb_tape *t = &e.t;
    nb_tensor *q = randn(&e, 4, (int64_t[]){B, T, NH, H}, 1, 1);
    nb_tensor *k = randn(&e, 4, (int64_t[]){B, T, NKV, H}, 2, 1);
    nb_tensor *v = randn(&e, 4, (int64_t[]){B, T, NKV, H}, 3, 1);
    nb_tensor *w = randn(&e, 4, (int64_t[]){B, T, NH, H}, 4, 0);
    nb_tensor *o = nb_attention(t, q, k, v);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(nb_backward(t, nb_sum(t, nb_mul(t, o, w)), NULL), NB_OK);

    /* naive, from per-head (T, H) copies */
    nb_tensor *mask = nb_tensor_zeros(&e.a, NB_F32, 2, (int64_t[]){T, T});
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = i + 1; j < T; j++) nb_f32(mask)[i * T + j] = -INFINITY;
    nb_tensor *qh[64], *kh[64], *vh[64], *wh[64];
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++) {
            nb_tensor *x = qh[b * NH + h] = nb_tensor_new(&e.a, NB_F32, 2, (int64_t[]){T, H});
            nb_tensor *y = wh[b * NH + h] = nb_tensor_new(&e.a, NB_F32, 2, (int64_t[]){T, H});
            for (int64_t i = 0; i < T * H; i++) {
                int64_t src = ((b * T + i / H) * NH + h) * H + i % H;
                nb_f32(x)[i] = nb_f32(q)[src];
                nb_f32(y)[i] = nb_f32(w)[src];
            }
            x->requires_grad = 1;
        }
        for (int64_t h = 0; h < NKV; h++) {
            nb_tensor *x = kh[b * NKV + h] = nb_tensor_new(&e.a, NB_F32, 2, (int64_t[]){T, H});
            nb_tensor *y = vh[b * NKV + h] = nb_tensor_new(&e.a, NB_F32, 2, (int64_t[]){T, H});
            for (int64_t i = 0; i < T * H; i++) {
                int64_t src = ((b * T + i / H) * NKV + h) * H + i % H;
                nb_f32(x)[i] = nb_f32(k)[src];
                nb_f32(y)[i] = nb_f32(v)[src];
            }
            x->requires_grad = y->requires_grad = 1;
        }
    }
    nb_tape t2;
    nb_tape_init(&t2, &e.a);
    nb_tensor *loss = NULL, *oh[64];
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++) {
            int64_t kv = b * NKV + h / (NH / NKV);
            nb_tensor *s = nb_matmul(&t2, qh[b * NH + h], kh[kv], 0, 1);
            s = nb_add(&t2, nb_scale(&t2, s, 1.0f / sqrtf((float)H)), mask);
            nb_tensor *y = oh[b * NH + h] = nb_matmul(&t2, nb_softmax(&t2, s), vh[kv], 0, 0);
            nb_tensor *l = nb_sum(&t2, nb_mul(&t2, y, wh[b * NH + h]));
            loss = loss ? nb_add(&t2, loss, l) : l;
        }
    ck_assert_int_eq(nb_backward(&t2, loss, NULL), NB_OK);
    double eo = 0, eq = 0, ek = 0, ev = 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T * H; i++) {
                int64_t src = ((b * T + i / H) * NH + h) * H + i % H;
                eo = fmax(eo, nbt_maxrel(nb_f32(o) + src, nb_f32(oh[b * NH + h]) + i, 1));
                eq = fmax(eq, nbt_maxrel(q->grad + src, qh[b * NH + h]->grad + i, 1));
            }
        for (int64_t h = 0; h < NKV; h++)
            for (int64_t i = 0; i < T * H; i++) {
                int64_t src = ((b * T + i / H) * NKV + h) * H + i % H;
                ek = fmax(ek, nbt_maxrel(k->grad + src, kh[b * NKV + h]->grad + i, 1));
                ev = fmax(ev, nbt_maxrel(v->grad + src, vh[b * NKV + h]->grad + i, 1));
            }
    }
    ck_assert_msg(eo < 2e-6 && eq < 1e-5 && ek < 1e-5 && ev < 1e-5,
                  "attention B%lld T%lld nh%lld nkv%lld H%lld (%s): out %.2g dq %.2g dk %.2g dv %.2g", (long long)B,
                  (long long)T, (long long)NH, (long long)NKV, (long long)H, nb_simd_name(nb_simd_active()), eo, eq, ek,
                  ev);
    nb_tape_free(&t2);
    env_free(&e);
}

START_TEST(test_attention_fused_vs_naive) {
    nb_simd_level top = nb_simd_detect();
    for (int l = NB_SIMD_SCALAR; l <= (int)top; l++) {
        nb_simd_force((nb_simd_level)l);
        attention_vs_naive(2, 7, 4, 2, 8);  /* GQA */
        attention_vs_naive(1, 1, 2, 1, 6);  /* T = 1 */
        attention_vs_naive(1, 37, 3, 3, 5); /* odd T and H, MHA */
        attention_vs_naive(2, 70, 2, 1, 16);
        attention_vs_naive(1, 21, 2, 1, 40); /* H >= 32: the broadcast-kernel path */
        attention_vs_naive(1, 33, 1, 1, 64);
    }
    nb_simd_force(top);
}
END_TEST

/* Gradients for one thread and for two must be bitwise identical (no thread-dependent sums).
   Sizes are large enough that every op here takes its threaded path. */
enum { DB = 4, DT = 257, DC = 128, DNH = 4, DNKV = 2, DH = 32, DV = 50 };
#define DET_N (DV * DC + DC + DC * DC + DNKV * DH * DC)

static void grads_at(int threads, float *out) {
    nb_threads_set(threads);
    env e;
    env_init(&e);
    nb_tape *t = &e.t;
    t->training = 1;
    nb_tensor *tab = randn(&e, 2, (int64_t[]){DV, DC}, 5, 1);
    nb_tensor *w = randn(&e, 1, (int64_t[]){DC}, 6, 1);
    nb_tensor *wq = randn(&e, 2, (int64_t[]){DC, DC}, 7, 1);
    nb_tensor *wk = randn(&e, 2, (int64_t[]){DNKV * DH, DC}, 8, 1);
    nb_tensor *ids = nb_tensor_new(&e.a, NB_I32, 2, (int64_t[]){DB, DT});
    for (int64_t i = 0; i < DB * DT; i++) ((int32_t *)ids->data)[i] = (int32_t)(i * 7 % DV);
    nb_tensor *x = nb_embedding(t, tab, ids);
    nb_tensor *h = nb_rmsnorm(t, x, w, 1e-5f);
    nb_tensor *q = nb_rope(t, nb_reshape(t, nb_linear(t, h, wq), 4, (int64_t[]){DB, DT, DNH, DH}), 10000.0f, 0);
    nb_tensor *k = nb_rope(t, nb_reshape(t, nb_linear(t, h, wk), 4, (int64_t[]){DB, DT, DNKV, DH}), 10000.0f, 0);
    nb_tensor *o = nb_reshape(t, nb_attention(t, q, k, k), 3, (int64_t[]){DB, DT, DC});
    x = nb_add(t, x, nb_dropout(t, nb_swiglu(t, o, h), 0.1f));
    nb_tensor *loss = nb_cross_entropy(t, x, ids);
    ck_assert_int_eq(nb_backward(t, loss, NULL), NB_OK);
    nb_tensor *ps[4] = {tab, w, wq, wk};
    for (int i = 0; i < 4; i++) {
        memcpy(out, ps[i]->grad, nb_numel(ps[i]) * 4);
        out += nb_numel(ps[i]);
    }
    env_free(&e);
}

START_TEST(test_deterministic_across_threads) {
    float *g1 = malloc(DET_N * 4), *g2 = malloc(DET_N * 4);
    int keep = nb_threads_get();
    grads_at(1, g1);
    grads_at(2, g2);
    nb_threads_set(keep);
    ck_assert_msg(memcmp(g1, g2, DET_N * 4) == 0, "gradients differ between 1 and 2 threads");
    double s = 0;
    for (int i = 0; i < DET_N; i++) s += fabs(g1[i]);
    ck_assert(s > 0 && isfinite(s));
    free(g1);
    free(g2);
}
END_TEST

/* llama2.c run.c, verbatim in spirit: the rotation applied in place to one head vector */
static void rope_llama2c(float *q, int pos, int head_size) {
    for (int i = 0; i < head_size; i += 2) {
        int head_dim = i % head_size;
        float freq = 1.0f / powf(10000.0f, head_dim / (float)head_size);
        float val = pos * freq;
        float fcr = cosf(val), fci = sinf(val);
        float v0 = q[i], v1 = q[i + 1];
        q[i] = v0 * fcr - v1 * fci;
        q[i + 1] = v0 * fci + v1 * fcr;
    }
}

START_TEST(test_rope_matches_llama2c) {
    env e;
    env_init(&e);
    /* hand example: H = 2, x = (1, 0) at position 1 rotates by 1 radian */
    nb_tensor *x = nb_tensor_new(&e.a, NB_F32, 4, (int64_t[]){1, 2, 1, 2});
    float *xd = x->data;
    xd[0] = 1, xd[1] = 0, xd[2] = 1, xd[3] = 0;
    nb_tensor *y = nb_rope(&e.t, x, 10000.0f, 0);
    ck_assert_float_eq_tol(nb_f32(y)[0], 1.0f, 1e-7f); /* position 0: unchanged */
    ck_assert_float_eq_tol(nb_f32(y)[1], 0.0f, 1e-7f);
    ck_assert_float_eq_tol(nb_f32(y)[2], cosf(1.0f), 1e-7f);
    ck_assert_float_eq_tol(nb_f32(y)[3], sinf(1.0f), 1e-7f);
    /* a real head (H = 8, 3 heads, positions 5..8) against the llama2.c loop */
    int64_t T = 4, NH = 3, H = 8;
    nb_tensor *z = randn(&e, 4, (int64_t[]){1, T, NH, H}, 9, 0);
    nb_simd_level top = nb_simd_detect();
    for (int l = NB_SIMD_SCALAR; l <= (int)top; l++) {
        nb_simd_force((nb_simd_level)l);
        nb_tensor *r = nb_rope(&e.t, z, 10000.0f, 5);
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < NH; h++) {
                float ref[8];
                memcpy(ref, nb_f32(z) + (t * NH + h) * H, sizeof ref);
                rope_llama2c(ref, (int)(5 + t), (int)H);
                double err = nbt_maxrel(nb_f32(r) + (t * NH + h) * H, ref, H);
                ck_assert_msg(err < 1e-6, "rope t=%lld h=%lld %s: %.3g", (long long)t, (long long)h,
                              nb_simd_name(nb_simd_active()), err);
            }
    }
    nb_simd_force(top);
    ck_assert_int_eq(nb_tape_status(&e.t), NB_OK);
    env_free(&e);
}
END_TEST

START_TEST(test_dropout_reproducible) {
    env e;
    env_init(&e);
    nb_tape *t = &e.t;
    nb_tensor *x = nb_tensor_new(&e.a, NB_F32, 1, (int64_t[]){10000});
    for (int i = 0; i < 10000; i++) nb_f32(x)[i] = 1.0f;
    ck_assert_ptr_eq(nb_dropout(t, x, 0.5f), x); /* not training: identity */
    t->training = 1;
    ck_assert_ptr_eq(nb_dropout(t, x, 0.0f), x);
    nb_rng start = t->rng;
    nb_tensor *y1 = nb_dropout(t, x, 0.25f);
    nb_tensor *y2 = nb_dropout(t, x, 0.25f); /* counter moved on: a different mask */
    t->rng = start;
    nb_tensor *y3 = nb_dropout(t, x, 0.25f); /* same state: the same mask */
    int zeros = 0, differ = 0;
    for (int i = 0; i < 10000; i++) {
        float a = nb_f32(y1)[i];
        ck_assert(a == 0.0f || fabsf(a - 1.0f / 0.75f) < 1e-6f);
        zeros += a == 0.0f;
        differ += a != nb_f32(y2)[i];
        ck_assert(a == nb_f32(y3)[i]);
    }
    ck_assert_int_gt(zeros, 2300);
    ck_assert_int_lt(zeros, 2700);
    ck_assert_int_gt(differ, 1000);
    ck_assert_ptr_null(nb_dropout(t, x, 1.0f));
    ck_assert(strstr(t->msg, "dropout: p must be in [0, 1), got 1") != NULL);
    env_free(&e);
}
END_TEST

START_TEST(test_values_small) {
    env e;
    env_init(&e);
    nb_tape *t = &e.t;
    /* broadcasting: (2, 1) + (3) -> (2, 3) */
    nb_tensor *a = nb_tensor_new(&e.a, NB_F32, 2, (int64_t[]){2, 1});
    nb_tensor *b = nb_tensor_new(&e.a, NB_F32, 1, (int64_t[]){3});
    nb_f32(a)[0] = 10, nb_f32(a)[1] = 20;
    nb_f32(b)[0] = 1, nb_f32(b)[1] = 2, nb_f32(b)[2] = 3;
    nb_tensor *c = nb_sub(t, a, b);
    ck_assert_int_eq(c->ndim, 2);
    ck_assert_int_eq(c->shape[1], 3);
    float want[6] = {9, 8, 7, 19, 18, 17};
    for (int i = 0; i < 6; i++) ck_assert_float_eq(nb_f32(c)[i], want[i]);
    ck_assert_float_eq(nb_f32(nb_mean(t, c))[0], 13.0f);
    /* cross-entropy: uniform logits give log V; ignored rows do not count */
    nb_tensor *lg = nb_tensor_zeros(&e.a, NB_F32, 2, (int64_t[]){3, 4});
    nb_tensor *tg = nb_tensor_new(&e.a, NB_I32, 1, (int64_t[]){3});
    int32_t *ti = tg->data;
    ti[0] = 1, ti[1] = -1, ti[2] = 3;
    nb_f32(lg)[4 + 0] = 100.0f; /* an ignored row with a huge logit changes nothing */
    ck_assert_float_eq_tol(nb_f32(nb_cross_entropy(t, lg, tg))[0], logf(4.0f), 1e-6f);
    /* KL of identical distributions is 0; a shift of all logits changes nothing */
    nb_tensor *s = randn(&e, 2, (int64_t[]){3, 5}, 11, 0), *s2 = nb_tensor_like(&e.a, s);
    for (int i = 0; i < 15; i++) nb_f32(s2)[i] = nb_f32(s)[i] + 3.0f;
    ck_assert_float_eq_tol(nb_f32(nb_kl_div(t, s, s2, 2.0f))[0], 0.0f, 1e-6f);
    /* embedding gathers rows */
    nb_tensor *tab = randn(&e, 2, (int64_t[]){5, 3}, 12, 0);
    nb_tensor *ids = nb_tensor_new(&e.a, NB_I32, 1, (int64_t[]){2});
    ((int32_t *)ids->data)[0] = 4, ((int32_t *)ids->data)[1] = 0;
    nb_tensor *em = nb_embedding(t, tab, ids);
    ck_assert_float_eq(nb_f32(em)[0], nb_f32(tab)[12]);
    ck_assert_float_eq(nb_f32(em)[5], nb_f32(tab)[2]);
    ck_assert_int_eq(nb_tape_status(t), NB_OK);
    env_free(&e);
}
END_TEST

/* Each bad call fails the tape with a message containing `want`; later ops are no-ops. */
#define EXPECT_FAIL(call, code, want)                                                                   \
    do {                                                                                                \
        env e_;                                                                                         \
        env_init(&e_);                                                                                  \
        nb_tape *t = &e_.t;                                                                             \
        nb_arena *A = &e_.a;                                                                            \
        (void)A;                                                                                        \
        nb_tensor *r_ = (call);                                                                         \
        ck_assert_ptr_null(r_);                                                                         \
        ck_assert_int_eq(nb_tape_status(t), code);                                                      \
        ck_assert_msg(strstr(nb_errmsg(), want) != NULL, "message '%s' lacks '%s'", nb_errmsg(), want); \
        ck_assert_ptr_null(nb_silu(t, NULL)); /* sticky: the first failure stays */                     \
        ck_assert_msg(strstr(nb_errmsg(), want) != NULL, "%s", nb_errmsg());                          \
        env_free(&e_);                                                                                  \
    } while (0)

#define F32(...) nb_tensor_zeros(A, NB_F32, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8), (int64_t[]){__VA_ARGS__})
#define I32(...) nb_tensor_zeros(A, NB_I32, (int)(sizeof((int64_t[]){__VA_ARGS__}) / 8), (int64_t[]){__VA_ARGS__})

static nb_tensor *ids_with(nb_arena *A, int32_t bad) {
    nb_tensor *x = I32(4);
    ((int32_t *)x->data)[2] = bad;
    return x;
}

START_TEST(test_bad_inputs) {
    EXPECT_FAIL(nb_add(t, F32(2, 3), F32(4)), NB_ESHAPE, "add: shapes do not broadcast: (2, 3) vs (4)");
    EXPECT_FAIL(nb_mul(t, F32(2, 3), NULL), NB_EINVAL, "mul: b is NULL");
    EXPECT_FAIL(nb_mean(t, F32(0, 3)), NB_ESHAPE, "mean: a (0, 3) is empty");
    EXPECT_FAIL(nb_reshape(t, F32(2, 3), 2, (int64_t[]){4, 2}), NB_ESHAPE, "6 elements");
    EXPECT_FAIL(nb_embedding(t, F32(7, 3), ids_with(A, 7)), NB_ERANGE, "id 7 at position 2 is outside [0, 7)");
    EXPECT_FAIL(nb_embedding(t, F32(7, 3), ids_with(A, -1)), NB_ERANGE, "id -1");
    EXPECT_FAIL(nb_embedding(t, F32(7, 3), F32(4)), NB_EINVAL, "ids (4) must be i32");
    EXPECT_FAIL(nb_rmsnorm(t, F32(2, 8), F32(7), 1e-5f), NB_ESHAPE, "rmsnorm: w must be (C) for x (..., C): (7) vs (2, 8)");
    EXPECT_FAIL(nb_rmsnorm(t, F32(2, 0), F32(0), 1e-5f), NB_ESHAPE, "empty");
    EXPECT_FAIL(nb_layernorm(t, F32(2, 8), F32(8), F32(3), 1e-5f), NB_ESHAPE, "b must be (C)");
    EXPECT_FAIL(nb_rope(t, F32(1, 2, 2, 5), 10000.0f, 0), NB_ESHAPE, "H even");
    EXPECT_FAIL(nb_rope(t, F32(2, 5), 10000.0f, 0), NB_ESHAPE, "(B, T, n_heads, H)");
    EXPECT_FAIL(nb_swiglu(t, F32(2, 5), F32(2, 4)), NB_ESHAPE, "swiglu: gate and up differ: (2, 5) vs (2, 4)");
    EXPECT_FAIL(nb_softmax(t, F32(3, 0)), NB_ESHAPE, "empty");
    EXPECT_FAIL(nb_attention(t, F32(1, 4, 3, 8), F32(1, 4, 2, 8), F32(1, 4, 2, 8)), NB_ESHAPE, "nh % nkv == 0");
    EXPECT_FAIL(nb_attention(t, F32(1, 4, 2, 8), F32(1, 5, 2, 8), F32(1, 5, 2, 8)), NB_ESHAPE, "q (1, 4, 2, 8), k (1, 5, 2, 8)");
    EXPECT_FAIL(nb_cross_entropy(t, F32(4, 7), ids_with(A, 9)), NB_ERANGE, "target 9 at row 2 is outside [0, 7)");
    EXPECT_FAIL(nb_cross_entropy(t, F32(3, 7), ids_with(A, 1)), NB_ESHAPE, "(3, 7) vs (4)");
    EXPECT_FAIL(nb_kl_div(t, F32(3, 7), F32(3, 6), 1.0f), NB_ESHAPE, "student and teacher logits differ: (3, 7) vs (3, 6)");
    EXPECT_FAIL(nb_kl_div(t, F32(3, 7), F32(3, 7), 0.0f), NB_EINVAL, "temperature");
}
END_TEST

/* NaN input is not hidden: it reaches the output, where nb_check_finite reports it. */
START_TEST(test_nan_propagates) {
    env e;
    env_init(&e);
    nb_tape *t = &e.t;
    nb_tensor *x = randn(&e, 4, (int64_t[]){1, 3, 2, 4}, 13, 0);
    nb_f32(x)[9] = NAN; /* row t=1 */
    nb_tensor *w = randn(&e, 1, (int64_t[]){4}, 14, 0);
    nb_tensor *ys[4] = {nb_rmsnorm(t, x, w, 1e-5f), nb_softmax(t, x), nb_attention(t, x, x, x), nb_swiglu(t, x, x)};
    for (int i = 0; i < 4; i++) {
        ck_assert_ptr_nonnull(ys[i]);
        ck_assert_int_eq(nb_check_finite(ys[i]), NB_ENAN);
    }
    nb_tensor *lg = nb_reshape(t, x, 2, (int64_t[]){6, 4});
    nb_tensor *tg = nb_tensor_zeros(&e.a, NB_I32, 1, (int64_t[]){6});
    ck_assert(isnan(nb_f32(nb_cross_entropy(t, lg, tg))[0]));
    env_free(&e);
}
END_TEST

/* Random shapes, dtypes, empty and transposed inputs into every op: each call either succeeds
   (and its backward runs) or fails the tape with a message; nothing crashes (run under ASan). */
static nb_tensor *rand_tensor(nb_arena *a, nb_rng *r) {
    int nd = 1 + (int)nb_rng_below(r, 4);
    int64_t shape[4];
    for (int i = 0; i < nd; i++) shape[i] = (int64_t)nb_rng_below(r, 4) + (nb_rng_below(r, 8) ? 1 : 0);
    nb_dtype dt = nb_rng_below(r, 6) ? NB_F32 : NB_I32;
    nb_tensor *x = nb_tensor_new(a, dt, nd, shape);
    for (int64_t i = 0; i < nb_numel(x); i++) {
        if (dt == NB_F32) nb_f32(x)[i] = nb_rng_normal(r);
        else ((int32_t *)x->data)[i] = (int32_t)nb_rng_below(r, 5) - 1;
    }
    x->requires_grad = dt == NB_F32 && nb_rng_below(r, 4) != 0;
    if (nd >= 2 && !nb_rng_below(r, 8)) { /* a transposed view */
        nb_tensor *v = nb_arena_alloc(a, sizeof *v);
        nb_view_transpose(x, v);
        return v;
    }
    return nb_rng_below(r, 30) ? x : NULL;
}

START_TEST(test_random_inputs_never_crash) {
    nb_rng r = nb_rng_make(2024, 1);
    int ok = 0, failed = 0, n = getenv("NB_SANITIZE") ? 400 : 1500;
    for (int it = 0; it < n; it++) {
        env e;
        env_init(&e);
        nb_tape *t = &e.t;
        t->training = (int)nb_rng_below(&r, 2);
        nb_tensor *a = rand_tensor(&e.a, &r), *b = rand_tensor(&e.a, &r), *c = rand_tensor(&e.a, &r);
        nb_tensor *y = NULL;
        switch (it % 19) {
        case 0: y = nb_add(t, a, b); break;
        case 1: y = nb_sub(t, a, b); break;
        case 2: y = nb_mul(t, a, b); break;
        case 3: y = nb_scale(t, a, 2.0f); break;
        case 4: y = nb_mean(t, a); break;
        case 5: y = nb_reshape(t, a, 1, (int64_t[]){a ? nb_numel(a) : 1}); break;
        case 6: y = nb_embedding(t, a, b); break;
        case 7: y = nb_rmsnorm(t, a, b, 1e-5f); break;
        case 8: y = nb_layernorm(t, a, b, c, 1e-5f); break;
        case 9: y = nb_rope(t, a, 10000.0f, 3); break;
        case 10: y = nb_silu(t, a); break;
        case 11: y = nb_gelu(t, a); break;
        case 12: y = nb_swiglu(t, a, b); break;
        case 13: y = nb_softmax(t, a); break;
        case 14: y = nb_dropout(t, a, 0.5f); break;
        case 15: y = nb_attention(t, a, b, c); break;
        case 16: y = nb_cross_entropy(t, a, b); break;
        case 17: y = nb_kl_div(t, a, b, 1.5f); break;
        case 18: y = nb_sum(t, nb_mul(t, nb_softmax(t, a), b)); break;
        }
        if (y) {
            ck_assert_int_eq(nb_tape_status(t), NB_OK);
            if (y->requires_grad) {
                float *seed = nb_arena_alloc(&e.a, (size_t)nb_numel(y) * 4 + 4);
                for (int64_t i = 0; i < nb_numel(y); i++) seed[i] = 1.0f;
                ck_assert_int_eq(nb_backward(t, y, seed), NB_OK);
            }
            ok++;
        } else {
            ck_assert_int_ne(nb_tape_status(t), NB_OK);
            ck_assert(strlen(nb_errmsg()) > 5);
            failed++;
        }
        env_free(&e);
    }
    printf("random inputs: %d accepted, %d refused with a message\n", ok, failed);
    ck_assert(ok > n / 10 && failed > n / 10);
}
END_TEST

/* rope reuses the tables of an earlier rope on the tape only when T, H, theta and pos0 all match */
START_TEST(test_rope_tables_shared) {
    int64_t sh[4] = {2, 5, 3, 6}, sh2[4] = {2, 5, 1, 6};
    float ref[3][2 * 5 * 3 * 6];
    const float theta[3] = {10000.0f, 500.0f, 10000.0f};
    const int64_t pos[3] = {0, 0, 2};
    for (int k = 0; k < 3; k++) { /* alone on a fresh tape */
        env e;
        env_init(&e);
        nb_tensor *x = nb_tape_tensor(&e.t, 4, sh);
        nbt_fill(x->data, 180, 3);
        x->requires_grad = 1;
        nb_tensor *y = nb_rope(&e.t, x, theta[k], pos[k]);
        ck_assert_ptr_nonnull(y);
        memcpy(ref[k], y->data, sizeof ref[k]);
        env_free(&e);
    }
    env e;
    env_init(&e);
    nb_tensor *z = nb_tape_tensor(&e.t, 4, sh2), *x = nb_tape_tensor(&e.t, 4, sh);
    nbt_fill(z->data, 60, 4);
    nbt_fill(x->data, 180, 3);
    z->requires_grad = x->requires_grad = 1;
    ck_assert_ptr_nonnull(nb_rope(&e.t, z, 10000.0f, 0)); /* other head count, same T and H: shareable */
    for (int k = 0; k < 3; k++) {
        nb_tensor *y = nb_rope(&e.t, x, theta[k], pos[k]);
        ck_assert_ptr_nonnull(y);
        ck_assert_msg(!memcmp(y->data, ref[k], sizeof ref[k]), "rope %d differs after an earlier rope", k);
    }
    env_free(&e);
}
END_TEST

NB_SUITE("ops") {
    tcase_add_test(tc, test_rope_tables_shared);
    tcase_add_test(tc, test_random_inputs_never_crash);
    tcase_add_test(tc, test_vec_twins);
    tcase_add_test(tc, test_attention_fused_vs_naive);
    tcase_add_test(tc, test_deterministic_across_threads);
    tcase_add_test(tc, test_rope_matches_llama2c);
    tcase_add_test(tc, test_dropout_reproducible);
    tcase_add_test(tc, test_values_small);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_nan_propagates);
}
