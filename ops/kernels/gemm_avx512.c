/* gemm_avx512.c: AVX-512 SGEMM micro-kernel (14 x 32 register tile) and its blocked driver. */
#include "gemm.h"

#include <immintrin.h>

#define MR 14
#define NR 32

#define REP14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* The 14 x 32 tile: 28 zmm accumulators, 2 zmm of B per k, A broadcast straight from memory.
   A(i, k) is A[off[i] + k * cs] (A is read in place). ROWS (<= 14) and NV (1 or 2 vectors of
   16 columns) are compile-time, so edge tiles skip the rows and columns they do not need; every
   element is still one fma chain over k, the same in any variant. */
static inline __attribute__((always_inline)) void kbody(const int ROWS, const int NV, int64_t kc, const float *A,
                                                        const int64_t *off, int64_t cs, const float *B, float *C,
                                                        int64_t ldc, int mr, int nr, int acc) {
#define DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    REP14(DECL)
#undef DECL
    /* C is touched once per K block, often from L3 or DRAM: start fetching it now */
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        if (NV == 2) _mm_prefetch((const char *)(C + i * ldc + 31), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(B), b1 = NV == 2 ? _mm512_load_ps(B + 16) : b0;
#define FMA(i)                                                                          \
    if (i < ROWS) {                                                                     \
        __m512 a = _mm512_set1_ps(A[off[i]]);                                           \
        c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);                                      \
        if (NV == 2) c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);                         \
    }
        REP14(FMA)
#undef FMA
        A += cs;
        B += NR;
    }
    /* C = acc ? C + sum : sum, columns past nr masked off */
    __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    __mmask16 m1 = nr >= 32 ? 0xffff : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
#define ST(i)                                                                           \
    if (i < ROWS && i < mr) {                                                           \
        float *c = C + (int64_t)i * ldc;                                                \
        if (acc) c##i##0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), c##i##0);        \
        _mm512_mask_storeu_ps(c, m0, c##i##0);                                          \
        if (NV == 2) {                                                                  \
            if (acc) c##i##1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), c##i##1); \
            _mm512_mask_storeu_ps(c + 16, m1, c##i##1);                                 \
        }                                                                               \
    }
    REP14(ST)
#undef ST
}

/* Tiles at most 8 columns wide (an N edge, or N = 8 like attention's P V at head dim 8): ymm
   FMAs, which Zen 4 issues two per cycle against one zmm. Same fma chain per element. */
static inline __attribute__((always_inline)) void kbody8(const int ROWS, int64_t kc, const float *A,
                                                         const int64_t *off, int64_t cs, const float *B, float *C,
                                                         int64_t ldc, int mr, int nr, int acc) {
#define DECL(i) __m256 c##i = _mm256_setzero_ps();
    REP14(DECL)
#undef DECL
    for (int i = 0; i < mr; i++) _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
    for (int64_t k = 0; k < kc; k++) {
        __m256 b = _mm256_load_ps(B);
#define FMA(i)                                                                          \
    if (i < ROWS) c##i = _mm256_fmadd_ps(_mm256_broadcast_ss(A + off[i]), b, c##i);
        REP14(FMA)
#undef FMA
        A += cs;
        B += NR;
    }
    __mmask8 m = (__mmask8)((1u << nr) - 1);
#define ST(i)                                                                           \
    if (i < ROWS && i < mr) {                                                           \
        float *c = C + (int64_t)i * ldc;                                                \
        if (acc) c##i = _mm256_add_ps(_mm256_maskz_loadu_ps(m, c), c##i);               \
        _mm256_mask_storeu_ps(c, m, c##i);                                              \
    }
    REP14(ST)
#undef ST
}

/* One tile: picks the smallest variant that covers mr x nr. */
static __attribute__((noinline)) void kernel(int64_t kc, const float *A, int64_t rs, int64_t cs, const float *B,
                                             float *C, int64_t ldc, int mr, int nr, int acc) {
    int64_t off[MR]; /* rows past mr repeat the last row (their sums are not stored) */
    for (int i = 0; i < MR; i++) off[i] = (int64_t)(i < mr ? i : mr - 1) * rs;
    if (nr <= 8) {
        if (mr > 8) kbody8(14, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else if (mr > 4) kbody8(8, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else kbody8(4, kc, A, off, cs, B, C, ldc, mr, nr, acc);
    } else if (nr > 16) {
        if (mr > 8) kbody(14, 2, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else if (mr > 4) kbody(8, 2, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else kbody(4, 2, kc, A, off, cs, B, C, ldc, mr, nr, acc);
    } else {
        if (mr > 8) kbody(14, 1, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else if (mr > 4) kbody(8, 1, kc, A, off, cs, B, C, ldc, mr, nr, acc);
        else kbody(4, 1, kc, A, off, cs, B, C, ldc, mr, nr, acc);
    }
}

/* In-register 16 x 16 transpose: r[i][j] -> r[j][i]. */
static inline __attribute__((always_inline)) void tr16(__m512 *r) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Transposed packing of one NR panel: dst[k * 32 + j] = B[j * ldb + k] for j < nr (zero past nr),
   16 x 16 blocks through registers. */
#define HAVE_PACK_BT_PANEL 1
static void pack_bt_panel(int64_t kc, int nr, const float *B, int64_t ldb, float *dst) {
    for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        int kn = kc - k0 < 16 ? (int)(kc - k0) : 16;
        __mmask16 km = kn == 16 ? 0xffff : (__mmask16)((1u << kn) - 1);
        for (int h = 0; h < 2; h++) {
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = h * 16 + j < nr ? _mm512_maskz_loadu_ps(km, B + (h * 16 + j) * ldb + k0) : _mm512_setzero_ps();
            tr16(r);
            for (int k = 0; k < kn; k++) _mm512_store_ps(dst + (k0 + k) * NR + h * 16, r[k]);
        }
    }
}

#include "gemm_tile.h"

static inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }

/* One row of C from B stored N x K: dot products over contiguous k, four columns at a time.
   Each sum is 16 lane partials (k mod 16, in k order) then a fixed reduction tree. */
static void gemv_dot(int64_t N, int64_t K, const float *a, const float *B, int64_t ldb, float beta, float *c) {
    for (int64_t n = 0; n < N; n += 4) {
        int nn = (int)imin(4, N - n);
        const float *b0 = B + n * ldb, *b1 = B + (n + (nn > 1)) * ldb, *b2 = B + (n + (nn > 2) * 2) * ldb,
                    *b3 = B + (n + (nn > 3) * 3) * ldb;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t k = 0; k < K; k += 16) {
            __mmask16 m = tail_mask(K - k);
            __m512 x = _mm512_maskz_loadu_ps(m, a + k);
            s0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, b0 + k), s0);
            s1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, b1 + k), s1);
            s2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, b2 + k), s2);
            s3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, b3 + k), s3);
        }
        float r[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1), _mm512_reduce_add_ps(s2),
                      _mm512_reduce_add_ps(s3)};
        for (int j = 0; j < nn; j++) c[n + j] = beta != 0.0f ? c[n + j] + r[j] : r[j];
    }
}

/* One row of C from B stored K x N: c[n] = sum_k a(k) B[k, n], an fma chain in k order,
   64 columns at a time. a(k) is a[k * as]. */
static void gemv_axpy(int64_t N, int64_t K, const float *a, int64_t as, const float *B, int64_t ldb, float beta,
                      float *c) {
    for (int64_t n = 0; n < N; n += 64) {
        __mmask16 m0 = tail_mask(N - n), m1 = tail_mask(N - n - 16 > 0 ? N - n - 16 : 0),
                  m2 = tail_mask(N - n - 32 > 0 ? N - n - 32 : 0), m3 = tail_mask(N - n - 48 > 0 ? N - n - 48 : 0);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        const float *b = B + n;
        for (int64_t k = 0; k < K; k++, b += ldb) {
            __m512 x = _mm512_set1_ps(a[k * as]);
            s0 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m0, b), s0);
            s1 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m1, b + 16), s1);
            s2 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m2, b + 32), s2);
            s3 = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m3, b + 48), s3);
        }
        if (beta != 0.0f) {
            s0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c + n), s0);
            s1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + n + 16), s1);
            s2 = _mm512_add_ps(_mm512_maskz_loadu_ps(m2, c + n + 32), s2);
            s3 = _mm512_add_ps(_mm512_maskz_loadu_ps(m3, c + n + 48), s3);
        }
        _mm512_mask_storeu_ps(c + n, m0, s0);
        _mm512_mask_storeu_ps(c + n + 16, m1, s1);
        _mm512_mask_storeu_ps(c + n + 32, m2, s2);
        _mm512_mask_storeu_ps(c + n + 48, m3, s3);
    }
}

int nb_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemm_blocked(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

int nb_sgemv_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemv_rows(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
