/* gemm.c: scalar reference GEMM and the dispatcher. */
#include "gemm.h"

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

void nb_sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
              int64_t ldb, float beta, float *C, int64_t ldc) {
    /* TODO(speed issue): packed AVX-512/AVX2 micro-kernels; for now rows in parallel */
#pragma omp parallel for schedule(static) if (M * N * K > 32768)
    for (int64_t m = 0; m < M; m++)
        nb_sgemm_ref(ta, tb, 1, N, K, ta ? A + m : A + m * lda, lda, B, ldb, beta, C + m * ldc, ldc);
}
