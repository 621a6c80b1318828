/* gemm_avx2.c: AVX2+FMA SGEMM micro-kernel (6 x 16 register tile) and its blocked driver. */
#include "gemm.h"

#include <immintrin.h>

#define MR 6
#define NR 16

#define REP6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* The 6 x 16 tile: 12 ymm accumulators, 2 ymm of B per k, A broadcast from memory.
   A(i, k) is A[off[i] + k * cs] (see gemm_avx512.c). */
static inline __attribute__((always_inline)) void kbody(int64_t kc, const float *A, const int64_t *off, int64_t cs,
                                                        const float *B, float *C, int64_t ldc, int mr, int nr,
                                                        int acc) {
#define DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
    REP6(DECL)
#undef DECL
    for (int i = 0; i < mr; i++) { /* C is touched once per K block: start fetching it now */
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + 15), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8);
#define FMA(i)                                                                          \
    {                                                                                   \
        __m256 a = _mm256_broadcast_ss(A + off[i]);                                     \
        c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);                                      \
        c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);                                      \
    }
        REP6(FMA)
#undef FMA
        A += cs;
        B += NR;
    }
    if (nr == NR) {
#define ST(i)                                                                           \
    if (i < mr) {                                                                       \
        float *c = C + (int64_t)i * ldc;                                                \
        if (acc) {                                                                      \
            c##i##0 = _mm256_add_ps(_mm256_loadu_ps(c), c##i##0);                       \
            c##i##1 = _mm256_add_ps(_mm256_loadu_ps(c + 8), c##i##1);                   \
        }                                                                               \
        _mm256_storeu_ps(c, c##i##0);                                                   \
        _mm256_storeu_ps(c + 8, c##i##1);                                               \
    }
        REP6(ST)
#undef ST
    } else { /* columns past nr masked off */
        __m256i n = _mm256_set1_epi32(nr);
        __m256i m0 = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i m1 = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
#define ST(i)                                                                           \
    if (i < mr) {                                                                       \
        float *c = C + (int64_t)i * ldc;                                                \
        if (acc) {                                                                      \
            c##i##0 = _mm256_add_ps(_mm256_maskload_ps(c, m0), c##i##0);                \
            c##i##1 = _mm256_add_ps(_mm256_maskload_ps(c + 8, m1), c##i##1);            \
        }                                                                               \
        _mm256_maskstore_ps(c, m0, c##i##0);                                            \
        _mm256_maskstore_ps(c + 8, m1, c##i##1);                                        \
    }
        REP6(ST)
#undef ST
    }
}

static void kernel_packed(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int mr, int nr,
                          int acc) {
    static const int64_t off[MR] = {0, 1, 2, 3, 4, 5};
    kbody(kc, A, off, MR, B, C, ldc, mr, nr, acc);
}

static void kernel_strided(int64_t kc, const float *A, int64_t rs, int64_t cs, const float *B, float *C,
                           int64_t ldc, int mr, int nr, int acc) {
    int64_t off[MR]; /* rows past mr repeat the last row (their sums are not stored) */
    for (int i = 0; i < MR; i++) off[i] = (int64_t)(i < mr ? i : mr - 1) * rs;
    kbody(kc, A, off, cs, B, C, ldc, mr, nr, acc);
}

#include "gemm_tile.h"

int nb_sgemm_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemm_blocked(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
