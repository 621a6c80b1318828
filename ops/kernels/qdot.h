/* qdot.h: integer dot-product kernels of the inference runtime: ggml's Q8_0 and Q4_0 blocks
   against Q8_0 activations, and nibble's int8/int4 per-row or per-group weights against int8
   activations quantized with the same groups. Every kernel has a scalar `_ref` twin that is the
   spec; the SIMD versions (qdot_avx2.c, qdot_avx512.c) compute the same integer sums and add the
   per-block float terms in the same order, so their results are bit-identical to the twins. */
#ifndef NB_QDOT_H
#define NB_QDOT_H

#include <stddef.h>
#include <stdint.h>

#include "../../core/quant_blocks.h"

/* The blocks are llama.cpp's (core/quant_blocks.h, which also holds the weight quantizers). */
#define NB_QK NB_QK8_0
/* The runtime's former names for the same blocks (code written before the switch still builds). */
typedef nb_block_q8_0 nb_blk_q8_0;
typedef nb_block_q4_0 nb_blk_q4_0;

/* ---- activation quantizers ---- */

/* x (n floats, n % 32 == 0) -> n/32 Q8_0 blocks, as llama.cpp's x86 CPU path quantizes the
   activation row of a Q4_0/Q8_0 matmul: amax = max |x|, d = amax / 127 (stored fp16),
   q = round-half-even(x * (127 / amax)), 0 when amax == 0. */
void nb_quantize_act_q8_0(const float *x, nb_block_q8_0 *y, int64_t n);
void nb_quantize_act_q8_0_ref(const float *x, nb_block_q8_0 *y, int64_t n);

/* x (n floats) -> int8 codes q (n) and fp32 scales s (ceil(n / group)), one per group of `group`
   consecutive elements (the last group may be shorter): s = amax / 127, q = round(x / s) (halves
   away from zero), as llama2.c's runq.c quantizes activations; s = 0 gives q = 0. */
void nb_quantize_act_i8(const float *x, int8_t *q, float *s, int64_t n, int64_t group);
void nb_quantize_act_i8_ref(const float *x, int8_t *q, float *s, int64_t n, int64_t group);

/* ---- dot products of one weight row with one quantized activation row ---- */

/* sum over blocks b in order: acc = fma((float)isum_b, d_w[b] * d_x[b], acc); n % 32 == 0. This is
   ggml_vec_dot_q8_0_q8_0's (and q4_0_q8_0's) formula; isum_b is the exact int32 block sum. The
   explicit fma fixes the rounding whatever the compiler flags (the SIMD files build with -mfma). */
float nb_dot_q8_0_q8_0(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x);
float nb_dot_q8_0_q8_0_ref(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x);
float nb_dot_q4_0_q8_0(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x);
float nb_dot_q4_0_q8_0_ref(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x);

/* int8 weight row w (n codes), weight scales ws and optional zero points wz (NULL: symmetric), one
   per group, against int8 activations x with scales xs on the same groups:
   acc = fma((float)(sum_k w_k x_k - z_g sum_k x_k) * ws[g], xs[g], acc), groups in order. */
float nb_dot_i8_i8(int64_t n, int64_t group, const int8_t *w, const float *ws, const int8_t *wz, const int8_t *x,
                   const float *xs);
float nb_dot_i8_i8_ref(int64_t n, int64_t group, const int8_t *w, const float *ws, const int8_t *wz,
                       const int8_t *x, const float *xs);
/* Same with int4 weights packed two per byte: element 2k in the low nibble of w[k], 2k+1 in the
   high nibble, codes are two's-complement 4-bit values -8..7. */
float nb_dot_i4_i8(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz, const int8_t *x,
                   const float *xs);
float nb_dot_i4_i8_ref(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                       const int8_t *x, const float *xs);

/* The kernel nb_dot_i8_i8 / nb_dot_i4_i8 would pick for rows of n elements with this group and
   zero-point presence at the active SIMD level: resolve once per matrix, call per row. */
typedef float (*nb_dot_i8_fn)(int64_t n, int64_t group, const int8_t *w, const float *ws, const int8_t *wz,
                              const int8_t *x, const float *xs);
typedef float (*nb_dot_i4_fn)(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                              const int8_t *x, const float *xs);
nb_dot_i8_fn nb_dot_i8_i8_pick(int64_t n, int64_t group, int has_zeros);
nb_dot_i4_fn nb_dot_i4_i8_pick(int64_t n, int64_t group, int has_zeros);

/* ---- matrix x vector on 16-row packed blocks ----
   For a symmetric int8 / int4 matrix whose groups are whole chunks of 32 (the last group may be
   shorter), or that has one group a row of any length (packed as one group of whole 32-chunks)
   (nb_qpack_ok), the runtime keeps a packed copy of the codes (nb_qpack, made once per runtime
   state) in blocks of 16 rows in which one 32-bit lane of a 512-bit vector holds one row: step k
   of group g holds codes 4k..4k+3 of each of the 16 rows, stored unsigned (int8: w + 128; int4:
   w + 8, steps 2j and 2j+1 in the low and high nibbles of the same 64 bytes), then the scales
   transposed ((block, group, 16) floats; rows past the matrix: code 0, scale 0). vpdpbusd against
   the step's 4 activation codes broadcast gives every row's exact group sum at once (the offset's
   share, off times the group's activation sum, comes off at the start through lsum), then one
   convert, one multiply and one fma per group for 16 rows: y[r] = nb_dot_i8_i8_ref /
   nb_dot_i4_i8_ref of row r, bit for bit. Codes past n are packed as 0 (no offset), so
   nb_matvec_qpack reads x to the end of the last group (a row-wide group: to n rounded up to 32)
   whatever the bytes there. It writes rows [r0, r0 + nr) of the matrix (rows in all) to
   y[0 .. nr). lsum: the activation's lane sums (nb_act_lanesums), computed once per activation
   row. */
int nb_qpack_ok(int64_t n, int64_t group, int has_zeros);
/* Whether the packed kernel runs at the active SIMD level (AVX-512 VNNI); elsewhere the runtime
   keeps no pack and uses the row dots, which give the same bits. */
int nb_qpack_available(void);
size_t nb_qpack_bytes(int i4, int64_t rows, int64_t n, int64_t group);
/* w: the rows x n codes (int8; or int4 two per byte as nb_dot_i4_i8 reads them, a row starting on
   a byte: (n + 1) / 2 bytes); ws (rows, ceil(n / group)) */
void nb_qpack(int i4, int64_t rows, int64_t n, int64_t group, const void *w, const float *ws, void *dst);
void nb_matvec_qpack(int i4, const void *pk, int64_t rows, int64_t n, int64_t group, int64_t r0, int64_t nr,
                     const int8_t *x, const float *xs, const int32_t *lsum, float *y);
/* Whether the matvec kernels prefetch ahead: worth it when the weights stream from DRAM, a few %
   slower when they sit in the caches. The runtime sets it from its model's size (default off);
   results are the same bits either way. */
void nb_qdot_set_prefetch(int on);
int nb_qdot_prefetch(void);
/* lsum[g * 8 + k] = sum of x[g * group + 32 c + 4 k + i] over the group's chunks c and i < 4
   (elements below n only). */
void nb_act_lanesums(int64_t n, int64_t group, const int8_t *x, int32_t *lsum);
void nb_act_lanesums_ref(int64_t n, int64_t group, const int8_t *x, int32_t *lsum);

/* Rows 0..rows-1 of a Q8_0 / Q4_0 matrix (n / 32 blocks per row) against one Q8_0 activation row:
   y[r] = nb_dot_q8_0_q8_0_ref / nb_dot_q4_0_q8_0_ref of row r, bit for bit. lsum: the lane sums of
   the activation's codes, 8 per block (nb_act_lanesums_q8_0). */
void nb_act_lanesums_q8_0(int64_t n, const nb_block_q8_0 *x, int32_t *lsum);
void nb_matvec_q8_0(int64_t rows, int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x, const int32_t *lsum,
                    float *y);
void nb_matvec_q8_0_ref(int64_t rows, int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x,
                        const int32_t *lsum, float *y);
void nb_matvec_q4_0(int64_t rows, int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x, const int32_t *lsum,
                    float *y);
void nb_matvec_q4_0_ref(int64_t rows, int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x,
                        const int32_t *lsum, float *y);

/* Exact int32 sums: the building blocks (exposed for tests). */
int32_t nb_isum_i8(int64_t n, const int8_t *a, const int8_t *b);
int32_t nb_isum_i8_ref(int64_t n, const int8_t *a, const int8_t *b);

/* fp32 dot (F32 weights), fixed order: 16 interleaved partial sums over the row, then summed
   pairwise; the SIMD version adds in the same order, so it is bit-identical to the twin. */
float nb_dot_f32(int64_t n, const float *w, const float *x);
float nb_dot_f32_ref(int64_t n, const float *w, const float *x);
/* fp16 weights (converted on the fly, same summation order as nb_dot_f32). */
float nb_dot_f16(int64_t n, const uint16_t *w, const float *x);
float nb_dot_f16_ref(int64_t n, const uint16_t *w, const float *x);

/* int4 packing helpers (two's complement nibbles, element 2k low). */
static inline int nb_i4_get(const uint8_t *p, int64_t i) {
    int v = (p[i >> 1] >> ((i & 1) * 4)) & 15;
    return v >= 8 ? v - 16 : v;
}
static inline void nb_i4_set(uint8_t *p, int64_t i, int v) {
    int sh = (int)(i & 1) * 4;
    p[i >> 1] = (uint8_t)((p[i >> 1] & ~(15 << sh)) | ((v & 15) << sh));
}

#endif
