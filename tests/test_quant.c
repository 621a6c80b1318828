/* test_quant.c: the quantizer: grids, rounding, scales, observers, tails, llama.cpp blocks, SIMD twins. */
#include "nbtest.h"

#include <stdio.h>

#include "../core/fp16.h"
#include "../core/quant.h"
#include "../core/quant_blocks.h"
#include "../core/simd.h"

static nb_qspec int_spec(int bits, int sym, nb_qgran g, int G) {
    nb_qspec s = {.format = NB_QFMT_INT, .bits = bits, .symmetric = sym, .gran = g, .group_size = G};
    return s;
}

/* values already on the grid come back identical, and their codes are the grid points */
START_TEST(test_grid_exact) {
    int bits_list[] = {2, 3, 4, 8};
    for (int bi = 0; bi < 4; bi++) {
        nb_qspec s = int_spec(bits_list[bi], 1, NB_QGRAN_ROW, 0);
        int qmin, qmax;
        nb_qspec_range(&s, &qmin, &qmax);
        ck_assert_int_eq(qmin, -(1 << (bits_list[bi] - 1)));
        ck_assert_int_eq(qmax, (1 << (bits_list[bi] - 1)) - 1);
        int64_t rows = 3, cols = qmax - qmin + 1;
        float x[3 * 256], y[3 * 256], scale[3] = {0.125f, 0.3f, 1.7f};
        int8_t q[3 * 256];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) x[r * cols + c] = (float)(qmin + c) * scale[r];
        nb_quant_codes_ref(&s, x, rows, cols, scale, NULL, q);
        nb_fakequant_ref(&s, x, rows, cols, scale, NULL, y);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                ck_assert_int_eq(q[r * cols + c], qmin + c);
                ck_assert(y[r * cols + c] == x[r * cols + c]);
            }
        nb_dequant_ref(&s, q, rows, cols, scale, NULL, y);
        for (int64_t i = 0; i < rows * cols; i++) ck_assert(y[i] == x[i]);
    }
}
END_TEST

/* int4: -8..7 (full) and -7..7 (restricted); clamping; round half to even */
START_TEST(test_int4_ranges_and_rounding) {
    nb_qspec s = int_spec(4, 1, NB_QGRAN_TENSOR, 0);
    float sc = 1.0f;
    float x[] = {-9.0f, -8.4f, 7.6f, 100.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f};
    int8_t q[9];
    nb_quant_codes_ref(&s, x, 1, 9, &sc, NULL, q);
    int want[] = {-8, -8, 7, 7, 0, 2, 2, 0, -2}; /* ties to even */
    for (int i = 0; i < 9; i++) ck_assert_int_eq(q[i], want[i]);
    s.restrict_range = 1;
    nb_quant_codes_ref(&s, x, 1, 9, &sc, NULL, q);
    ck_assert_int_eq(q[0], -7);
    ck_assert_int_eq(q[1], -7);
    ck_assert_int_eq(q[3], 7);
    /* scales: full range amax / 7.5, restricted amax / 7 */
    float lo = -3.0f, hi = 1.5f, out;
    s.restrict_range = 0;
    nb_quant_params(&s, &lo, &hi, 1, &out, NULL);
    ck_assert(out == 3.0f / 7.5f);
    s.restrict_range = 1;
    nb_quant_params(&s, &lo, &hi, 1, &out, NULL);
    ck_assert(out == 3.0f / 7.0f);
}
END_TEST

START_TEST(test_ternary) {
    nb_qspec s = {.format = NB_QFMT_INT, .ternary = 1, .symmetric = 1, .gran = NB_QGRAN_ROW};
    ck_assert_int_eq(nb_qspec_check(&s, "w", 2, 4), NB_OK);
    nb_qobs o = {.kind = NB_QOBS_MINMAX};
    float x[8] = {0.1f, -0.2f, 0.9f, -1.0f, 2, 2, -2, 0}, lo[2], hi[2], sc[2], y[8];
    ck_assert_int_eq(nb_quant_observe(&s, &o, x, 2, 4, lo, hi, 1), NB_OK);
    nb_quant_params(&s, lo, hi, 2, sc, NULL);
    ck_assert_float_eq_tol(sc[0], 0.55f, 1e-6f); /* absmean of row 0 */
    ck_assert_float_eq_tol(sc[1], 1.5f, 1e-6f);
    int8_t q[8];
    nb_quant_codes_ref(&s, x, 2, 4, sc, NULL, q);
    int want[] = {0, 0, 1, -1, 1, 1, -1, 0};
    for (int i = 0; i < 8; i++) ck_assert_int_eq(q[i], want[i]);
    nb_fakequant_ref(&s, x, 2, 4, sc, NULL, y);
    ck_assert(y[2] == sc[0] && y[3] == -sc[0] && y[0] == 0.0f && y[4] == sc[1]);
}
END_TEST

/* asymmetric: hand-computed scale and zero point, grid exactness with z */
START_TEST(test_asymmetric_zero_point) {
    nb_qspec s = int_spec(8, 0, NB_QGRAN_TENSOR, 0);
    float lo = -1.0f, hi = 3.0f, sc, z;
    nb_quant_params(&s, &lo, &hi, 1, &sc, &z);
    ck_assert(sc == 4.0f / 255.0f);
    ck_assert(z == -128.0f - rintf(-1.0f / sc)); /* -128 + 64 = -64 */
    ck_assert(z == -64.0f);
    /* all-positive range: widened to contain 0, so z = qmin */
    lo = 0.5f;
    hi = 2.0f;
    nb_quant_params(&s, &lo, &hi, 1, &sc, &z);
    ck_assert(z == -128.0f);
    ck_assert(sc == 2.0f / 255.0f);
    /* 4-bit asym on the grid: values (q - z) s */
    nb_qspec s4 = int_spec(4, 0, NB_QGRAN_ROW, 0);
    float scs[2] = {0.5f, 0.25f}, zs[2] = {3.0f, -5.0f}, x[32], y[32];
    int8_t q[32];
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 16; c++) x[r * 16 + c] = (float)((c - 8) - zs[r]) * scs[r];
    nb_quant_codes_ref(&s4, x, 2, 16, scs, zs, q);
    nb_fakequant_ref(&s4, x, 2, 16, scs, zs, y);
    for (int i = 0; i < 32; i++) {
        ck_assert_int_eq(q[i], (i % 16) - 8);
        ck_assert(y[i] == x[i]);
    }
    /* a fractional zero point is rounded (half to even) and clamped */
    float zf = 2.5f;
    nb_quant_codes_ref(&s4, x, 1, 16, scs, &zf, q);
    ck_assert_int_eq(q[8], -1); /* x = -1.5, x / s = -3, z = rint(2.5) = 2 */
    zf = 3.5f;
    nb_quant_codes_ref(&s4, x, 1, 16, scs, &zf, q);
    ck_assert_int_eq(q[8], 1); /* z = rint(3.5) = 4 */
    zf = 40.0f;
    nb_quant_codes_ref(&s4, x, 1, 16, scs, &zf, q);
    ck_assert_int_eq(q[0], -4); /* z = 40 clamps to qmax 7: x[0] / s = -11, -11 + 7 */
}
END_TEST

/* per-group: a row length not a multiple of G is refused (tail error) or gets a short group */
START_TEST(test_group_tails) {
    nb_qspec s = int_spec(4, 1, NB_QGRAN_GROUP, 32);
    ck_assert_int_eq(nb_qspec_check(&s, "layers.0.ffn.w2", 288, 172), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "layers.0.ffn.w2") && strstr(nb_errmsg(), "172") &&
                      strstr(nb_errmsg(), "group_size 32"), "%s", nb_errmsg());
    ck_assert_int_eq(nb_qspec_check(&s, "w", 4, 64), NB_OK);
    s.group_size = 48;
    ck_assert_int_eq(nb_qspec_check(&s, "w", 4, 96), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "expected 32, 64 or 128, got 48"), "%s", nb_errmsg());
    s.group_size = 32;
    s.bits = 9;
    ck_assert_int_eq(nb_qspec_check(&s, "w", 4, 64), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "bits: expected 2..8, got 9"), "%s", nb_errmsg());
    s.bits = 4;
    s.tail = NB_QTAIL_SHORT;
    ck_assert_int_eq(nb_qspec_check(&s, "w", 2, 40), NB_OK);
    ck_assert_int_eq(nb_qspec_groups_per_row(&s, 40), 2);
    ck_assert_int_eq(nb_qspec_nscales(&s, 2, 40), 4);
    /* row 0: first 32 small, last 8 large: the tail has its own scale */
    float x[80], lo[4], hi[4], sc[4], y[80];
    for (int i = 0; i < 80; i++) x[i] = (i % 40) < 32 ? 0.01f * (float)(i % 7) : 3.0f + (float)(i % 3);
    nb_qobs o = {.kind = NB_QOBS_MINMAX};
    ck_assert_int_eq(nb_quant_observe(&s, &o, x, 2, 40, lo, hi, 1), NB_OK);
    nb_quant_params(&s, lo, hi, 4, sc, NULL);
    ck_assert(sc[0] == 0.06f / 7.5f);
    ck_assert(sc[1] == 5.0f / 7.5f);
    nb_fakequant_ref(&s, x, 2, 40, sc, NULL, y);
    for (int i = 32; i < 40; i++) ck_assert_float_eq_tol(y[i], x[i], sc[1] / 2 + 1e-6f);
}
END_TEST

/* an independent transcription of ggml's reference formulas, block by block */
static void ggml_q4_0(const float *x, uint16_t *d16, uint8_t *qs) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    float d = max / -8, id = d ? 1.0f / d : 0.0f;
    *d16 = nb_fp32_to_fp16(d);
    for (int j = 0; j < 16; j++) {
        float x0 = x[j] * id, x1 = x[16 + j] * id;
        uint8_t a = (int8_t)(x0 + 8.5f) < 15 ? (uint8_t)(int8_t)(x0 + 8.5f) : 15;
        uint8_t b = (int8_t)(x1 + 8.5f) < 15 ? (uint8_t)(int8_t)(x1 + 8.5f) : 15;
        qs[j] = (uint8_t)(a | b << 4);
    }
}

START_TEST(test_blocks_hand_values) {
    ck_assert_int_eq(sizeof(nb_block_q8_0), 34);
    ck_assert_int_eq(sizeof(nb_block_q4_0), 18);
    float x[32], y[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16); /* -16 .. 15 */
    nb_block_q4_0 b4;
    nb_quantize_row_q4_0_ref(x, &b4, 32);
    ck_assert(nb_fp16_to_fp32(b4.d) == 2.0f); /* max = -16: d = -16 / -8 */
    ck_assert_int_eq(b4.qs[0], 0x80);         /* element 0 -> 0 (low), element 16 -> 8 (high) */
    ck_assert_int_eq(nb_q4_0_code(&b4, 0), -8);
    ck_assert_int_eq(nb_q4_0_code(&b4, 1), -7); /* -15 / 2 + 8.5 = 1: ties go up */
    ck_assert_int_eq(nb_q4_0_code(&b4, 31), 7); /* 15 / 2 + 8.5 = 16 -> MIN(15) */
    nb_dequantize_row_q4_0(&b4, y, 32);
    ck_assert(y[0] == -16.0f && y[1] == -14.0f && y[31] == 14.0f && y[16] == 0.0f);
    /* positive largest value: d negative */
    x[5] = 40.0f;
    nb_quantize_row_q4_0_ref(x, &b4, 32);
    ck_assert(nb_fp16_to_fp32(b4.d) == -5.0f);
    ck_assert_int_eq(nb_q4_0_code(&b4, 5), -8);
    /* Q8_0: d = amax / 127, roundf (half away from zero) */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.5f;
    x[3] = 63.5f; /* amax: d = 0.5, codes x / 0.5 */
    nb_block_q8_0 b8;
    nb_quantize_row_q8_0_ref(x, &b8, 32);
    ck_assert(nb_fp16_to_fp32(b8.d) == 0.5f);
    ck_assert_int_eq(b8.qs[3], 127);
    ck_assert_int_eq(b8.qs[0], -16);
    x[1] = 0.25f; /* 0.5 code: roundf -> 1 (rint would give 0) */
    x[2] = -0.75f;
    nb_quantize_row_q8_0_ref(x, &b8, 32);
    ck_assert_int_eq(b8.qs[1], 1);
    ck_assert_int_eq(b8.qs[2], -2);
    /* all zero block: d = 0, codes 0 (Q4_0: code 0 -> stored 8) */
    memset(x, 0, sizeof x);
    nb_quantize_row_q4_0_ref(x, &b4, 32);
    ck_assert(nb_fp16_to_fp32(b4.d) == 0.0f); /* -0: d = 0 / -8, as ggml */
    ck_assert_int_eq(b4.qs[7], 0x88);
}
END_TEST

/* random rows: our blocks equal the transcription, and the preset fake-quant equals
   dequantize(quantize(W)) bit for bit */
START_TEST(test_blocks_random_and_fakequant) {
    int64_t rows = 7, cols = 96;
    float w[7 * 96], fq[7 * 96], dq[7 * 96];
    nbt_fill(w, rows * cols, 5);
    for (int i = 0; i < rows * cols; i += 13) w[i] *= 9.0f; /* outliers */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < cols / 32; b++) {
            uint16_t d;
            uint8_t qs[16];
            nb_block_q4_0 blk;
            ggml_q4_0(w + r * cols + b * 32, &d, qs);
            nb_quantize_row_q4_0_ref(w + r * cols + b * 32, &blk, 32);
            ck_assert_int_eq(blk.d, d);
            ck_assert(!memcmp(blk.qs, qs, 16));
        }
    nb_qspec s = {.format = NB_QFMT_Q4_0};
    int levels[] = {NB_SIMD_SCALAR, NB_SIMD_AVX2, NB_SIMD_AVX512};
    for (int f = 0; f < 2; f++) {
        s.format = f ? NB_QFMT_Q8_0 : NB_QFMT_Q4_0;
        for (int64_t r = 0; r < rows; r++) {
            if (f) {
                nb_block_q8_0 blk[3];
                nb_quantize_row_q8_0_ref(w + r * cols, blk, cols);
                nb_dequantize_row_q8_0(blk, dq + r * cols, cols);
            } else {
                nb_block_q4_0 blk[3];
                nb_quantize_row_q4_0_ref(w + r * cols, blk, cols);
                nb_dequantize_row_q4_0(blk, dq + r * cols, cols);
            }
        }
        for (int l = 0; l < 3; l++) {
            nb_simd_force(levels[l]);
            nb_fakequant_mat(&s, w, rows, cols, NULL, NULL, fq);
            ck_assert(!memcmp(fq, dq, sizeof fq));
        }
    }
    nb_simd_force(NB_SIMD_AVX512);
    /* F16 fallback: values rounded to fp16 */
    s.format = NB_QFMT_F16;
    nb_fakequant_mat(&s, w, rows, cols, NULL, NULL, fq);
    for (int i = 0; i < rows * cols; i++) ck_assert(fq[i] == nb_round_fp16(w[i]));
    ck_assert_int_eq(nb_qspec_check(&(nb_qspec){.format = NB_QFMT_Q4_0}, "layers.0.ffn.w2", 288, 172), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "layers.0.ffn.w2") && strstr(nb_errmsg(), "Q4_0"), "%s", nb_errmsg());
}
END_TEST

START_TEST(test_fp16_scales) {
    nb_qspec s = int_spec(8, 1, NB_QGRAN_ROW, 0);
    s.restrict_range = 1;
    s.scale_f16 = 1;
    float lo = -1.0f, hi = 0.3f, sc, x[4] = {1.0f, -1.0f, 0.5f, 0.01f}, y[4];
    nb_quant_params(&s, &lo, &hi, 1, &sc, NULL);
    ck_assert(sc == nb_round_fp16(1.0f / 127.0f));
    ck_assert(sc != 1.0f / 127.0f);
    nb_fakequant_ref(&s, x, 1, 4, &sc, NULL, y);
    ck_assert(y[0] == 127.0f * sc); /* quantized and dequantized with the rounded scale */
    ck_assert(y[3] == rintf(0.01f * (1.0f / sc)) * sc);
}
END_TEST

START_TEST(test_observers) {
    nb_qspec s = int_spec(4, 1, NB_QGRAN_TENSOR, 0);
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = (float)((i * 37) % 255) / 127.0f - 1.0f;
    x[17] = 4.0f; /* one outlier: MSE clipping should shrink the range */
    float lo, hi, lo2, hi2;
    nb_qobs mm = {.kind = NB_QOBS_MINMAX}, mse = {.kind = NB_QOBS_MSE}, pc = {.kind = NB_QOBS_PERCENTILE, .percentile = 99.0f};
    ck_assert_int_eq(nb_quant_observe(&s, &mm, x, 16, 16, &lo, &hi, 1), NB_OK);
    ck_assert(hi == 4.0f);
    ck_assert_int_eq(nb_quant_observe(&s, &mse, x, 16, 16, &lo2, &hi2, 1), NB_OK);
    ck_assert(hi2 < hi && hi2 >= 0.5f * hi);
    /* the chosen range has no more error than the full one */
    float sc1, sc2, y1[256], y2[256];
    nb_quant_params(&s, &lo, &hi, 1, &sc1, NULL);
    nb_quant_params(&s, &lo2, &hi2, 1, &sc2, NULL);
    nb_fakequant_ref(&s, x, 16, 16, &sc1, NULL, y1);
    nb_fakequant_ref(&s, x, 16, 16, &sc2, NULL, y2);
    ck_assert(nb_quant_sqnr_db(x, y2, 256) >= nb_quant_sqnr_db(x, y1, 256));
    ck_assert_int_eq(nb_quant_observe(&s, &pc, x, 16, 16, &lo2, &hi2, 1), NB_OK);
    ck_assert(hi2 < 4.0f && hi2 >= 0.9f && lo2 == -hi2);
    /* EMA: r = d r + (1 - d) r_new after the first observation */
    nb_qobs ema = {.kind = NB_QOBS_EMA, .ema_decay = 0.9f};
    float a[2] = {-1, 1}, b[2] = {-3, 2};
    ck_assert_int_eq(nb_quant_observe(&s, &ema, a, 1, 2, &lo, &hi, 1), NB_OK);
    ck_assert(lo == -1.0f && hi == 1.0f);
    ck_assert_int_eq(nb_quant_observe(&s, &ema, b, 1, 2, &lo, &hi, 0), NB_OK);
    ck_assert_float_eq_tol(lo, -1.2f, 1e-6f);
    ck_assert_float_eq_tol(hi, 1.1f, 1e-6f);
    /* per-row minmax */
    nb_qspec r = int_spec(8, 0, NB_QGRAN_ROW, 0);
    float l3[16], h3[16];
    ck_assert_int_eq(nb_quant_observe(&r, &mm, x, 16, 16, l3, h3, 1), NB_OK);
    ck_assert(h3[1] == 4.0f);
}
END_TEST

/* SIMD twins: exact equality on odd sizes and unaligned pointers */
START_TEST(test_simd_twins) {
    static float xb[1100], y0[1100], y1[1100];
    nbt_fill(xb, 1100, 3);
    int sizes[] = {1, 3, 7, 17, 33, 100, 1000};
    nb_simd_level top = nb_simd_detect();
    for (int si = 0; si < 7; si++)
        for (int off = 0; off < 3; off++) {
            int n = sizes[si];
            const float *x = xb + off;
            float s = 0.37f, inv = 1.0f / s;
            nb_qseg_fq_ref(x, y0 + off, n, s, inv, 3.0f, -8.0f, 7.0f);
            float l0, h0, l1, h1;
            nb_qseg_minmax_ref(x, n, &l0, &h0);
#if NB_HAVE_AVX2
            if (top >= NB_SIMD_AVX2) {
                nb_qseg_fq_avx2(x, y1 + off, n, s, inv, 3.0f, -8.0f, 7.0f);
                ck_assert(!memcmp(y0 + off, y1 + off, (size_t)n * 4));
                nb_qseg_minmax_avx2(x, n, &l1, &h1);
                ck_assert(l0 == l1 && h0 == h1);
            }
#endif
#if NB_HAVE_AVX512
            if (top >= NB_SIMD_AVX512) {
                nb_qseg_fq_avx512(x, y1 + off, n, s, inv, 3.0f, -8.0f, 7.0f);
                ck_assert(!memcmp(y0 + off, y1 + off, (size_t)n * 4));
                nb_qseg_minmax_avx512(x, n, &l1, &h1);
                ck_assert(l0 == l1 && h0 == h1);
            }
#endif
        }
    /* whole matrices and per-token activations through the dispatch */
    nb_qspec specs[] = {int_spec(4, 1, NB_QGRAN_GROUP, 32), int_spec(8, 0, NB_QGRAN_ROW, 0),
                        int_spec(3, 1, NB_QGRAN_TENSOR, 0), int_spec(4, 0, NB_QGRAN_GROUP, 64)};
    specs[3].tail = NB_QTAIL_SHORT;
    int64_t rows = 5, cols = 100;
    for (int k = 0; k < 4; k++) {
        nb_qspec *s = &specs[k];
        float lo[20], hi[20], sc[20], z[20];
        nb_qobs mm = {0};
        int64_t c = k == 0 ? 96 : cols;
        nb_simd_force(NB_SIMD_SCALAR);
        ck_assert_int_eq(nb_quant_observe(s, &mm, xb + 1, rows, c, lo, hi, 1), NB_OK);
        nb_quant_params(s, lo, hi, nb_qspec_nscales(s, rows, c), sc, z);
        nb_fakequant_ref(s, xb + 1, rows, c, sc, z, y0);
        nb_fakequant_dynamic_ref(s, xb + 1, rows, c, y1 + 1, NULL);
        for (int l = NB_SIMD_AVX2; l <= (int)top; l++) {
            static float y2[1100], y3[1100];
            nb_simd_force((nb_simd_level)l);
            nb_fakequant_mat(s, xb + 1, rows, c, sc, z, y2 + 3);
            ck_assert(!memcmp(y0, y2 + 3, (size_t)(rows * c) * 4));
            nb_fakequant_dynamic(s, xb + 1, rows, c, y3 + 2, NULL);
            ck_assert(!memcmp(y1 + 1, y3 + 2, (size_t)(rows * c) * 4));
        }
    }
    nb_simd_force(top);
}
END_TEST

/* dynamic per-token int8: each row's scale from its own absmax */
START_TEST(test_dynamic_per_token) {
    nb_qspec s = int_spec(8, 1, NB_QGRAN_ROW, 0);
    float x[6] = {1, -2, 0.5f, 100, 3, -50}, y[6], sc[2];
    nb_fakequant_dynamic(&s, x, 2, 3, y, sc);
    ck_assert(sc[0] == 2.0f / 127.5f && sc[1] == 100.0f / 127.5f);
    ck_assert(fabsf(y[1] + 2.0f) <= sc[0] * 0.5f + 1e-6f);
    ck_assert(y[3] == 127.0f * sc[1]); /* 127.5 -> 128 clamps to 127 */
}
END_TEST

NB_SUITE("quant") {
    tcase_add_test(tc, test_grid_exact);
    tcase_add_test(tc, test_int4_ranges_and_rounding);
    tcase_add_test(tc, test_ternary);
    tcase_add_test(tc, test_asymmetric_zero_point);
    tcase_add_test(tc, test_group_tails);
    tcase_add_test(tc, test_blocks_hand_values);
    tcase_add_test(tc, test_blocks_random_and_fakequant);
    tcase_add_test(tc, test_fp16_scales);
    tcase_add_test(tc, test_observers);
    tcase_add_test(tc, test_simd_twins);
    tcase_add_test(tc, test_dynamic_per_token);
}
