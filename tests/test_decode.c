/* test_decode.c: the decode-speed kernels against their scalar twins, bit for bit: the packed
   int8/int4 matvec and the Q8_0/Q4_0 matvec (several rows side by side), the int8 activation
   quantizer and lane sums; odd shapes and unaligned pointers at every SIMD level. Then the whole
   runtime: logits identical for 1 and 2 threads at every SIMD level. */
#include <math.h>

#include "nbtest.h"

#include "../core/simd.h"
#include "../ops/kernels/qdot.h"
#include "rt_util.h"

static const int odd[] = {1, 7, 33, 100, 1000};

static int levels(nb_simd_level *out) {
    int n = 0;
    nb_simd_level best = nb_simd_detect();
    for (int l = NB_SIMD_SCALAR; l <= (int)best; l++) out[n++] = (nb_simd_level)l;
    return n;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* same bits, or both NaN */
static int same(float a, float b) { return bits(a) == bits(b) || (a != a && b != b); }

/* the packed int8/int4 matvec (nb_qpack + nb_matvec_qpack) against the scalar twin's row dots:
   odd row counts (partial 16-row blocks), row ranges that start and end inside a block, groups of
   32, 64, 96 and a whole row, with and without prefetching, at every SIMD level */
static void check_qpack(int i4, int n, int g, int R, const void *w, const float *ws, const int8_t *xq, const float *xs,
                        const int32_t *ls, float *y, const char *lvl) {
    const int ng = (n + g - 1) / g; /* the last group may be short */
    void *pk = malloc(nb_qpack_bytes(i4, R, n, g));
    nb_qpack(i4, R, n, g, w, ws, pk);
    const int r0s[] = {0, 3, 16, 17};
    for (size_t a = 0; a < sizeof r0s / sizeof *r0s; a++) {
        const int r0 = r0s[a] < R ? r0s[a] : 0;
        for (int nr = R - r0; nr >= 1; nr = nr > 2 ? nr / 3 : nr - 1) {
            y[1 + nr] = 12345.0f;
            nb_matvec_qpack(i4, pk, R, n, g, r0, nr, xq, xs, ls, y + 1);
            ck_assert_msg(y[1 + nr] == 12345.0f, "%s: written past row %d", lvl, r0 + nr);
            for (int r = r0; r < r0 + nr; r++) {
                float e = i4 ? nb_dot_i4_i8_ref(n, g, (const uint8_t *)w + (size_t)r * n / 2, ws + (size_t)r * ng, NULL, xq, xs)
                             : nb_dot_i8_i8_ref(n, g, (const int8_t *)w + (size_t)r * n, ws + (size_t)r * ng, NULL, xq, xs);
                ck_assert_msg(same(y[1 + r - r0], e), "int%d %s n %d group %d rows %d [%d, %d) row %d: %a vs %a",
                              i4 ? 4 : 8, lvl, n, g, R, r0, r0 + nr, r, y[1 + r - r0], e);
            }
        }
    }
    free(pk);
}

START_TEST(test_matvec_qpack_twins) {
    const int ns[] = {32, 96, 100, 172, 224, 288, 1056}; /* 100, 172: a short last group */
    const int rows[] = {1, 7, 33, 100};
    const int maxn = 1056, maxr = 100;
    float *x = malloc(sizeof(float) * maxn), *w = malloc(sizeof(float) * maxn * maxr);
    nbt_fill(x, maxn, 41);
    nbt_fill(w, (long)maxn * maxr, 42);
    int8_t *xq = calloc(maxn + 256, 1), *w8 = malloc((size_t)maxn * maxr + 1); /* codes past n: read (times 0) */
    uint8_t *w4 = malloc((size_t)maxn * maxr / 2 + 1);
    float *xs = malloc(4 * (maxn + 1)), *ws8 = malloc(4 * ((size_t)maxn * maxr + 1)), *ws4 = malloc(4 * ((size_t)maxn * maxr + 1));
    int32_t *ls = malloc(4 * 8 * (maxn + 1));
    float *y = malloc(4 * (maxr + 2));
    nb_simd_level lv[3];
    int nl = levels(lv);
    for (int pf = 0; pf < 2 * (int)(sizeof ns / sizeof *ns); pf++) { /* with and without prefetching (same bits) */
        const size_t a = (size_t)pf / 2;
        nb_qdot_set_prefetch(pf & 1);
        int n = ns[a];
        int groups[] = {32, 64, 96, n};
        for (size_t b = 0; b < 4; b++) {
            int g = groups[b];
            if (!nb_qpack_ok(n, g, 0)) continue;
            int ng = (n + g - 1) / g;
            nb_quantize_act_i8_ref(x, xq + 1, xs + 1, n, g);
            for (int j = n; j < ng * g; j++) xq[1 + j] = (int8_t)(37 - j); /* past n: any bytes (times code 0) */
            nb_act_lanesums_ref(n, g, xq + 1, ls);
            for (size_t c = 0; c < sizeof rows / sizeof *rows; c++) {
                int R = rows[c];
                for (int r = 0; r < R; r++) {
                    nb_rt_quantize_sym(w + (size_t)r * n, n, g, 8, w8 + 1 + (size_t)r * n, ws8 + 1 + (size_t)r * ng);
                    nb_rt_quantize_sym(w + (size_t)r * n, n, g, 4, w4 + 1 + (size_t)r * n / 2, ws4 + 1 + (size_t)r * ng);
                }
                for (int L = 0; L < nl; L++) {
                    nb_simd_force(lv[L]);
                    check_qpack(1, n, g, R, w4 + 1, ws4 + 1, xq + 1, xs + 1, ls, y, nb_simd_name(lv[L]));
                    check_qpack(0, n, g, R, w8 + 1, ws8 + 1, xq + 1, xs + 1, ls, y, nb_simd_name(lv[L]));
                }
            }
        }
    }
    /* extreme codes: int8 -128 and 127 weights, +-127 activations (offset arithmetic at its limits) */
    int n = 288;
    for (int i = 0; i < n * 4; i++) w8[1 + i] = (int8_t)(i % 3 == 0 ? -128 : i % 3 == 1 ? 127 : -1);
    for (int i = 0; i < n * 2; i++) w4[1 + i] = (uint8_t)(i % 2 ? 0x88 : 0x77);
    for (int i = 0; i < n; i++) xq[1 + i] = (int8_t)(i % 2 ? -127 : 127);
    for (int i = 0; i < 40; i++) xs[1 + i] = 0.5f + i, ws8[1 + i] = ws4[1 + i] = 0.25f * (i + 1);
    for (int g = 32; g <= n; g += 256) {
        nb_act_lanesums_ref(n, g, xq + 1, ls);
        for (int L = 0; L < nl; L++) {
            nb_simd_force(lv[L]);
            check_qpack(0, n, g, 4, w8 + 1, ws8 + 1, xq + 1, xs + 1, ls, y, nb_simd_name(lv[L]));
            check_qpack(1, n, g, 4, w4 + 1, ws4 + 1, xq + 1, xs + 1, ls, y, nb_simd_name(lv[L]));
        }
    }
    nb_simd_force(nb_simd_detect());
    nb_qdot_set_prefetch(0);
    free(x), free(w), free(xq), free(w8), free(w4), free(xs), free(ws8), free(ws4), free(ls), free(y);
}
END_TEST

START_TEST(test_matvec_blocks_twins) {
    const int ns[] = {32, 96, 288, 1056};
    const int rows[] = {1, 7, 33, 100};
    const int maxn = 1056, maxr = 100;
    float *x = malloc(sizeof(float) * maxn), *w = malloc(sizeof(float) * maxn * maxr);
    nbt_fill(x, maxn, 43);
    nbt_fill(w, (long)maxn * maxr, 44);
    /* two bytes in front of every block array (the blocks' own alignment, not a vector's): the
       kernels must not assume more */
    uint8_t *xraw = malloc(sizeof(nb_block_q8_0) * 33 + 2), *w8raw = malloc(sizeof(nb_block_q8_0) * 33 * maxr + 2);
    uint8_t *w4raw = malloc(sizeof(nb_block_q4_0) * 33 * maxr + 2);
    nb_block_q8_0 *xq = (nb_block_q8_0 *)(xraw + 2), *w8 = (nb_block_q8_0 *)(w8raw + 2);
    nb_block_q4_0 *w4 = (nb_block_q4_0 *)(w4raw + 2);
    int32_t *ls = malloc(4 * 8 * 33 + 4);
    float *y = malloc(4 * (maxr + 1));
    nb_simd_level lv[3];
    int nl = levels(lv);
    for (int pf = 0; pf < 2 * (int)(sizeof ns / sizeof *ns); pf++) { /* with and without prefetching */
        const size_t a = (size_t)pf / 2;
        nb_qdot_set_prefetch(pf & 1);
        int n = ns[a], nb = n / 32;
        nb_quantize_act_q8_0_ref(x, xq, n);
        nb_act_lanesums_q8_0(n, xq, ls + 1);
        for (int r = 0; r < maxr; r++) {
            nb_quantize_row_q8_0_ref(w + (size_t)r * n, w8 + (size_t)r * nb, n);
            nb_quantize_row_q4_0_ref(w + (size_t)r * n, w4 + (size_t)r * nb, n);
        }
        for (size_t c = 0; c < sizeof rows / sizeof *rows; c++) {
            int R = rows[c];
            for (int L = 0; L < nl; L++) {
                nb_simd_force(lv[L]);
                nb_matvec_q8_0(R, n, w8, xq, ls + 1, y + 1);
                for (int r = 0; r < R; r++)
                    ck_assert_msg(same(y[1 + r], nb_dot_q8_0_q8_0_ref(n, w8 + (size_t)r * nb, xq)), "q8_0 %s n %d rows %d row %d",
                                  nb_simd_name(lv[L]), n, R, r);
                nb_matvec_q4_0(R, n, w4, xq, ls + 1, y + 1);
                for (int r = 0; r < R; r++)
                    ck_assert_msg(same(y[1 + r], nb_dot_q4_0_q8_0_ref(n, w4 + (size_t)r * nb, xq)), "q4_0 %s n %d rows %d row %d",
                                  nb_simd_name(lv[L]), n, R, r);
            }
        }
    }
    nb_simd_force(nb_simd_detect());
    nb_qdot_set_prefetch(0);
    free(x), free(w), free(xraw), free(w8raw), free(w4raw), free(ls), free(y);
}
END_TEST

START_TEST(test_act_quant_twins) {
    const int maxn = 1000;
    float *x = malloc(sizeof(float) * (maxn + 1));
    int8_t *q1 = malloc(maxn + 1), *q2 = malloc(maxn + 1);
    float *s1 = malloc(4 * (maxn + 1)), *s2 = malloc(4 * (maxn + 1));
    int32_t *l1 = malloc(4 * 8 * 64), *l2 = malloc(4 * 8 * 64);
    nb_simd_level lv[3];
    int nl = levels(lv);
    for (int special = 0; special < 5; special++)
        for (size_t a = 0; a < sizeof odd / sizeof *odd; a++) {
            int n = odd[a];
            nbt_fill(x + 1, n, 50 + a);
            for (int i = 0; i < n; i++) x[1 + i] *= 3.0f;
            if (special == 1) x[1 + n / 2] = NAN;
            if (special == 2) x[1 + n - 1] = INFINITY;
            if (special == 3) memset(x + 1, 0, sizeof(float) * n); /* amax 0: scale 0, codes 0 */
            if (special == 4) /* exact halves: rounding must be to even */
                for (int i = 0; i < n; i++) x[1 + i] = (float)(i % 9) - 4.0f + 0.5f;
            int groups[] = {1, 7, 32, 33, n};
            for (int b = 0; b < 5; b++) {
                int g = groups[b], ng = (n + g - 1) / g;
                nb_quantize_act_i8_ref(x + 1, q1 + 1, s1 + 1, n, g);
                for (int L = 0; L < nl; L++) {
                    nb_simd_force(lv[L]);
                    memset(q2, 0x5a, maxn + 1);
                    nb_quantize_act_i8(x + 1, q2 + 1, s2 + 1, n, g);
                    ck_assert_msg(!memcmp(q1 + 1, q2 + 1, n), "codes differ: %s n %d group %d case %d", nb_simd_name(lv[L]),
                                  n, g, special);
                    for (int k = 0; k < ng; k++) ck_assert(same(s1[1 + k], s2[1 + k]));
                }
            }
        }
    /* lane sums on whole chunks */
    int8_t *c = malloc(2048 + 1);
    for (int i = 0; i < 2049; i++) c[i] = (int8_t)((i * 37) % 255 - 127);
    int shapes[][2] = {{32, 32}, {96, 32}, {96, 96}, {1024, 64}, {288, 288}, {2048, 2048}};
    for (int k = 0; k < 6; k++) {
        int n = shapes[k][0], g = shapes[k][1];
        nb_act_lanesums_ref(n, g, c + 1, l1);
        for (int L = 0; L < nl; L++) {
            nb_simd_force(lv[L]);
            memset(l2, 0, 4 * 8 * 64);
            nb_act_lanesums(n, g, c + 1, l2);
            ck_assert(!memcmp(l1, l2, 4 * 8 * (size_t)(n / g)));
        }
    }
    nb_simd_force(nb_simd_detect());
    free(x), free(q1), free(q2), free(s1), free(s2), free(l1), free(l2), free(c);
}
END_TEST

/* FNV-1a of a decode run: 9 prompt tokens prefilled in batches of 4, then 12 greedy tokens */
static uint64_t run_hash(const nb_qmodel *q) {
    nb_qstate s;
    ck_assert_int_eq(nb_qstate_init(&s, q, 4), NB_OK);
    int V = q->cfg.vocab;
    float *lg = malloc(sizeof(float) * V * 9);
    int32_t prompt[9] = {1, 5, 9, 17, 200, 3, 44, 55, 66};
    uint64_t h = 1469598103934665603ULL;
    ck_assert_int_eq(nb_qmodel_forward(q, &s, prompt, 9, 0, lg, 1), NB_OK);
    for (int p = 9; p < 21; p++) {
        for (size_t i = 0; i < sizeof(float) * V; i++) h = (h ^ ((const uint8_t *)lg)[i]) * 1099511628211ULL;
        int32_t t = (int32_t)rt_argmax(lg + (p == 9 ? (size_t)8 * V : 0), V);
        ck_assert_int_eq(nb_qmodel_forward(q, &s, &t, 1, p, lg, 0), NB_OK);
    }
    free(lg);
    nb_qstate_free(&s);
    return h;
}

START_TEST(test_decode_identical_everywhere) {
    /* shapes with head sizes 8 and 48, GQA, widths that are and are not multiples of 32 */
    int shapes[][5] = {{64, 172, 2, 8, 4}, {96, 256, 1, 2, 1}};
    struct { nb_qtype t; int group; } types[] = {{NB_QT_F32, 0}, {NB_QT_I8, 0}, {NB_QT_I8, 32},
                                                 {NB_QT_I4, 32}, {NB_QT_I4, 64}, {NB_QT_Q4_0, 0}, {NB_QT_Q8_0, 0}};
    nb_simd_level lv[3];
    int nl = levels(lv);
    int th0 = nb_threads_get();
    nb_qdecode_all_threads(1); /* small models: the threaded step only when asked for */
    for (int sh = 0; sh < 2; sh++) {
        nb_qmodel *m = rt_random_model(shapes[sh][0], shapes[sh][1], shapes[sh][2], shapes[sh][3], shapes[sh][4], 300,
                                       32, 1, 9 + sh);
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            nb_qmodel *q;
            ck_assert_int_eq(nb_qmodel_quantize(m, types[t].t, types[t].group, NB_QT_F32, &q), NB_OK);
            /* the matvec kernels agree across SIMD levels (twin tests above); the runtime's other
               ops are the training kernels, fixed per SIMD level: compare thread counts per level */
            for (int L = 0; L < nl; L++) {
                nb_simd_force(lv[L]);
                nb_threads_set(1);
                uint64_t ref = run_hash(q);
                nb_threads_set(2);
                ck_assert_msg(run_hash(q) == ref, "%s group %d: 2 threads differ from 1 at %s", nb_qtype_name(types[t].t),
                              types[t].group, nb_simd_name(lv[L]));
            }
            nb_qmodel_free(q);
        }
        nb_qmodel_free(m);
    }
    nb_simd_force(nb_simd_detect());
    nb_qdecode_all_threads(0);
    nb_threads_set(th0);
}
END_TEST

NB_SUITE("decode") {
    tcase_add_test(tc, test_matvec_qpack_twins);
    tcase_add_test(tc, test_matvec_blocks_twins);
    tcase_add_test(tc, test_act_quant_twins);
    tcase_add_test(tc, test_decode_identical_everywhere);
}
