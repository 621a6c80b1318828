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
#define NB_ATTN_PV_HEADS 8 /* heads per pv_l call, at most */

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
       S[j][i] = exp(S[j][i] - mx[i]) (0 where masked), l[i] = sum_j S[j][i] (in j order) */
    void (*softmax)(float *S, int64_t nk, int64_t t0, float *mx, float *l);
    /* S[j][i] *= s[i] for j < nk, i < TQ (normalising a strip) */
    void (*colscale)(float *S, int64_t nk, const float *s);
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
    /* n (1..NB_ATTN_PV_HEADS) decode rows' outputs and normalisers, side by side: for each i < n,
       o[i][d] = the chain fma(e[i][j], v[i][j ldv + d], c) over j = 0..nk-1 from c = 0 (d < H;
       mm's chain), and l[i] (when l is not NULL) = the sum of e[i][j] in j order from 0. One row's
       chains are serial in the keys; the rows of several heads fill the pipeline together. */
    void (*pv_l)(int n, const float *const *e, int64_t nk, const float *const *v, int64_t ldv, int64_t H,
                 float *const *o, float *l);
    /* returns mx = max of s[0, n) (the same value in any order, for finite scores) and sets
       e[j] = nb_attn_exp(s[j] - mx) */
    float (*max_exp)(float *e, const float *s, int64_t n);
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

/* ---- block products and the per-head forward (attn.c), shared by nb_attention and the runtime ----
   A query block is queries t0..t0+m-1 (m <= TQ) against keys 0..nk-1, nk = t0 + m. Key rows past
   t0 + TQ/2 only meet the block's second half of queries: the products split there. */

/* S (nk, TQ) = X Yt with X rows of keys (stride ldx) and Yt (H, TQ); the dead corner (keys from
   t0 + TQ/2, queries below TQ/2) is set to 0 */
void nb_attn_scores(const nb_attn_kernels *kk, float *S, const float *X, int64_t ldx, const float *Yt, int64_t H,
                    int64_t t0, int64_t nk);
/* C (m, N) (+)= P^T Y over the keys (P a strip, Y rows of keys, stride ldy) */
void nb_attn_over_keys(const nb_attn_kernels *kk, const float *P, const float *Y, int64_t ldy, float *C, int64_t ldc,
                       int64_t N, int64_t t0, int64_t m, int acc);
/* the same transposed: Ct (N, TQ) = Y^T P (columns past m undefined) */
void nb_attn_over_keys_t(const nb_attn_kernels *kk, const float *Y, int64_t ldy, const float *P, float *Ct, int64_t N,
                         int64_t t0, int64_t m);
/* C (nk, N) += A Y over the block's m queries (A a strip, Y rows of queries, stride ldy) */
void nb_attn_over_queries(const nb_attn_kernels *kk, const float *A, const float *Y, int64_t ldy, float *C,
                          int64_t ldc, int64_t N, int64_t t0, int64_t m);

/* Causal attention forward of one head: n query rows at absolute positions pos..pos+n-1 (q rows,
   stride ldq) against keys 0..pos+n-1 (k and v rows of the kv head, stride ldkv); o rows stride
   ldo. Row t is, with s_j = the fma chain over d of k_j[d] (q[d] (1 / sqrt(H))) for j <= t:
     mx = max_j s_j,  e_j = nb_attn_exp(s_j - mx),  l = sum_j e_j (fp32, j order, from 0),
     o[d] = (the fma chain over j of e_j v_j[d], from 0) * (1 / l),  lse[t - pos] = mx + logf(l)
   so its bits depend only on q row t and keys / values 0..t (given finite values), never on how
   rows are split between calls (prefill vs one-row decode) nor on the SIMD level. This is
   nb_attention's forward per (batch, head). lse may be NULL. keep (pos == 0 only): where to
   write the normalised probability strips for nb_attention's backward (nb_attn_kept_at), or
   NULL. scratch: nb_attn_scratch_floats(pos + n, H) floats, not shared between threads.
   One row without keep (decode) skips the 32-query strips: keys 32 at a time against that row,
   the same bits (tests/test_attention.c, tests/test_exact.c). */
void nb_attn_forward_rows(const nb_attn_kernels *kk, const float *q, int64_t ldq, const float *k, const float *v,
                          int64_t ldkv, float *o, int64_t ldo, int64_t pos, int64_t n, int64_t H, float *lse,
                          float *keep, float *scratch);
/* nb_attn_forward_rows of one row t (n == 1, no lse, no keep) for the query heads [h0, h1) of a
   decode step, with the keys 0..t given transposed, as the runtime's decode cache keeps them. Head
   h reads q + h H, writes o + h H, and uses kv head g = h / kv_mul: keys kt + g H ldkt (H rows of
   stride ldkt, >= t + 1 columns), values v + g H (row stride ldkv). Head h's scratch is
   scratch + (h - h0) lds, lds >= nb_attn_decode_scratch_floats(t + 1, H). The same bits as one
   call per head; the heads' serial output chains run side by side (kk->pv_l). */
void nb_attn_decode_heads(const nb_attn_kernels *kk, int64_t h0, int64_t h1, int64_t kv_mul, const float *q,
                          const float *kt, int64_t ldkt, const float *v, int64_t ldkv, float *o, int64_t t, int64_t H,
                          float *scratch, int64_t lds);
int64_t nb_attn_scratch_floats(int64_t nk, int64_t H);
/* one decode row's scratch for up to nk keys (scores, exps, a key strip, q) */
int64_t nb_attn_decode_scratch_floats(int64_t nk, int64_t H);
/* floats of one head's kept strips for T queries, and where block t0's strip starts */
int64_t nb_attn_kept_floats(int64_t T);
int64_t nb_attn_kept_at(int64_t t0);

/* The table of the active SIMD level (nb_simd_active()). */
const nb_attn_kernels *nb_attn(void);
/* The table of a given level, or NULL when this build or CPU lacks it. */
const nb_attn_kernels *nb_attn_level(nb_simd_level l);

#endif
