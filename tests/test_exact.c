/* test_exact.c: the exported model computes exactly what the fake-quant model computes.
   (1) The training fake-quant of activations and the runtime's activation quantizers are
   bit-identical on the same input (Q8_0 blocks, int8 per token, int8 per group), rounding ties and
   odd scales included. (2) Tiny random models under the Q4_0 preset (+ q8_0 activations) and
   under int4 g32 weights (+ int8 per-token or per-group activations): the tape forward with the
   exact linears (linear_exact.h) and the integer runtime on the export (nb_export_build) give
   identical logits, at every SIMD level, prefilled in chunks or decoded token by token. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/fp16.h"
#include "../core/quant.h"
#include "../core/quant_blocks.h"
#include "../core/simd.h"
#include "../ops/kernels/qdot.h"
#include "../train/export.h"
#include "../train/linear_exact.h"
#include "../train/model.h"
#include "../train/qat.h"
#include "../train/recipe.h"
#include "../train/runtime.h"
#include "nbtest.h"

/* rows of activations with awkward values: ties of x * 127 / amax at .5, exact multiples, tiny
   and huge magnitudes, all-zero blocks, a negative largest magnitude */
static void awkward_rows(float *x, int rows, int cols, unsigned long long seed) {
    nb_rng r = nb_rng_make(seed, 5);
    for (int i = 0; i < rows; i++) {
        float *xr = x + (size_t)i * cols;
        float mag = powf(10.0f, (float)(i % 9) - 4.0f);
        for (int j = 0; j < cols; j++) xr[j] = mag * nb_rng_normal(&r);
        switch (i % 5) {
        case 1: /* ties: amax 127, values k + 0.5 */
            for (int j = 0; j < cols; j++) xr[j] = (j % 32 == 0) ? -127.0f : (float)((j * 7) % 254 - 127) + 0.5f;
            break;
        case 2: /* one all-zero block */
            for (int j = 0; j < 32 && j < cols; j++) xr[j] = 0.0f;
            break;
        case 3: /* exact codes times an odd scale */
            for (int j = 0; j < cols; j++) xr[j] = (float)((j * 13) % 255 - 127) * 0.0371f;
            break;
        default: break;
        }
    }
}

START_TEST(test_act_quantizers_identical) {
    enum { R = 40, K = 96 };
    float x[R * K], y[R * K], sc[R * K];
    awkward_rows(x, R, K, 11);
    nb_simd_level top = nb_simd_detect();
    for (int lv = NB_SIMD_SCALAR; lv <= (int)top; lv++) {
        nb_simd_force((nb_simd_level)lv);
        /* Q8_0 blocks (llama.cpp's activation rule): fake-quant values == runtime blocks dequantized */
        nb_qspec q8 = {.format = NB_QFMT_Q8_0, .bits = 8, .symmetric = 1};
        nb_fakequant_dynamic(&q8, x, R, K, y, sc);
        for (int i = 0; i < R; i++) {
            nb_block_q8_0 b[K / 32], bref[K / 32], btrain[K / 32];
            nb_quantize_act_q8_0(x + i * K, b, K);
            nb_quantize_act_q8_0_ref(x + i * K, bref, K);
            nb_quantize_row_q8_0_act(x + i * K, btrain, K);
            ck_assert_msg(!memcmp(b, bref, sizeof b), "level %d row %d: SIMD and scalar Q8_0 activation blocks differ", lv, i);
            ck_assert_msg(!memcmp(b, btrain, sizeof b), "level %d row %d: runtime and training Q8_0 blocks differ", lv, i);
            for (int j = 0; j < K; j++) {
                float v = nb_fp16_to_fp32(b[j / 32].d) * (float)b[j / 32].qs[j % 32];
                ck_assert_msg(v == y[i * K + j] || (v == 0 && y[i * K + j] == 0),
                              "level %d row %d col %d: runtime %.9g, fake-quant %.9g", lv, i, j, v, y[i * K + j]);
            }
        }
        /* int8 per token (symmetric, restrict_range) and per group of 32 */
        for (int g = 0; g < 2; g++) {
            nb_qspec s8 = {.format = NB_QFMT_INT, .bits = 8, .symmetric = 1, .restrict_range = 1,
                           .gran = g ? NB_QGRAN_GROUP : NB_QGRAN_ROW, .group_size = g ? 32 : 0};
            int64_t G = g ? 32 : K, ng = K / G;
            nb_fakequant_dynamic(&s8, x, R, K, y, sc);
            for (int i = 0; i < R; i++) {
                int8_t q[K];
                float s[K];
                nb_quantize_act_i8(x + i * K, q, s, K, G);
                for (int k = 0; k < ng; k++)
                    ck_assert_msg(s[k] == sc[i * ng + k], "level %d row %d group %d: scale %.9g vs %.9g", lv, i, k,
                                  s[k], sc[i * ng + k]);
                for (int j = 0; j < K; j++)
                    ck_assert_msg((float)q[j] * s[j / G] == y[i * K + j], "level %d row %d col %d (group %d): %d * %.9g vs %.9g",
                                  lv, i, j, (int)G, q[j], s[j / G], y[i * K + j]);
            }
        }
    }
    nb_simd_force(top);
}
END_TEST

/* ---- whole models ---- */

typedef struct tiny {
    nb_model m;
    nb_qat *q;
    nb_recipe r;
} tiny;

static void tiny_make(tiny *t, int dim, int hidden, int heads, int kv_heads, const char *quant_yaml) {
    nb_model_config c;
    nb_model_config_defaults(&c);
    c.dim = dim;
    c.hidden_dim = hidden;
    c.n_layers = 2;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    c.vocab_size = 48;
    c.seq_len = 80;
    ck_assert_msg(nb_model_init(&t->m, &c) == NB_OK, "%s", nb_errmsg());
    nb_model_init_random(&t->m, 0.3f, 7);
    /* norms away from 1 so that their weights matter */
    for (int i = 0; i < t->m.params.n; i++)
        if (t->m.params.p[i].kind == NB_PARAM_NORM) {
            float *w = nb_f32(&t->m.params.p[i].t);
            for (int64_t j = 0; j < nb_numel(&t->m.params.p[i].t); j++) w[j] = 0.5f + 0.03f * (float)(j % 37);
        }
    ck_assert_msg(nb_recipe_parse("tiny", quant_yaml, 0, NULL, &t->r) == NB_OK, "%s", nb_errmsg());
    ck_assert_msg(nb_qat_build(&t->r.quant, &t->m.params, 0.0f, &t->q) == NB_OK, "%s", nb_errmsg());
    nb_qat_begin_step(t->q, 0, NULL);
    t->m.qat = t->q;
}

static void tiny_free(tiny *t) {
    t->m.qat = NULL;
    t->m.exact = NULL;
    nb_model_free(&t->m);
    nb_qat_free(t->q);
    nb_recipe_free(&t->r);
}

/* logits (T, V) of the tape forward; exact: through the integer runtime's matmuls */
static void tape_logits(tiny *t, const int32_t *ids, int T, int exact, float *out) {
    env e;
    env_init(&e);
    nb_tape_grad(&e.t, 0);
    e.t.training = 0;
    nb_exact *ex = NULL;
    if (exact) ck_assert_msg(nb_exact_new(&t->m, t->q, &ex) == NB_OK, "%s", nb_errmsg());
    t->m.exact = ex;
    nb_tensor *x = nb_tensor_new(&e.a, NB_I32, 2, (int64_t[]){1, T});
    memcpy(x->data, ids, (size_t)T * sizeof(int32_t));
    nb_tensor *lg;
    ck_assert_msg(nb_model_forward(&e.t, &t->m, x, NULL, &lg, NULL) == NB_OK, "%s", nb_errmsg());
    memcpy(out, lg->data, (size_t)T * t->m.cfg.vocab_size * sizeof(float));
    t->m.exact = NULL;
    nb_exact_free(ex);
    env_free(&e);
}

/* logits of the export on the runtime, in chunks of `batch` rows (1 = token by token) */
static void runtime_logits(const nb_qmodel *x, const int32_t *ids, int T, int batch, float *out) {
    nb_qstate s;
    ck_assert(nb_qstate_init(&s, x, batch) == NB_OK);
    if (batch == 1)
        for (int t = 0; t < T; t++)
            ck_assert_msg(nb_qmodel_forward(x, &s, ids + t, 1, t, out + (size_t)t * x->cfg.vocab, 1) == NB_OK, "%s",
                          nb_errmsg());
    else
        ck_assert_msg(nb_qmodel_forward(x, &s, ids, T, 0, out, 1) == NB_OK, "%s", nb_errmsg());
    nb_qstate_free(&s);
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* every SIMD level: tape (exact linears) == runtime prefill == runtime decode, bit for bit; the
   GEMM forward differs from them only by float rounding */
static void check_exact(tiny *t, const char *what, int want_type) {
    enum { T = 72 };
    int V = t->m.cfg.vocab_size;
    int32_t ids[T];
    for (int i = 0; i < T; i++) ids[i] = (i * 29 + 3) % V;
    nb_qmodel *x;
    ck_assert_msg(nb_export_build(&t->m, t->q, NULL, &x) == NB_OK, "%s", nb_errmsg());
    ck_assert_msg((int)x->layers[0].wq.type == want_type, "%s: wq exported as %s", what,
                  nb_qtype_name(x->layers[0].wq.type));
    float *a = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V), *c = malloc(sizeof(float) * T * V);
    nb_simd_level top = nb_simd_detect();
    for (int lv = NB_SIMD_SCALAR; lv <= (int)top; lv++) {
        nb_simd_force((nb_simd_level)lv);
        tape_logits(t, ids, T, 1, a);
        runtime_logits(x, ids, T, 16, b);
        runtime_logits(x, ids, T, 1, c);
        for (int i = 0; i < T * V; i++) {
            ck_assert_msg(a[i] == b[i], "%s, %s: logit %d (position %d): model %.9g, export %.9g", what,
                          nb_simd_name((nb_simd_level)lv), i, i / V, a[i], b[i]);
            ck_assert_msg(b[i] == c[i], "%s, %s: logit %d (position %d): prefill %.9g, decode %.9g", what,
                          nb_simd_name((nb_simd_level)lv), i, i / V, b[i], c[i]);
        }
        /* the training forward (fp32 GEMM) computes the same function up to rounding (which can flip
           an activation code, then move a logit by more than an ulp) */
        tape_logits(t, ids, T, 0, c);
        double mx = 0;
        int agree = 0;
        for (int p = 0; p < T; p++) {
            agree += argmax(a + p * V, V) == argmax(c + p * V, V);
            for (int j = 0; j < V; j++) mx = fmax(mx, fabs((double)a[p * V + j] - c[p * V + j]));
        }
        ck_assert_msg(mx < 2.0 && agree >= T * 9 / 10, "%s: GEMM forward too far from the exact one (%g, %d/%d)", what,
                      mx, agree, T);
    }
    nb_simd_force(top);
    free(a);
    free(b);
    free(c);
    nb_qmodel_free(x);
}

START_TEST(test_exact_q4_0_preset) {
    static const char *y = "quant:\n  enabled: true\n  preset: q4_0\n  activations:\n"
                           "    - {match: \"layers.*.attn.w*\", bits: 8, granularity: q8_0}\n"
                           "    - {match: \"layers.*.ffn.w[13]\", bits: 8, granularity: q8_0}\n";
    tiny t;
    tiny_make(&t, 64, 80, 4, 2, y); /* head size 16 (attention's dot-product path), GQA, F16 w2 */
    check_exact(&t, "q4_0 preset, hs 16", NB_QT_Q4_0);
    tiny_free(&t);
    tiny_make(&t, 64, 96, 2, 2, y); /* head size 32 (broadcast path), Q4_0 w2 with fp32 input */
    check_exact(&t, "q4_0 preset, hs 32", NB_QT_Q4_0);
    tiny_free(&t);
}
END_TEST

START_TEST(test_exact_int4_acts) {
    /* the default recipe's grid: int4 g32 LSQ weights, int8 per-token activations */
    tiny t;
    tiny_make(&t, 64, 96, 4, 4,
              "quant:\n  enabled: true\n  weights:\n"
              "    - {match: \"*\", bits: 4, granularity: group, group_size: 32, estimator: lsq, observer: mse}\n"
              "  activations:\n    - {match: \"*\", bits: 8, granularity: token, restrict_range: true}\n");
    check_exact(&t, "int4 g32 + int8 per token", NB_QT_I4);
    tiny_free(&t);
    /* int4 g32 weights with int8 activations on the same groups of 32 */
    tiny_make(&t, 64, 96, 4, 2,
              "quant:\n  enabled: true\n  weights:\n    - {match: \"*\", bits: 4, granularity: group, group_size: 32}\n"
              "  activations:\n    - {match: \"*\", bits: 8, granularity: group, group_size: 32, restrict_range: true}\n");
    check_exact(&t, "int4 g32 + int8 g32", NB_QT_I4);
    tiny_free(&t);
    /* asymmetric int8 per-channel weights (zero points), int8 per-token activations */
    tiny_make(&t, 64, 96, 4, 2,
              "quant:\n  enabled: true\n  weights:\n    - {match: \"*\", bits: 8, symmetric: false, granularity: channel}\n"
              "  activations:\n    - {match: \"*\", bits: 8, granularity: token, restrict_range: true}\n");
    check_exact(&t, "int8 asymmetric channel + int8 per token", NB_QT_I8);
    tiny_free(&t);
}
END_TEST

/* a model big enough for the decode step's threads (forward_token: one parallel region per token,
   each thread owning a share of the heads and rows): 2 threads give the 1-thread bits, equal to
   the prefill's and the tape's; hidden sizes that are not a multiple of the row blocks. */
START_TEST(test_exact_threaded_decode) {
    /* kv heads 3 (not split evenly: q/k/v, a barrier, then attention), 2 and 6 (whole kv groups) */
    static const struct { int hidden, kv; const char *what, *w; int type; } cases[] = {
        {992, 3, "int4 g32", "{match: \"*\", bits: 4, granularity: group, group_size: 32}", NB_QT_I4},
        {1000, 3, "int8 channel", "{match: \"*\", bits: 8, granularity: channel}", NB_QT_I8},
        {992, 2, "int4 g32, 2 kv heads", "{match: \"*\", bits: 4, granularity: group, group_size: 32}", NB_QT_I4},
        {1000, 6, "int8 channel, 6 kv heads", "{match: \"*\", bits: 8, granularity: channel}", NB_QT_I8}};
    const int keep = nb_threads_get();
    nb_qdecode_all_threads(1); /* these models are small: 2 threads only when asked to */
    for (int i = 0; i < 4; i++) {
        char y[512], what[64];
        snprintf(y, sizeof y,
                 "quant:\n  enabled: true\n  weights:\n    - %s\n"
                 "  activations:\n    - {match: \"*\", bits: 8, granularity: token, restrict_range: true}\n",
                 cases[i].w);
        tiny t;
        tiny_make(&t, 192, cases[i].hidden, 6, cases[i].kv, y);
        for (int th = 1; th <= 2; th++) {
            nb_threads_set(th);
            snprintf(what, sizeof what, "%s, %d thread(s)", cases[i].what, th);
            check_exact(&t, what, cases[i].type);
        }
        tiny_free(&t);
    }
    nb_qdecode_all_threads(0);
    nb_threads_set(keep);
}
END_TEST

NB_SUITE("exact") {
    tcase_add_test(tc, test_exact_threaded_decode);
    tcase_add_test(tc, test_act_quantizers_identical);
    tcase_add_test(tc, test_exact_q4_0_preset);
    tcase_add_test(tc, test_exact_int4_acts);
}
