/* attn.h: the kernels behind the fused causal attention (ops/attention.c). One table per SIMD
   level; nb_attn_ref is the spec. Every output element is computed by the same sequence of fp32
   operations at every level (products as one fused multiply-add chain in index order, exp as the
   same polynomial), so the SIMD tables agree with the reference bit for bit.
   Score strips: a query block of NB_ATTN_TQ queries against keys 0..nk-1 is held transposed, S
   (nk, NB_ATTN_TQ) with row j = key j and column i = query t0 + i, so that the softmax runs down
   the columns, vectorised over queries. Key j is masked (causal) for query t0 + i when j > t0 + i. */
#ifndef NB_ATTN_H
#define NB_ATTN_H

#include <stdint.h>

#include "../../core/simd.h"

#define NB_ATTN_TQ 32 /* queries per block: the width (and row stride) of a score strip */

typedef struct nb_attn_kernels {
    const char *name;
    int lanes; /* floats per vector (1 for the reference) */
    /* C (M, N) = [C +] op(A) B: op(A) = A (M, K) with row stride lda, or A^T with A stored (K, M)
       when ta; B (K, N) with row stride ldb; acc adds into C. C[m][n] is the chain
       c = fma(op(A)[m][k], B[k][n], c) over k = 0..K-1 from c = 0, then C (+)= c. Register-tiled
       for N up to a few vectors (the attention widths: NB_ATTN_TQ and the head dim H). */
    void (*mm)(int ta, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
               float *C, int64_t ldc, int acc);
    /* forward softmax of a strip S (nk, TQ) in place: mx[i] = max over unmasked j of S[j][i],
       S[j][i] = exp(S[j][i] - mx[i]) (0 where masked), l[i] = sum_j S[j][i] (in j order); with
       norm, S[j][i] is then multiplied by 1 / l[i] (the probabilities) */
    void (*softmax)(float *S, int64_t nk, int64_t t0, float *mx, float *l, int norm);
    /* backward probabilities from the saved log-sum-exp: S[j][i] = exp(S[j][i] - lse[i]), 0 where masked */
    void (*probs)(float *S, int64_t nk, int64_t t0, const float *lse);
    /* score gradients in place: D[i] = sum_j fma(P[j][i], dP[j][i]) (in j order),
       dP[j][i] = (P[j][i] (dP[j][i] - D[i])) scale */
    void (*dscores)(float *dP, const float *P, int64_t nk, float scale);
    /* a block of m <= TQ rows (row stride ld) of H columns into the transposed layout the strips
       multiply with: Xt[d TQ + i] = X[i ld + d] s for i < m, 0 for m <= i < TQ */
    void (*load_t)(float *Xt, const float *X, int64_t ld, int64_t H, int64_t m, float s);
    /* y[i] = nb_attn_exp(x[i]) (the vector twin, for tests) */
    void (*exp)(float *y, const float *x, int64_t n);
} nb_attn_kernels;

/* exp(x) for x clamped to [-87, 88]: Cephes polynomial on r = x - n ln2 (n = round(x log2 e),
   ln2 in two parts), times 2^n made in the exponent bits. exp(-inf) is 1.6e-38, not 0 (callers
   mask); NaN gives NaN. 1-2 ulp. Every SIMD level computes exactly these bits. */
float nb_attn_exp(float x);

extern const nb_attn_kernels nb_attn_ref;
#if NB_HAVE_AVX2
extern const nb_attn_kernels nb_attn_avx2;
#endif
#if NB_HAVE_AVX512
extern const nb_attn_kernels nb_attn_avx512;
#endif

/* The table of the active SIMD level (nb_simd_active()). */
const nb_attn_kernels *nb_attn(void);
/* The table of a given level, or NULL when this build or CPU lacks it. */
const nb_attn_kernels *nb_attn_level(nb_simd_level l);

#endif
