/* test_block.c: a 2-layer llama-style transformer built straight from the ops (embedding ->
   [rmsnorm -> q,k,v -> rope -> attention -> wo -> residual -> rmsnorm -> w1,w3 -> swiglu -> w2 ->
   residual] x 2 -> rmsnorm -> classifier -> cross-entropy), gradient-checked end to end by
   five-point central differences on every weight. */
#include "nbtest.h"

#include <stdio.h>

#include "../core/simd.h"
#include "../ops/ops.h"

enum { B = 2, T = 5, C = 8, NH = 2, NKV = 1, H = 4, HID = 12, V = 11, L = 2 };

typedef struct block_params {
    nb_tensor emb;                      /* (V, C) */
    nb_tensor an[L], wq[L], wk[L], wv[L], wo[L]; /* (C), (C, C), (NKV H, C) x2, (C, C) */
    nb_tensor fn[L], w1[L], w3[L], w2[L];        /* (C), (HID, C) x2, (C, HID) */
    nb_tensor norm, cls;                /* (C), (V, C) */
} block_params;

#define NPARAM (1 + 9 * L + 2)

static nb_tensor *param(block_params *p, int i) { return &p->emb + i; }

static float *setup(block_params *p, int64_t *total) {
    int64_t shapes[NPARAM][2], nd[NPARAM], k = 0, n = 0;
#define P(a, b) (shapes[k][0] = (a), shapes[k][1] = (b), nd[k] = (b) ? 2 : 1, k++)
    P(V, C);
    for (int l = 0; l < L; l++) P(C, 0);
    for (int l = 0; l < L; l++) P(C, C);
    for (int l = 0; l < L; l++) P(NKV * H, C);
    for (int l = 0; l < L; l++) P(NKV * H, C);
    for (int l = 0; l < L; l++) P(C, C);
    for (int l = 0; l < L; l++) P(C, 0);
    for (int l = 0; l < L; l++) P(HID, C);
    for (int l = 0; l < L; l++) P(HID, C);
    for (int l = 0; l < L; l++) P(C, HID);
    P(C, 0);
    P(V, C);
#undef P
    for (int i = 0; i < NPARAM; i++) n += shapes[i][0] * (nd[i] == 2 ? shapes[i][1] : 1);
    float *data = malloc(n * sizeof(float)); /* one flat block, as train/params does */
    nb_rng r = nb_rng_make(42, 1);
    int64_t off = 0;
    for (int i = 0; i < NPARAM; i++) {
        nb_tensor *t = param(p, i);
        *t = nb_tensor_wrap(data + off, NB_F32, (int)nd[i], shapes[i]);
        t->requires_grad = 1;
        for (int64_t j = 0; j < nb_numel(t); j++)
            data[off + j] = nd[i] == 1 ? 1.0f + 0.1f * nb_rng_normal(&r) : 0.4f * nb_rng_normal(&r);
        off += nb_numel(t);
    }
    *total = n;
    return data;
}

/* the model: returns logits (B, T, V) */
static nb_tensor *forward(nb_tape *t, block_params *p, nb_tensor *ids) {
    const float eps = 1e-5f;
    nb_tensor *x = nb_embedding(t, &p->emb, ids);
    for (int l = 0; l < L; l++) {
        nb_tensor *h = nb_rmsnorm(t, x, &p->an[l], eps);
        nb_tensor *q = nb_reshape(t, nb_linear(t, h, &p->wq[l]), 4, (int64_t[]){B, T, NH, H});
        nb_tensor *k = nb_reshape(t, nb_linear(t, h, &p->wk[l]), 4, (int64_t[]){B, T, NKV, H});
        nb_tensor *v = nb_reshape(t, nb_linear(t, h, &p->wv[l]), 4, (int64_t[]){B, T, NKV, H});
        q = nb_rope(t, q, 10000.0f, 0);
        k = nb_rope(t, k, 10000.0f, 0);
        nb_tensor *a = nb_reshape(t, nb_attention(t, q, k, v), 3, (int64_t[]){B, T, C});
        x = nb_add(t, x, nb_linear(t, a, &p->wo[l]));
        h = nb_rmsnorm(t, x, &p->fn[l], eps);
        nb_tensor *f = nb_swiglu(t, nb_linear(t, h, &p->w1[l]), nb_linear(t, h, &p->w3[l]));
        x = nb_add(t, x, nb_linear(t, f, &p->w2[l]));
    }
    return nb_linear(t, nb_rmsnorm(t, x, &p->norm, eps), &p->cls);
}

/* mean cross-entropy of the logits in double: the finite differences need a loss resolved finer
   than one fp32 ulp of the loss value */
static double ce_double(const nb_tensor *logits, const int32_t *tg) {
    const float *x = logits->data;
    double s = 0;
    for (int r = 0; r < B * T; r++) {
        double m = -INFINITY, z = 0;
        for (int v = 0; v < V; v++) m = fmax(m, x[r * V + v]);
        for (int v = 0; v < V; v++) z += exp(x[r * V + v] - m);
        s += m + log(z) - x[r * V + tg[r]];
    }
    return s / (B * T);
}

static double loss_nograd(nb_arena *a, block_params *p, nb_tensor *ids, const int32_t *tg) {
    nb_arena_reset(a);
    nb_tape t;
    nb_tape_init(&t, a);
    nb_tape_grad(&t, 0);
    nb_tensor *lg = forward(&t, p, ids);
    ck_assert_int_eq(nb_tape_status(&t), NB_OK);
    double l = ce_double(lg, tg);
    nb_tape_free(&t);
    return l;
}

static void check_block(void) {
    block_params p;
    int64_t n;
    float *data = setup(&p, &n);
    nb_arena a, scratch;
    nb_arena_init(&a, 1 << 20);
    nb_arena_init(&scratch, 1 << 20);
    nb_tensor *ids = nb_tensor_new(&a, NB_I32, 2, (int64_t[]){B, T});
    nb_tensor *tg = nb_tensor_new(&a, NB_I32, 2, (int64_t[]){B, T});
    nb_rng r = nb_rng_make(7, 3);
    for (int i = 0; i < B * T; i++) {
        ((int32_t *)ids->data)[i] = (int32_t)nb_rng_below(&r, V);
        ((int32_t *)tg->data)[i] = (int32_t)nb_rng_below(&r, V);
    }

    /* analytic */
    nb_tape t;
    nb_tape_init(&t, &a);
    nb_tensor *loss = nb_cross_entropy(&t, forward(&t, &p, ids), tg);
    ck_assert_int_eq(nb_backward(&t, loss, NULL), NB_OK);
    ck_assert_double_eq_tol(nb_f32(loss)[0], loss_nograd(&scratch, &p, ids, tg->data), 1e-5);

    /* numeric, every element of every weight */
    const double eps = 1e-2;
    double worst = 0;
    int checked = 0;
    char where[160] = "";
    for (int i = 0; i < NPARAM; i++) {
        nb_tensor *w = param(&p, i);
        ck_assert_ptr_nonnull(w->grad);
        double gscale = 0, tensor_worst = 0;
        for (int64_t j = 0; j < nb_numel(w); j++) gscale = fmax(gscale, fabs(w->grad[j]));
        ck_assert_msg(gscale > 0, "parameter %d got no gradient", i);
        for (int64_t j = 0; j < nb_numel(w); j++) {
            /* five-point central difference: truncation O(h^4), so h can be large enough
               that the fp32 rounding noise of the forward stays far below the gradient */
            float *x = nb_f32(w) + j, keep = *x;
            double f[4];
            const double steps[4] = {-2, -1, 1, 2};
            for (int s = 0; s < 4; s++) {
                *x = (float)(keep + steps[s] * eps);
                f[s] = loss_nograd(&scratch, &p, ids, tg->data);
            }
            *x = keep;
            double num = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * eps), ana = w->grad[j];
            double rel = fabs(num - ana) / fmax(fmax(fabs(num), fabs(ana)), 1e-2 * gscale);
            tensor_worst = fmax(tensor_worst, rel);
            if (rel > worst) {
                worst = rel;
                snprintf(where, sizeof where, "param %d element %lld: analytic %.6g numeric %.6g", i, (long long)j, ana, num);
            }
            checked++;
        }
    }
    printf("block gradcheck (%s): %d weights, max rel %.2e at %s\n", nb_simd_name(nb_simd_active()), checked, worst,
           where);
    ck_assert_int_eq(checked, n);
    ck_assert_msg(worst < 1e-2, "block gradient: max rel %.3g at %s", worst, where);
    nb_tape_free(&t);
    nb_arena_free(&a);
    nb_arena_free(&scratch);
    free(data);
}

START_TEST(test_block_gradcheck) {
    nb_simd_level top = nb_simd_detect();
    check_block();
    if (!getenv("NB_SANITIZE") && top > NB_SIMD_SCALAR) { /* once more on the scalar twins */
        nb_simd_force(NB_SIMD_SCALAR);
        check_block();
        nb_simd_force(top);
    }
}
END_TEST

NB_SUITE("block") { tcase_add_test(tc, test_block_gradcheck); }
