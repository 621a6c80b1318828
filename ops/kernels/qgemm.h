/* qgemm.h: the forward product of a fake-quantized linear layer in integers.
   With x̂ = s_r qx (per-row activation codes, |qx| <= 128) and Ŵ = s_w[n, g] qw (symmetric weight
   codes, one scale per group of G inputs), the training forward's C = x̂ Ŵ^T is
       C[r, n] = s_r * sum_g s_w[n, g] * (sum_{k in g} qx[r, k] qw[n, k])
   The inner sums are exact int32 (AVX-512 VNNI vpdpbusd, 4x the fp32 FMA rate on Zen 4); the
   outer sum is an fma chain in g order, then one multiply by s_r. The result is the fp32 product
   of the same operands up to float rounding order (it is the more exact of the two), the same
   bits at any thread count, and the scalar twin nb_qgemm_ref gives the same bits.
   Float order against the runtime (nb_qmatmul, ops/kernels/qdot.c): the runtime's chain over
   groups is acc = fma(fl(isum ws), xs, acc) with one activation scale per group, here it is
   acc = fma(isum, ws, acc) and one multiply by s_r at the end. With one group per row both are
   fl(fl(isum ws) s_r), the same bits (given the same codes and scales); with several groups they
   differ by rounding (relative ~1e-7 per output).
   Used by nb_linear (ops/matmul.c) during training on AVX-512 VNNI CPUs; other SIMD levels and
   no-grad forwards take the fp32 GEMM on the fake-quant values. */
#ifndef NB_QGEMM_H
#define NB_QGEMM_H

#include <stddef.h>
#include <stdint.h>

/* Packed weight: per 32-column panel, per group: int32 corr[32] (-128 * sum of the group's codes,
   undoing the +128 offset of the activation codes), float scale[32], then G/4 quads of
   [32 columns][4 codes] (int8). Columns past N are zero. G and K must be multiples of 4, K of G. */
size_t nb_qgemm_packed_bytes(int64_t N, int64_t K, int64_t G);
/* Codes from fake-quantized values: q = clamp(rint(w / s), qmin, qmax) (s = 0: q = 0), scale
   s = scale[n * (K / G) + g] (tensor = 1: scale[0]). dst: nb_qgemm_packed_bytes, 64-aligned. */
void nb_qgemm_pack_w(const float *W, int64_t N, int64_t K, int64_t G, const float *scale, int tensor, int qmin,
                     int qmax, void *dst);
/* Activation codes + 128 as bytes, row-major M x K: u = clamp(rint(x / s_r), -128, 127) + 128.
   A row holding a NaN gets xs[r] = NaN, so that its outputs are NaN as the fp32 product's are
   (a NaN weight likewise gets a NaN scale in the packed panel). */
void nb_qgemm_pack_x(const float *X, int64_t M, int64_t K, float *xs, uint8_t *dst);
void nb_qgemm_pack_x_ref(const float *X, int64_t M, int64_t K, float *xs, uint8_t *dst);

/* Is the integer path available (AVX-512 with VNNI active)? */
int nb_qgemm_available(void);
/* C (M x N, row stride ldc) = the product above, from packed operands. Threads over row blocks. */
void nb_qgemm(int64_t M, int64_t N, int64_t K, int64_t G, const uint8_t *xa, const float *xs, const void *wp,
              float *C, int64_t ldc);
/* The spec on plain codes: xq (M x K, int8 codes, not offset), wq (N x K codes), ws (N x K/G). */
void nb_qgemm_ref(int64_t M, int64_t N, int64_t K, int64_t G, const int8_t *xq, const float *xs, const int8_t *wq,
                  const float *ws, float *C, int64_t ldc);

/* Level kernels (single thread): rows [0, M) of C from packed operands; scalar on packed data. */
void nb_qgemm_rows_avx512(int64_t M, int64_t N, int64_t K, int64_t G, const uint8_t *xa, const float *xs,
                          const void *wp, float *C, int64_t ldc);
void nb_qgemm_rows_packed_ref(int64_t M, int64_t N, int64_t K, int64_t G, const uint8_t *xa, const float *xs,
                              const void *wp, float *C, int64_t ldc);
void nb_qgemm_pack_w_ref(const float *W, int64_t N, int64_t K, int64_t G, const float *scale, int tensor, int qmin,
                         int qmax, void *dst);
void nb_qgemm_pack_w_avx512(const float *W, int64_t N, int64_t K, int64_t G, const float *scale, int tensor,
                            int qmin, int qmax, void *dst, int64_t p0, int64_t p1);
void nb_qgemm_pack_x_avx512(const float *X, int64_t M, int64_t K, float *xs, uint8_t *dst);

#endif
