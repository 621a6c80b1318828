/* gemm.c: scalar reference GEMM and the dispatcher (SIMD level, thread split). */
#include "gemm.h"

#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../../core/simd.h"

void nb_sgemm_ref(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                float a = ta ? A[k * lda + m] : A[m * lda + k];
                float b = tb ? B[n * ldb + k] : B[k * ldb + n];
                s += a * b;
            }
            C[m * ldc + n] = beta == 0.0f ? s : C[m * ldc + n] + s;
        }
}

typedef int (*gemm_fn)(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Rows of C below which the small-M path reads B in place (packing B would cost as much as the math). */
#define GEMV_MAX_M 4

/* Below this many multiply-adds (~10 us of work on one core) one thread is used. Measured with
   warm OpenMP workers, two threads win down to 64x64x64 (1.45x); a sleeping worker takes tens of
   microseconds to wake, so the cut is kept above that. */
#define GEMM_MIN_PARALLEL_WORK ((int64_t)1 << 19)

static int threads_for(int64_t M, int64_t N, int64_t K) {
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
    if (M * N * K < GEMM_MIN_PARALLEL_WORK) return 1;
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* One thread's share: C[m0:m1, n0:n1]. Falls back to the reference if packing memory is refused. */
static void region(gemm_fn f, int ta, int tb, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t K,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (m1 <= m0 || n1 <= n0) return;
    const float *a = ta ? A + m0 : A + m0 * lda;
    const float *b = tb ? B + n0 * ldb : B + n0;
    float *c = C + m0 * ldc + n0;
    if (f(ta, tb, m1 - m0, n1 - n0, K, a, lda, b, ldb, beta, c, ldc) != 0)
        nb_sgemm_ref(ta, tb, m1 - m0, n1 - n0, K, a, lda, b, ldb, beta, c, ldc);
}

void nb_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* empty sum */
        if (beta == 0.0f)
            for (int64_t m = 0; m < M; m++) memset(C + m * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    gemm_fn f = NULL;
    int mr = 1, nr = 1;
    nb_simd_level lvl = nb_simd_active();
    int small = M < GEMV_MAX_M;
#if NB_HAVE_AVX512
    if (!f && lvl >= NB_SIMD_AVX512) f = small ? nb_sgemv_avx512 : nb_sgemm_avx512, mr = 14, nr = 32;
#endif
#if NB_HAVE_AVX2
    if (!f && lvl >= NB_SIMD_AVX2) f = small ? nb_sgemv_avx2 : nb_sgemm_avx2, mr = 6, nr = 16;
#endif
    (void)lvl;
    int nt = threads_for(M, N, K);
    if (!f) { /* scalar: the reference, rows in parallel */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t m = 0; m < M; m++)
            nb_sgemm_ref(ta, tb, 1, N, K, ta ? A + m : A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
        return;
    }
    /* Split C into bands of whole register tiles, along M or N, whichever a rough per-thread cost
       (cycles) favours: the math, inflated by padding of the busiest thread's tiles, plus the
       copies each split implies. Splitting M makes every thread pack all of B (~0.5 cycle per
       float); splitting N makes every thread read all of A in place (~1 cycle per float, L3). */
    int64_t tm = (M + mr - 1) / mr, tn = (N + nr - 1) / nr;
    double eff_m = (double)M / ((double)nt * ((tm + nt - 1) / nt) * mr);
    double eff_n = (double)N / ((double)nt * ((tn + nt - 1) / nt) * nr);
    double math = (double)M * N * K / (16.0 * nt);
    double cost_m = math / eff_m + 0.5 * K * N + 1.0 * M * K / nt;
    double cost_n = math / eff_n + 0.5 * K * N / nt + 1.0 * M * K;
    int split_m = cost_m <= cost_n;
    int64_t tiles = split_m ? tm : tn;
    if (nt > tiles) nt = (int)tiles;
    if (nt <= 1) {
        region(f, ta, tb, 0, M, 0, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Large products are cut into up to 4 chunks per thread, handed out dynamically, so that a
       core slowed by other work does not hold the others up; but each chunk repeats the copies
       above (all of B per M chunk, all of A per N chunk), so chunks stay at >= 512 rows or >= 128
       columns. A chunk boundary only decides which thread computes a tile, never how, so the bits
       do not change. */
    int64_t nchunk = split_m ? M / 512 : N / 128;
    if (nchunk > 4 * (int64_t)nt) nchunk = 4 * (int64_t)nt;
    if (nchunk < nt || M * N * K < 16 * GEMM_MIN_PARALLEL_WORK) nchunk = nt;
    if (nchunk > tiles) nchunk = tiles;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t ch = 0; ch < nchunk; ch++) {
        int64_t t0 = tiles * ch / nchunk, t1 = tiles * (ch + 1) / nchunk;
        if (split_m)
            region(f, ta, tb, t0 * mr, t1 * mr < M ? t1 * mr : M, 0, N, K, A, lda, B, ldb, beta, C, ldc);
        else
            region(f, ta, tb, 0, M, t0 * nr, t1 * nr < N ? t1 * nr : N, K, A, lda, B, ldb, beta, C, ldc);
    }
}

void nb_sgemm_batched(int ta, int tb, int64_t batch, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      int64_t sa, const float *B, int64_t ldb, int64_t sb, float beta, float *C, int64_t ldc,
                      int64_t sc) {
    int64_t work = M * N * K;
    int nt = batch > 1 ? threads_for(batch, M * N, K) : 1;
    /* Small products (attention heads): one whole product per thread. Large ones: one at a time,
       each split across the threads. Either way every element is computed the same way. */
    if (nt > 1 && work < 4 * GEMM_MIN_PARALLEL_WORK) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t z = 0; z < batch; z++)
            nb_sgemm(ta, tb, M, N, K, A + z * sa, lda, B + z * sb, ldb, beta, C + z * sc, ldc);
        return;
    }
    for (int64_t z = 0; z < batch; z++)
        nb_sgemm(ta, tb, M, N, K, A + z * sa, lda, B + z * sb, ldb, beta, C + z * sc, ldc);
}
