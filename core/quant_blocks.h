/* quant_blocks.h: llama.cpp's Q8_0 and Q4_0 block formats and their reference quantizers.
   These functions reproduce ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref and the matching
   dequantizers bit for bit; the QAT presets fake-quantize through them and export writes their
   output, so a model trained with a preset exports with zero re-rounding. */
#ifndef NB_QUANT_BLOCKS_H
#define NB_QUANT_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#define NB_QK8_0 32
#define NB_QK4_0 32

/* Q8_0: 32 int8 values and one fp16 scale: x[j] = qs[j] * d. */
typedef struct nb_block_q8_0 {
    uint16_t d;            /* fp16 bits of the scale */
    int8_t qs[NB_QK8_0];   /* codes, -127..127 */
} nb_block_q8_0;
static_assert(sizeof(nb_block_q8_0) == 2 + NB_QK8_0, "block_q8_0 must be 34 bytes (ggml layout)");

/* Q4_0: 32 values in 16 bytes and one fp16 scale: x[j] = ((qs[j] & 15) - 8) * d and
   x[j + 16] = ((qs[j] >> 4) - 8) * d, for j in 0..15 (ggml's nibble order: byte j holds
   element j in the low nibble and element j + 16 in the high nibble). */
typedef struct nb_block_q4_0 {
    uint16_t d;                /* fp16 bits of the scale (negative when the block's largest
                                  magnitude is positive: d = max / -8) */
    uint8_t qs[NB_QK4_0 / 2];  /* nibbles */
} nb_block_q4_0;
static_assert(sizeof(nb_block_q4_0) == 2 + NB_QK4_0 / 2, "block_q4_0 must be 18 bytes (ggml layout)");

/* k must be a multiple of 32 (NB_ASSERT). y holds k / 32 blocks.
   Q8_0: amax = max |x|, d = amax / 127, id = d ? 1/d : 0, q = roundf(x * id) (half away from
   zero), the scale is stored as fp16(d) (round to nearest even). */
void nb_quantize_row_q8_0_ref(const float *x, nb_block_q8_0 *y, int64_t k);
void nb_dequantize_row_q8_0(const nb_block_q8_0 *x, float *y, int64_t k);
/* Q4_0: max = the signed value of largest magnitude (first one on ties), d = max / -8,
   id = d ? 1/d : 0, q = MIN(15, (int8)(x * id + 8.5f)) (truncation: floor of x*id + 8.5),
   scale stored as fp16(d). Codes use id from the fp32 d, values use the fp16 d: as ggml. */
void nb_quantize_row_q4_0_ref(const float *x, nb_block_q4_0 *y, int64_t k);
void nb_dequantize_row_q4_0(const nb_block_q4_0 *x, float *y, int64_t k);

/* The code of element j (0..31) of a Q4_0 block, -8..7. */
static inline int nb_q4_0_code(const nb_block_q4_0 *b, int j) {
    return j < 16 ? (b->qs[j] & 15) - 8 : (b->qs[j - 16] >> 4) - 8;
}

/* llama.cpp's x86 CPU path quantizes the activation rows of a Q4_0/Q8_0 matmul with a variant of
   the reference: id = 127 / amax (not 1 / d) and round half to even (_mm256_round_ps), codes
   clamped to -127..127, d = fp16(amax / 127). nibble's runtime (ops/kernels/qdot.h) does the same;
   the QAT activation grid q8_0 fake-quantizes through it, so training sees the deployed codes. */
void nb_quantize_row_q8_0_act(const float *x, nb_block_q8_0 *y, int64_t k);
void nb_fakequant_row_q8_0_act(const float *x, float *y, int64_t k);

/* Fake-quant of a row through the block format: y = dequantize(quantize(x)), k % 32 == 0.
   x and y may alias. */
void nb_fakequant_row_q8_0(const float *x, float *y, int64_t k);
void nb_fakequant_row_q4_0(const float *x, float *y, int64_t k);

#endif
