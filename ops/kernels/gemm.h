/* gemm.h: single-precision matrix multiply, the hot loop of training.
   C[M,N] = beta * C + op(A)[M,K] * op(B)[K,N], all row-major:
   op(A) = A (M x K, row stride lda) when ta == 0, A^T with A stored K x M when ta == 1;
   op(B) = B (K x N, row stride ldb) when tb == 0, B^T with B stored N x K when tb == 1.
   beta is 0 (overwrite; C need not be initialised) or 1 (accumulate). */
#ifndef NB_GEMM_H
#define NB_GEMM_H

#include <stdint.h>

/* Dispatching entry point: picks the SIMD level (nb_simd_active) and threads with OpenMP.
   Register-tiled micro-kernels (AVX-512 14x32 with narrower edge variants, AVX2 6x16), K blocked
   by 384, B packed per block (the packing absorbs tb), A read in place (ta is a stride); M < 4
   takes a small-M path that reads B in place. Threads (only when M*N*K >= 2^19) split the rows
   or the columns of C, never K, so the result is bit-identical for any thread count (it differs
   from nb_sgemm_ref and between SIMD levels by rounding: fma). Packing buffers are per thread,
   grow once and are freed at thread exit: no allocation in steady state. */
void nb_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc);
/* batch independent products: A + z * sa, B + z * sb, C + z * sc for z < batch (sb = 0 shares B).
   Small products (attention heads) run one per thread; large ones one after another, each split
   across the threads. Same bits as calling nb_sgemm batch times. C blocks must not overlap. */
void nb_sgemm_batched(int ta, int tb, int64_t batch, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta, float *C, int64_t ldc,
                      int64_t sc);
/* The spec: plain loops, double-free fp32 accumulation in k order. Single thread. */
void nb_sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc);

/* Level entry points used by nb_sgemm (single-threaded, same contract; they return -1 when a
   buffer cannot be allocated, and nb_sgemm then falls back to the reference). _sgemm is the
   packed, tiled path; _sgemv the small-M path (rows of C one at a time, B read in place). nb_sgemm
   picks one from the whole M, so a thread's share of rows never changes the path. */
int nb_sgemv_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc);
int nb_sgemv_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc);
int nb_sgemm_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc);
int nb_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc);

#endif
