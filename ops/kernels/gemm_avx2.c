/* gemm_avx2.c: AVX2+FMA SGEMM micro-kernel (6 x 16 register tile) and its blocked driver. */
#include "gemm.h"

#include <immintrin.h>

#define MR 6
#define NR 16

#define REP6(X) X(0) X(1) X(2) X(3) X(4) X(5)

/* The 6 x 16 tile: 12 ymm accumulators, 2 ymm of B per k, A broadcast from memory.
   A(i, k) is A[off[i] + k * cs]; ROWS and NV (vectors of 8 columns) are compile-time so edge
   tiles skip work (see gemm_avx512.c). */
static inline __attribute__((always_inline)) void kbody(const int ROWS, const int NV, int64_t kc, const float *A,
                                                        const int64_t *off, int64_t cs, const float *B, float *C,
                                                        int64_t ldc, int mr, int nr, int acc) {
#define DECL(i) __m256 c##i##0 = _mm256_setzero_ps(), c##i##1 = _mm256_setzero_ps();
    REP6(DECL)
#undef DECL
    for (int i = 0; i < mr; i++) { /* C is touched once per K block: start fetching it now */
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        if (NV == 2) _mm_prefetch((const char *)(C + i * ldc + 15), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(B), b1 = NV == 2 ? _mm256_load_ps(B + 8) : b0;
#define FMA(i)                                                                          \
    if (i < ROWS) {                                                                     \
        __m256 a = _mm256_broadcast_ss(A + off[i]);                                     \
        c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);                                      \
        if (NV == 2) c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);                         \
    }
        REP6(FMA)
#undef FMA
        A += cs;
        B += NR;
    }
    if (nr == NR) {
#define ST(i)                                                                           \
    if (i < ROWS && i < mr) {                                                           \
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
    if (i < ROWS && i < mr) {                                                           \
        float *c = C + (int64_t)i * ldc;                                                \
        if (acc) c##i##0 = _mm256_add_ps(_mm256_maskload_ps(c, m0), c##i##0);           \
        _mm256_maskstore_ps(c, m0, c##i##0);                                            \
        if (NV == 2) {                                                                  \
            if (acc) c##i##1 = _mm256_add_ps(_mm256_maskload_ps(c + 8, m1), c##i##1);   \
            _mm256_maskstore_ps(c + 8, m1, c##i##1);                                    \
        }                                                                               \
    }
        REP6(ST)
#undef ST
    }
}

/* One tile: picks the smallest variant that covers mr x nr. */
static __attribute__((noinline)) void kernel(int64_t kc, const float *A, int64_t rs, int64_t cs, const float *B,
                                             float *C, int64_t ldc, int mr, int nr, int acc) {
    int64_t off[MR]; /* rows past mr repeat the last row (their sums are not stored) */
    for (int i = 0; i < MR; i++) off[i] = (int64_t)(i < mr ? i : mr - 1) * rs;
    if (nr > 8) {
        if (mr > 3) kbody(6, 2, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else kbody(3, 2, kc, A, off, cs, B, C, ldc, mr, nr, acc);
    } else {
        if (mr > 3) kbody(6, 1, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else kbody(3, 1, kc, A, off, cs, B, C, ldc, mr, nr, acc);
    }
}

#include "gemm_tile.h"

/* Lane mask for the first n (< 8 means a tail) of 8 floats. */
static inline __m256i tail_mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n > 8 ? 8 : n < 0 ? 0 : n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hsum(__m256 v) { /* fixed reduction tree */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One row of C from B stored N x K: dot products over contiguous k, four columns at a time
   (8 lane partials per sum, k mod 8 in k order, then a fixed reduction tree). */
static void gemv_dot(int64_t N, int64_t K, const float *a, const float *B, int64_t ldb, float beta, float *c) {
    for (int64_t n = 0; n < N; n += 4) {
        int nn = (int)imin(4, N - n);
        const float *b0 = B + n * ldb, *b1 = B + (n + (nn > 1)) * ldb, *b2 = B + (n + (nn > 2) * 2) * ldb,
                    *b3 = B + (n + (nn > 3) * 3) * ldb;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) {
            __m256 x = _mm256_loadu_ps(a + k);
            s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0 + k), s0);
            s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1 + k), s1);
            s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b2 + k), s2);
            s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b3 + k), s3);
        }
        if (k < K) {
            __m256i m = tail_mask(K - k);
            __m256 x = _mm256_maskload_ps(a + k, m);
            s0 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b0 + k, m), s0);
            s1 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b1 + k, m), s1);
            s2 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b2 + k, m), s2);
            s3 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b3 + k, m), s3);
        }
        float r[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
        for (int j = 0; j < nn; j++) c[n + j] = beta != 0.0f ? c[n + j] + r[j] : r[j];
    }
}

/* One row of C from B stored K x N: c[n] = sum_k a(k) B[k, n] (fma chain in k order), 32
   columns at a time. a(k) is a[k * as]. */
static void gemv_axpy(int64_t N, int64_t K, const float *a, int64_t as, const float *B, int64_t ldb, float beta,
                      float *c) {
    for (int64_t n = 0; n < N; n += 32) {
        __m256i m0 = tail_mask(N - n), m1 = tail_mask(N - n - 8), m2 = tail_mask(N - n - 16),
                m3 = tail_mask(N - n - 24);
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        const float *b = B + n;
        for (int64_t k = 0; k < K; k++, b += ldb) {
            __m256 x = _mm256_set1_ps(a[k * as]);
            s0 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b, m0), s0);
            s1 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b + 8, m1), s1);
            s2 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b + 16, m2), s2);
            s3 = _mm256_fmadd_ps(x, _mm256_maskload_ps(b + 24, m3), s3);
        }
        if (beta != 0.0f) {
            s0 = _mm256_add_ps(_mm256_maskload_ps(c + n, m0), s0);
            s1 = _mm256_add_ps(_mm256_maskload_ps(c + n + 8, m1), s1);
            s2 = _mm256_add_ps(_mm256_maskload_ps(c + n + 16, m2), s2);
            s3 = _mm256_add_ps(_mm256_maskload_ps(c + n + 24, m3), s3);
        }
        _mm256_maskstore_ps(c + n, m0, s0);
        _mm256_maskstore_ps(c + n + 8, m1, s1);
        _mm256_maskstore_ps(c + n + 16, m2, s2);
        _mm256_maskstore_ps(c + n + 24, m3, s3);
    }
}

int nb_sgemm_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemm_blocked(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

int nb_sgemv_avx2(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemv_rows(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
