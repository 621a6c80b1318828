/* gemm_avx512.c: AVX-512 SGEMM micro-kernel (14 x 32 register tile) and its blocked driver. */
#include "gemm.h"

#include <immintrin.h>

#define MR 14
#define NR 32

#define REP14(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13)

/* The 14 x 32 tile: 28 zmm accumulators, 2 zmm of B per k, A broadcast straight from memory.
   A(i, k) is A[off[i] + k * cs]; off is a constant table for packed A (folded by the compiler)
   and row offsets for A read in place. */
static inline __attribute__((always_inline)) void kbody(int64_t kc, const float *A, const int64_t *off, int64_t cs,
                                                        const float *B, float *C, int64_t ldc, int mr, int nr,
                                                        int acc) {
#define DECL(i) __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps();
    REP14(DECL)
#undef DECL
    /* C is touched once per K block, often from L3 or DRAM: start fetching it now */
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(C + i * ldc + 31), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
#define FMA(i)                                                                          \
    {                                                                                   \
        __m512 a = _mm512_set1_ps(A[off[i]]);                                           \
        c##i##0 = _mm512_fmadd_ps(a, b0, c##i##0);                                      \
        c##i##1 = _mm512_fmadd_ps(a, b1, c##i##1);                                      \
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
    if (i < mr) {                                                                       \
        float *c = C + (int64_t)i * ldc;                                                \
        if (acc) {                                                                      \
            c##i##0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), c##i##0);             \
            c##i##1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), c##i##1);        \
        }                                                                               \
        _mm512_mask_storeu_ps(c, m0, c##i##0);                                          \
        _mm512_mask_storeu_ps(c + 16, m1, c##i##1);                                     \
    }
    REP14(ST)
#undef ST
}

static void kernel_packed(int64_t kc, const float *A, const float *B, float *C, int64_t ldc, int mr, int nr,
                          int acc) {
    static const int64_t off[MR] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
    kbody(kc, A, off, MR, B, C, ldc, mr, nr, acc);
}

static void kernel_strided(int64_t kc, const float *A, int64_t rs, int64_t cs, const float *B, float *C,
                           int64_t ldc, int mr, int nr, int acc) {
    int64_t off[MR]; /* rows past mr repeat the last row (their sums are not stored) */
    for (int i = 0; i < MR; i++) off[i] = (int64_t)(i < mr ? i : mr - 1) * rs;
    kbody(kc, A, off, cs, B, C, ldc, mr, nr, acc);
}

#include "gemm_tile.h"

int nb_sgemm_avx512(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc) {
    return gemm_blocked(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}
