/* test_runtime.c: integer dot kernels against their twins, the runtime forward pass against the
   stories260K reference, prefill vs decode, and quantized variants against fp32. */
#include "nbtest.h"

#include "../core/fp16.h"
#include "../core/simd.h"
#include "../ops/kernels/qdot.h"
#include "../train/checkpoint.h"
#include "../train/model.h"
#include "../data/tokenizer.h"
#include "rt_util.h"

static const int sizes[] = {1, 3, 7, 17, 33, 100, 1000};

static void fill_i8(int8_t *x, int64_t n, unsigned long long seed, int lo, int hi) {
    nb_rng r = nb_rng_make(seed, 5);
    for (int64_t i = 0; i < n; i++) x[i] = (int8_t)(lo + (int)nb_rng_below(&r, (uint64_t)(hi - lo + 1)));
}

/* every SIMD level this machine has, then back to the best */
static int levels(nb_simd_level *out) {
    int n = 0;
    nb_simd_level best = nb_simd_detect();
    for (int l = NB_SIMD_SCALAR; l <= (int)best; l++) out[n++] = (nb_simd_level)l;
    return n;
}

START_TEST(test_isum_twins) {
    int8_t *a = malloc(1100), *b = malloc(1100);
    fill_i8(a, 1100, 1, -128, 127);
    fill_i8(b, 1100, 2, -127, 127);
    nb_simd_level lv[3];
    int nl = levels(lv);
    for (int L = 0; L < nl; L++) {
        nb_simd_force(lv[L]);
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
            for (int off = 0; off < 3; off++) {
                int n = sizes[k];
                ck_assert_int_eq(nb_isum_i8(n, a + off, b + 1 + off), nb_isum_i8_ref(n, a + off, b + 1 + off));
            }
    }
    /* extremes: -128 weights against +-127 activations */
    memset(a, 0x80, 1100);
    memset(b, 127, 1100);
    for (int L = 0; L < nl; L++) {
        nb_simd_force(lv[L]);
        ck_assert_int_eq(nb_isum_i8(1000, a, b), -128 * 127 * 1000);
    }
    nb_simd_force(nb_simd_detect());
    free(a);
    free(b);
}
END_TEST

START_TEST(test_block_dot_twins) {
    /* Q8_0 and Q4_0 weight rows against Q8_0 activations, unaligned (blocks are 34/18 bytes) */
    const int nbk = 40, n = nbk * NB_QK;
    float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    nbt_fill(x, n, 11);
    nbt_fill(w, n, 12);
    char *raw = malloc(nbk * 34 * 3 + 32);
    /* blocks are 2-byte aligned (fp16 scale) but nothing more: 34- and 18-byte strides from odd
       multiples of 2 keep every 32-byte load unaligned */
    nb_block_q8_0 *xq = (nb_block_q8_0 *)(raw + 2), *wq = (nb_block_q8_0 *)(raw + 6 + nbk * 34);
    nb_block_q4_0 *w4 = (nb_block_q4_0 *)(raw + 10 + 2 * nbk * 34);
    nb_block_q8_0 *xr = malloc(sizeof(nb_block_q8_0) * nbk);
    nb_quantize_row_q8_0_ref(w, wq, n);
    nb_quantize_row_q4_0_ref(w, w4, n);
    nb_simd_level lv[3];
    int nl = levels(lv);
    nb_quantize_act_q8_0_ref(x, xr, n);
    for (int L = 0; L < nl; L++) {
        nb_simd_force(lv[L]);
        nb_quantize_act_q8_0(x, xq, n);
        ck_assert_int_eq(memcmp(xq, xr, sizeof(nb_block_q8_0) * nbk), 0);
        for (int b = 1; b <= nbk; b += 3) {
            float r8 = nb_dot_q8_0_q8_0_ref(b * NB_QK, wq, xq), s8 = nb_dot_q8_0_q8_0(b * NB_QK, wq, xq);
            float r4 = nb_dot_q4_0_q8_0_ref(b * NB_QK, w4, xq), s4 = nb_dot_q4_0_q8_0(b * NB_QK, w4, xq);
            ck_assert_int_eq(nb_f32_bits(r8), nb_f32_bits(s8));
            ck_assert_int_eq(nb_f32_bits(r4), nb_f32_bits(s4));
        }
    }
    nb_simd_force(nb_simd_detect());
    /* the Q4_0 dot equals the exact sum over dequantized values up to float rounding */
    float deq = 0;
    for (int b = 0; b < nbk; b++)
        for (int j = 0; j < NB_QK; j++) {
            int q = (j < 16 ? w4[b].qs[j] & 15 : w4[b].qs[j - 16] >> 4) - 8;
            deq += nb_fp16_to_fp32(w4[b].d) * q * nb_fp16_to_fp32(xq[b].d) * xq[b].qs[j];
        }
    ck_assert_float_eq_tol(deq, nb_dot_q4_0_q8_0_ref(n, w4, xq), 1e-3f * (1 + fabsf(deq)));
    free(x), free(w), free(raw), free(xr);
}
END_TEST

START_TEST(test_group_dot_twins) {
    const int n = 1100;
    float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
    nbt_fill(x, n, 21);
    nbt_fill(w, n, 22);
    int8_t *xq = malloc(n + 8), *w8 = malloc(n + 8), *wz = malloc(1024);
    uint8_t *w4 = calloc(n, 1);
    float *xs = malloc(4 * 1024), *ws = malloc(4 * 1024);
    int groups[] = {1000, 64, 32, 4, 7};
    nb_simd_level lv[3];
    int nl = levels(lv);
    for (size_t gi = 0; gi < sizeof groups / sizeof *groups; gi++) {
        int g = groups[gi];
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            int len = sizes[k];
            nb_quantize_act_i8(x, xq + 1, xs, len, g);
            nb_rt_quantize_sym(w, len, g, 8, w8 + 1, ws);
            fill_i8(wz, 1024, 9 + k, -3, 3);
            for (int L = 0; L < nl; L++) {
                nb_simd_force(lv[L]);
                for (int z = 0; z < 2; z++) {
                    float r = nb_dot_i8_i8_ref(len, g, w8 + 1, ws, z ? wz : NULL, xq + 1, xs);
                    float s = nb_dot_i8_i8(len, g, w8 + 1, ws, z ? wz : NULL, xq + 1, xs);
                    ck_assert_int_eq(nb_f32_bits(r), nb_f32_bits(s));
                }
            }
            nb_rt_quantize_sym(w, len, g, 4, w4, ws);
            for (int L = 0; L < nl; L++) {
                nb_simd_force(lv[L]);
                for (int z = 0; z < 2; z++) {
                    float r = nb_dot_i4_i8_ref(len, g, w4, ws, z ? wz : NULL, xq + 1, xs);
                    float s = nb_dot_i4_i8(len, g, w4, ws, z ? wz : NULL, xq + 1, xs);
                    ck_assert_int_eq(nb_f32_bits(r), nb_f32_bits(s));
                }
            }
        }
    }
    /* whole chunks of 32 without zero points (the shapes the runtime packs, nb_qpack) */
    int lanes[][2] = {{32, 32}, {64, 32}, {96, 32}, {160, 160}, {288, 288}, {768, 64}, {1024, 1024}, {96, 96}, {192, 64}};
    for (size_t k = 0; k < sizeof lanes / sizeof *lanes; k++) {
        int len = lanes[k][0], g = lanes[k][1];
        nb_quantize_act_i8(x, xq + 1, xs, len, g);
        nb_rt_quantize_sym(w, len, g, 8, w8 + 1, ws);
        memset(w4, 0, n);
        for (int L = 0; L < nl; L++) {
            nb_simd_force(lv[L]);
            float r = nb_dot_i8_i8_ref(len, g, w8 + 1, ws, NULL, xq + 1, xs);
            ck_assert_int_eq(nb_f32_bits(r), nb_f32_bits(nb_dot_i8_i8(len, g, w8 + 1, ws, NULL, xq + 1, xs)));
            /* same value as the exact sum, up to rounding */
            double e = 0;
            for (int j = 0; j < len; j++) e += (double)w8[1 + j] * xq[1 + j] * ws[j / g] * xs[j / g];
            ck_assert(fabs(r - e) <= 1e-4 * (1 + fabs(e)));
        }
        nb_rt_quantize_sym(w, len, g, 4, w4, ws);
        for (int L = 0; L < nl; L++) {
            nb_simd_force(lv[L]);
            float r = nb_dot_i4_i8_ref(len, g, w4, ws, NULL, xq + 1, xs);
            ck_assert_int_eq(nb_f32_bits(r), nb_f32_bits(nb_dot_i4_i8(len, g, w4, ws, NULL, xq + 1, xs)));
        }
    }
    nb_simd_force(nb_simd_detect());
    free(x), free(w), free(xq), free(w8), free(wz), free(w4), free(xs), free(ws);
}
END_TEST

START_TEST(test_float_dot_twins) {
    float *w = malloc(4 * 1100), *x = malloc(4 * 1100);
    uint16_t *h = malloc(2 * 1100);
    nbt_fill(w, 1100, 31);
    nbt_fill(x, 1100, 32);
    for (int i = 0; i < 1100; i++) h[i] = nb_fp32_to_fp16(w[i]);
    nb_simd_level lv[3];
    int nl = levels(lv);
    for (int L = 0; L < nl; L++) {
        nb_simd_force(lv[L]);
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            int n = sizes[k];
            ck_assert_int_eq(nb_f32_bits(nb_dot_f32(n, w + 1, x + 3)), nb_f32_bits(nb_dot_f32_ref(n, w + 1, x + 3)));
            ck_assert_int_eq(nb_f32_bits(nb_dot_f16(n, h + 1, x + 3)), nb_f32_bits(nb_dot_f16_ref(n, h + 1, x + 3)));
        }
    }
    nb_simd_force(nb_simd_detect());
    free(w), free(x), free(h);
}
END_TEST

START_TEST(test_act_quant_rules) {
    /* Q8_0 activations: round half to even at x * 127 / amax; i8: half to even at x * (1/s), as the
       training fake-quant (core/quant.c) */
    float x[32] = {0};
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -3.5f;
    nb_block_q8_0 b;
    nb_quantize_act_q8_0_ref(x, &b, 32);
    ck_assert_int_eq(b.qs[0], 127);
    ck_assert_int_eq(b.qs[1], 2);
    ck_assert_int_eq(b.qs[2], -4);
    ck_assert_float_eq(nb_fp16_to_fp32(b.d), 1.0f);
    int8_t q[32];
    float s[1];
    nb_quantize_act_i8_ref(x, q, s, 32, 32);
    ck_assert_int_eq(q[1], 2);
    ck_assert_int_eq(q[2], -4);
    float z[32] = {0};
    nb_quantize_act_q8_0_ref(z, &b, 32);
    ck_assert_int_eq(b.qs[5], 0);
    ck_assert_int_eq(b.d, 0);
}
END_TEST

START_TEST(test_i4_packing_odd) {
    for (int n = 1; n <= 9; n += 2) {
        uint8_t p[8] = {0};
        for (int i = 0; i < n; i++) nb_i4_set(p, i, (i * 5) % 16 - 8);
        for (int i = 0; i < n; i++) ck_assert_int_eq(nb_i4_get(p, i), (i * 5) % 16 - 8);
        ck_assert_int_eq(p[n / 2] >> 4, 0); /* the unused high nibble of an odd row stays 0 */
    }
    uint8_t p[1] = {0};
    nb_i4_set(p, 0, -1);
    nb_i4_set(p, 1, 3);
    ck_assert_int_eq(p[0], 0x3f); /* element 0 low nibble, element 1 high nibble */
}
END_TEST

/* ---- model level ---- */

START_TEST(test_stories_reference_logits) {
    char *json = rt_slurp(RT_REF, NULL);
    ck_assert_ptr_nonnull(json);
    nb_qmodel *m;
    ck_assert_msg(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &m) == NB_OK, "%s", nb_errmsg());
    int nt, nl;
    int32_t *tok = rt_json_ints(json, "prompt_tokens", &nt);
    double *ref = rt_json_numbers(json, "logits", &nl);
    ck_assert_int_eq(nl, nt * 512);
    float *lg = rt_logits(m, tok, nt, 64);
    double md = 0;
    for (int i = 0; i < nl; i++) md = fmax(md, fabs(lg[i] - ref[i]));
    ck_assert_msg(md < 1e-3, "max |logit - reference| = %g", md);
    /* token by token gives the same numbers as the batched prefill */
    float *lg1 = rt_logits(m, tok, nt, 1);
    ck_assert_int_eq(memcmp(lg, lg1, sizeof(float) * nl), 0);
    float *lg5 = rt_logits(m, tok, nt, 5);
    ck_assert_int_eq(memcmp(lg, lg5, sizeof(float) * nl), 0);
    free(lg), free(lg1), free(lg5), free(tok), free(ref), free(json);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_stories_greedy) {
    char *json = rt_slurp(RT_REF, NULL);
    nb_qmodel *m;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &m), NB_OK);
    int np, ng;
    int32_t *prompt = rt_json_ints(json, "greedy_prompt_tokens", &np);
    int32_t *ref = rt_json_ints(json, "greedy_tokens", &ng);
    int32_t out[64];
    int n;
    nb_gen_opts o = {.max_new = ng};
    ck_assert_int_eq(nb_runtime_generate(m, prompt, np, &o, out, &n), NB_OK);
    ck_assert_int_eq(n, ng);
    for (int i = 0; i < ng; i++) ck_assert_int_eq(out[i], ref[i]);
    /* text through the vocabulary */
    char text[1024] = "";
    int prev = prompt[0];
    for (int i = 1; i < np; i++) {
        size_t l;
        const char *pc = nb_qvocab_piece(&m->vocab, prev, prompt[i], &l);
        strncat(text, pc, l);
        prev = prompt[i];
    }
    ck_assert_str_eq(text, "Once upon a time");
    free(prompt), free(ref), free(json);
    nb_qmodel_free(m);
}
END_TEST

/* top-1 agreement of a quantized model with fp32 along the reference continuation */
static double agreement(const nb_qmodel *a, const nb_qmodel *b, const int32_t *tok, int T) {
    float *la = rt_logits(a, tok, T, 16), *lb = rt_logits(b, tok, T, 16);
    int same = 0;
    for (int t = 0; t < T; t++) same += rt_argmax(la + t * 512, 512) == rt_argmax(lb + t * 512, 512);
    free(la), free(lb);
    return (double)same / T;
}

START_TEST(test_quantized_agree) {
    char *json = rt_slurp(RT_REF, NULL);
    nb_qmodel *m;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &m), NB_OK);
    int np, ng;
    int32_t *prompt = rt_json_ints(json, "greedy_prompt_tokens", &np);
    int32_t *gen = rt_json_ints(json, "greedy_tokens", &ng);
    int32_t seq[64];
    memcpy(seq, prompt, sizeof(int32_t) * np);
    memcpy(seq + np, gen, sizeof(int32_t) * ng);
    int T = np + ng;
    struct { nb_qtype t; int group; double min; } cases[] = {
        {NB_QT_F16, 0, 0.97}, {NB_QT_Q8_0, 0, 0.95}, {NB_QT_I8, 0, 0.95}, {NB_QT_I8, 32, 0.95},
        {NB_QT_Q4_0, 0, 0.6}, {NB_QT_I4, 32, 0.6},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_qmodel *q;
        ck_assert_msg(nb_qmodel_quantize(m, cases[i].t, cases[i].group, NB_QT_F32, &q) == NB_OK, "%s", nb_errmsg());
        double a = agreement(m, q, seq, T);
        ck_assert_msg(a >= cases[i].min, "%s group %d: top-1 agreement %.3f < %.2f", nb_qtype_name(cases[i].t),
                      cases[i].group, a, cases[i].min);
        /* prefill and decode use the same kernels: identical logits */
        float *l1 = rt_logits(q, seq, T, 1), *l7 = rt_logits(q, seq, T, 7);
        ck_assert_int_eq(memcmp(l1, l7, sizeof(float) * T * 512), 0);
        free(l1), free(l7);
        nb_qmodel_free(q);
    }
    free(prompt), free(gen), free(json);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_quantized_matmul_matches_dequant) {
    /* I8 with zero points: the runtime's integer result equals the float formula on the codes */
    nb_qmodel *m = rt_random_model(64, 96, 1, 4, 2, 300, 16, 0, 5);
    nb_qtensor t = m->layers[0].w1;
    t.type = NB_QT_I8;
    t.group = 32;
    ck_assert_int_eq(nb_rt_quantize_tensor(m, m->layers[0].w1.data, &t), NB_OK);
    t.zeros = nb_qmodel_alloc(m, (size_t)(t.rows * 2));
    for (int i = 0; i < t.rows * 2; i++) t.zeros[i] = (int8_t)(i % 5 - 2);
    float x[64], y[96], row[64];
    nbt_fill(x, 64, 77);
    nb_qstate s;
    ck_assert_int_eq(nb_qstate_init(&s, m, 1), NB_OK);
    ck_assert_int_eq(nb_qmatmul(&t, x, 1, y, &s), NB_OK);
    int8_t xq[64];
    float xs[2];
    nb_quantize_act_i8_ref(x, xq, xs, 64, 32);
    for (int r = 0; r < 96; r++) {
        nb_qtensor_dequant_row(&t, r, row);
        double ref = 0;
        for (int j = 0; j < 64; j++) ref += (double)row[j] * xq[j] * xs[j / 32];
        ck_assert_float_eq_tol(y[r], ref, 1e-4 * (1 + fabs(ref)));
    }
    nb_qstate_free(&s);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_eval_and_info) {
    nb_qmodel *m;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &m), NB_OK);
    char *json = rt_slurp(RT_REF, NULL);
    int np, ng;
    int32_t *prompt = rt_json_ints(json, "prompt_tokens", &np);
    double loss, top1;
    int64_t cnt;
    ck_assert_int_eq(nb_runtime_eval_tokens(m, prompt, np, 512, &loss, &top1, &cnt), NB_OK);
    ck_assert_int_eq(cnt, np - 1);
    ck_assert(loss > 0 && loss < 4);
    /* the reference prompt is the model's own greedy text: high accuracy */
    ck_assert(top1 > 0.6);
    char *info;
    ck_assert_int_eq(nb_runtime_info(m, 1, &info), NB_OK);
    ck_assert_ptr_nonnull(strstr(info, "\"dim\": 64"));
    ck_assert_ptr_nonnull(strstr(info, "\"format\": \"llama2c-fp32\""));
    ck_assert_ptr_nonnull(strstr(info, "layers.4.ffn.w3"));
    nb_free(info);
    ck_assert_int_eq(nb_runtime_info(m, 0, &info), NB_OK);
    ck_assert_ptr_nonnull(strstr(info, "vocab 512"));
    nb_free(info);
    /* out-of-range tokens are refused, not read out of bounds */
    nb_qstate s;
    nb_qstate_init(&s, m, 4);
    float lg[512];
    int32_t bad = 9999;
    ck_assert_int_eq(nb_qmodel_forward(m, &s, &bad, 1, 0, lg, 0), NB_EINVAL);
    ck_assert_int_eq(nb_qmodel_forward(m, &s, prompt, 1, 512, lg, 0), NB_EINVAL);
    nb_qstate_free(&s);
    (void)ng;
    free(prompt), free(json);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_sampling_deterministic) {
    nb_qmodel *m;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &m), NB_OK);
    int32_t p[1] = {1}, a[20], b[20];
    int na, nb;
    nb_gen_opts o = {.max_new = 20, .temperature = 1.0f, .top_p = 0.9f, .seed = 42};
    ck_assert_int_eq(nb_runtime_generate(m, p, 1, &o, a, &na), NB_OK);
    ck_assert_int_eq(nb_runtime_generate(m, p, 1, &o, b, &nb), NB_OK);
    ck_assert_int_eq(na, nb);
    ck_assert_int_eq(memcmp(a, b, sizeof(int32_t) * na), 0);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_from_training_model) {
    /* the training model's llama2.c import and the runtime's own loader agree bit for bit */
    nb_model tm;
    memset(&tm, 0, sizeof tm);
    ck_assert_msg(nb_model_load_file(RT_MODEL, &tm) == NB_OK, "%s", nb_errmsg());
    nb_tokenizer *tok;
    ck_assert_int_eq(nb_tokenizer_llama2c_load(RT_TOK, 512, &tok), NB_OK);
    nb_qmodel *a, *b;
    ck_assert_msg(nb_qmodel_from_model(&tm, tok, &a) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &b), NB_OK);
    int32_t seq[6] = {1, 403, 407, 261, 378, 432};
    float *la = rt_logits(a, seq, 6, 6), *lb = rt_logits(b, seq, 6, 6);
    ck_assert_int_eq(memcmp(la, lb, sizeof(float) * 6 * 512), 0);
    ck_assert(nb_tokenizer_equal(a->tok, tok));
    ck_assert_str_eq(a->vocab.pieces[407], " upon");
    free(la), free(lb);
    nb_qmodel_free(a);
    nb_qmodel_free(b);
    nb_tokenizer_free(tok);
    nb_model_free(&tm);
}
END_TEST

NB_SUITE("runtime") {
    tcase_add_test(tc, test_from_training_model);
    tcase_add_test(tc, test_isum_twins);
    tcase_add_test(tc, test_block_dot_twins);
    tcase_add_test(tc, test_group_dot_twins);
    tcase_add_test(tc, test_float_dot_twins);
    tcase_add_test(tc, test_act_quant_rules);
    tcase_add_test(tc, test_i4_packing_odd);
    tcase_add_test(tc, test_stories_reference_logits);
    tcase_add_test(tc, test_stories_greedy);
    tcase_add_test(tc, test_quantized_agree);
    tcase_add_test(tc, test_quantized_matmul_matches_dequant);
    tcase_add_test(tc, test_eval_and_info);
    tcase_add_test(tc, test_sampling_deterministic);
}
