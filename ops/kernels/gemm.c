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

/* Below this many multiply-adds one thread is faster than waking a second (~20 us of work). */
#define GEMM_MIN_PARALLEL_WORK ((int64_t)1 << 21)

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
#if NB_HAVE_AVX512
    if (!f && lvl >= NB_SIMD_AVX512) f = nb_sgemm_avx512, mr = 14, nr = 32;
#endif
#if NB_HAVE_AVX2
    if (!f && lvl >= NB_SIMD_AVX2) f = nb_sgemm_avx2, mr = 6, nr = 16;
#endif
    (void)lvl;
    int nt = threads_for(M, N, K);
    if (!f) { /* scalar: the reference, rows in parallel */
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
        for (int64_t m = 0; m < M; m++)
            nb_sgemm_ref(ta, tb, 1, N, K, ta ? A + m : A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
        return;
    }
    /* Split C into nt bands of whole register tiles, along M unless M has too few tiles. */
    int64_t tm = (M + mr - 1) / mr, tn = (N + nr - 1) / nr;
    int split_m = tm >= tn || tm >= 4 * (int64_t)nt;
    int64_t tiles = split_m ? tm : tn;
    if (nt > tiles) nt = (int)tiles;
    if (nt <= 1) {
        region(f, ta, tb, 0, M, 0, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
#else
        int64_t t = 0, n = 1;
#endif
        int64_t t0 = tiles * t / n, t1 = tiles * (t + 1) / n;
        if (split_m)
            region(f, ta, tb, t0 * mr, t1 * mr < M ? t1 * mr : M, 0, N, K, A, lda, B, ldb, beta, C, ldc);
        else
            region(f, ta, tb, 0, M, t0 * nr, t1 * nr < N ? t1 * nr : N, K, A, lda, B, ldb, beta, C, ldc);
    }
}
