/* quant_blocks.c: ggml's Q8_0 / Q4_0 reference quantizers, reproduced exactly. */
#include "quant_blocks.h"

#include <math.h>

#include "fp16.h"
#include "status.h"

void nb_quantize_row_q8_0_ref(const float *x, nb_block_q8_0 *y, int64_t k) {
    NB_ASSERT(k % NB_QK8_0 == 0);
    for (int64_t i = 0; i < k / NB_QK8_0; i++) {
        const float *xb = x + i * NB_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < NB_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = nb_fp32_to_fp16(d);
        for (int j = 0; j < NB_QK8_0; j++) y[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

void nb_dequantize_row_q8_0(const nb_block_q8_0 *x, float *y, int64_t k) {
    NB_ASSERT(k % NB_QK8_0 == 0);
    for (int64_t i = 0; i < k / NB_QK8_0; i++) {
        const float d = nb_fp16_to_fp32(x[i].d);
        for (int j = 0; j < NB_QK8_0; j++) y[i * NB_QK8_0 + j] = (float)x[i].qs[j] * d;
    }
}

void nb_quantize_row_q4_0_ref(const float *x, nb_block_q4_0 *y, int64_t k) {
    NB_ASSERT(k % NB_QK4_0 == 0);
    for (int64_t i = 0; i < k / NB_QK4_0; i++) {
        const float *xb = x + i * NB_QK4_0;
        float amax = 0.0f, max = 0.0f; /* largest magnitude, and that value with its sign */
        for (int j = 0; j < NB_QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = nb_fp32_to_fp16(d);
        for (int j = 0; j < NB_QK4_0 / 2; j++) {
            /* (int8_t) truncates toward zero; x*id + 8.5 >= 0 here, so this is floor */
            int q0 = (int8_t)(xb[j] * id + 8.5f);
            int q1 = (int8_t)(xb[j + NB_QK4_0 / 2] * id + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void nb_dequantize_row_q4_0(const nb_block_q4_0 *x, float *y, int64_t k) {
    NB_ASSERT(k % NB_QK4_0 == 0);
    for (int64_t i = 0; i < k / NB_QK4_0; i++) {
        const float d = nb_fp16_to_fp32(x[i].d);
        for (int j = 0; j < NB_QK4_0 / 2; j++) {
            y[i * NB_QK4_0 + j] = (float)((x[i].qs[j] & 15) - 8) * d;
            y[i * NB_QK4_0 + j + NB_QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* one block at a time through a stack block, so x and y may alias */
void nb_fakequant_row_q8_0(const float *x, float *y, int64_t k) {
    NB_ASSERT(k % NB_QK8_0 == 0);
    for (int64_t i = 0; i < k; i += NB_QK8_0) {
        nb_block_q8_0 b;
        nb_quantize_row_q8_0_ref(x + i, &b, NB_QK8_0);
        nb_dequantize_row_q8_0(&b, y + i, NB_QK8_0);
    }
}

void nb_quantize_row_q8_0_act(const float *x, nb_block_q8_0 *y, int64_t k) {
    NB_ASSERT(k % NB_QK8_0 == 0);
    for (int64_t i = 0; i < k / NB_QK8_0; i++) {
        const float *xb = x + i * NB_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < NB_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = nb_fp32_to_fp16(amax / 127.0f);
        for (int j = 0; j < NB_QK8_0; j++) {
            float v = nearbyintf(xb[j] * id); /* half to even, as _mm256_round_ps(_MM_ROUND_NEAREST) */
            y[i].qs[j] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
}

void nb_fakequant_row_q8_0_act(const float *x, float *y, int64_t k) {
    NB_ASSERT(k % NB_QK8_0 == 0);
    for (int64_t i = 0; i < k; i += NB_QK8_0) {
        nb_block_q8_0 b;
        nb_quantize_row_q8_0_act(x + i, &b, NB_QK8_0);
        nb_dequantize_row_q8_0(&b, y + i, NB_QK8_0);
    }
}

void nb_fakequant_row_q4_0(const float *x, float *y, int64_t k) {
    NB_ASSERT(k % NB_QK4_0 == 0);
    for (int64_t i = 0; i < k; i += NB_QK4_0) {
        nb_block_q4_0 b;
        nb_quantize_row_q4_0_ref(x + i, &b, NB_QK4_0);
        nb_dequantize_row_q4_0(&b, y + i, NB_QK4_0);
    }
}
