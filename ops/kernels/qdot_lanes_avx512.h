/* qdot_lanes_avx512.h: the lane-ordered matrix x vector kernels (qdot.h, nb_matvec_*_lanes),
   included by qdot_avx512.c (NB_LANES_VBMI 0) and by qdot_vbmi_avx512.c (NB_LANES_VBMI 1: the
   int4 unpacking with AVX512-VBMI's vpmultishiftqb, for the CPUs that have it). The same bits
   either way. */
#ifndef NB_QDOT_LANES_AVX512_H
#define NB_QDOT_LANES_AVX512_H
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "qdot.h"

/* ---- matrix x vector, lane order (see nb_matvec_i8_lanes in qdot.h) ----
   u8 x s8 with an offset: vpdpbusd multiplies unsigned weights w + off (int8: w ^ 0x80 = w + 128;
   int4: nibble ^ 8 = w + 8) by the signed activations, and the accumulator starts at
   -off * (lane sums of the activations), so each int32 lane ends at exactly sum w x. Four rows run
   side by side (independent float chains); every row keeps the scalar twin's order. */

#define NB_ALWAYS static inline __attribute__((always_inline))
/* The row kernels read four rows side by side, which the hardware prefetchers follow poorly
   once the matrix comes from DRAM (measured: int8 at 10 GB/s vs 30 for one fp32 row stream).
   Each step prefetches, into L2, the same place NB_LANES_PF rows further on: 2x from DRAM, but
   3-5 % slower when the matrix sits in the caches, so only when nb_qdot_prefetch() says the
   weights stream from memory (pf, a constant in each instantiation). */
#define NB_LANES_PF 8

/* 64 weights from 64 int8 codes / 32 bytes of int4 codes, as unsigned w + off in element order */
NB_ALWAYS __m512i ld64_u(int i4, const uint8_t *w) {
    if (!i4) return _mm512_xor_si512(_mm512_loadu_si512(w), _mm512_set1_epi8((char)0x80));
#if NB_LANES_VBMI
    /* 4 packed bytes (8 codes) per qword, each code's nibble shifted to its byte (vpmultishiftqb),
       then (b ^ 8) & 15: three instructions */
    __m512i q = _mm512_cvtepu32_epi64(_mm256_loadu_si256((const __m256i *)w));
    __m512i b = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x1c1814100c080400LL), q);
    return _mm512_ternarylogic_epi32(b, _mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x08), 0x48); /* (a^c)&b */
#else
    __m512i b = _mm512_xor_si512(_mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)w)), _mm512_set1_epi16(0x88));
    return _mm512_ternarylogic_epi32(b, _mm512_slli_epi16(b, 4), _mm512_set1_epi16(0x0f0f), 0xa8); /* (a|b)&c */
#endif
}
NB_ALWAYS __m256i ld32_u(int i4, const uint8_t *w) {
    if (!i4) return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)w), _mm256_set1_epi8((char)0x80));
    __m256i b = _mm256_xor_si256(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)w)), _mm256_set1_epi16(0x88));
    return _mm256_ternarylogic_epi32(b, _mm256_slli_epi16(b, 4), _mm256_set1_epi16(0x0f0f), 0xa8);
}

/* the scalar twins' tree over 8 lanes, in registers: (j, j+4), (j, j+2), (0, 1) */
NB_ALWAYS float tree8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 b = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(b, _mm_shuffle_ps(b, b, 1)));
}

/* tree8 of four rows at once, the same adds: a_r = lo + hi halves (j, j+4); the four a_r
   transposed so that column k holds lane k of every row; then (0 + 2) + (1 + 3), which is
   tree8's (j, j+2) then (0, 1) */
NB_ALWAYS __m128 tree8_x4(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
    __m128 a0 = _mm_add_ps(_mm256_castps256_ps128(v0), _mm256_extractf128_ps(v0, 1));
    __m128 a1 = _mm_add_ps(_mm256_castps256_ps128(v1), _mm256_extractf128_ps(v1, 1));
    __m128 a2 = _mm_add_ps(_mm256_castps256_ps128(v2), _mm256_extractf128_ps(v2, 1));
    __m128 a3 = _mm_add_ps(_mm256_castps256_ps128(v3), _mm256_extractf128_ps(v3, 1));
    _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
    return _mm_add_ps(_mm_add_ps(a0, a2), _mm_add_ps(a1, a3));
}

NB_ALWAYS void tree8_rows(const int R, const __m256 *acc, float *y) {
    int r = 0;
    for (; r + 4 <= R; r += 4) _mm_storeu_ps(y + r, tree8_x4(acc[r], acc[r + 1], acc[r + 2], acc[r + 3]));
    for (; r < R; r++) y[r] = tree8(acc[r]);
}

/* R rows (R <= 8) of the group-32 case: two groups per 512-bit step. The per-group scales
   ws * xs (the twin's float product) are formed 16 groups at a time. */
NB_ALWAYS void rows_g32(const int R, const int i4, const int pf, int64_t ng, const uint8_t *w, size_t rb, const float *ws,
                        const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    const int sh = i4 ? 3 : 7; /* off = 8 or 128 */
    const size_t cb = i4 ? 16 : 32; /* bytes per 32 weights */
    __m256 acc[8];
    float sc[8][16];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t g0 = 0; g0 < ng; g0 += 16) {
        const int64_t end = ng - g0 < 16 ? ng : g0 + 16;
        const __mmask16 m = end - g0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (end - g0)) - 1);
        const __m512 xsv = _mm512_maskz_loadu_ps(m, xs + g0);
        for (int r = 0; r < R; r++) _mm512_storeu_ps(sc[r], _mm512_mul_ps(_mm512_maskz_loadu_ps(m, ws + r * ng + g0), xsv));
        int64_t g = g0;
        for (; g + 2 <= end; g += 2) {
            const __m512i xv = _mm512_loadu_si512(x + g * 32);
            const __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(lsum + g * 8), sh));
            for (int r = 0; r < R; r++) {
                if (pf) _mm_prefetch((const char *)(w + r * rb + g * cb) + NB_LANES_PF * rb, _MM_HINT_T1);
                __m512 f = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(c, ld64_u(i4, w + r * rb + g * cb), xv));
                acc[r] = _mm256_fmadd_ps(_mm512_castps512_ps256(f), _mm256_set1_ps(sc[r][g - g0]), acc[r]);
                acc[r] = _mm256_fmadd_ps(_mm512_extractf32x8_ps(f, 1), _mm256_set1_ps(sc[r][g - g0 + 1]), acc[r]);
            }
        }
        if (g < end) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + g * 32));
            const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(lsum + g * 8)), sh));
            for (int r = 0; r < R; r++) {
                __m256 f = _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(c, ld32_u(i4, w + r * rb + g * cb), xv));
                acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(sc[r][g - g0]), acc[r]);
            }
        }
    }
    tree8_rows(R, acc, y);
}

/* R rows of a group of 64 or more (whole chunks of 32): int lanes over the group, one fma per group */
NB_ALWAYS void rows_gen(const int R, const int i4, const int pf, int64_t n, int64_t group, const uint8_t *w, size_t rb,
                        const float *ws, const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    const int sh = i4 ? 3 : 7;
    const int64_t ng = n / group;
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const int64_t g0 = g * group;
        const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(lsum + g * 8)), sh));
        __m512i s16[4];
        __m256i s8[4];
        for (int r = 0; r < R; r++) s16[r] = _mm512_setzero_si512(), s8[r] = c;
        int64_t j = 0;
        for (; j + 64 <= group; j += 64) {
            const __m512i xv = _mm512_loadu_si512(x + g0 + j);
            for (int r = 0; r < R; r++)
            {
                if (pf) _mm_prefetch((const char *)(w + r * rb + (i4 ? (g0 + j) / 2 : g0 + j)) + NB_LANES_PF * rb, _MM_HINT_T1);
                s16[r] = _mm512_dpbusd_epi32(s16[r], ld64_u(i4, w + r * rb + (i4 ? (g0 + j) / 2 : g0 + j)), xv);
            }
        }
        if (j < group) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + g0 + j));
            for (int r = 0; r < R; r++)
                s8[r] = _mm256_dpbusd_epi32(s8[r], ld32_u(i4, w + r * rb + (i4 ? (g0 + j) / 2 : g0 + j)), xv);
        }
        for (int r = 0; r < R; r++) {
            __m256i t = _mm256_add_epi32(s8[r], _mm256_add_epi32(_mm512_castsi512_si256(s16[r]), _mm512_extracti64x4_epi64(s16[r], 1)));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t), _mm256_set1_ps(ws[r * ng + g] * xs[g]), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r] = tree8(acc[r]);
}

NB_ALWAYS void matvec_lanes_pf(const int i4, const int pf, int64_t rows, int64_t n, int64_t group, const uint8_t *w,
                               const float *ws, const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    const size_t rb = i4 ? (size_t)n / 2 : (size_t)n;
    const int64_t ng = n / group;
    int64_t r = 0;
    if (group == 32) {
        for (; r + 8 <= rows; r += 8) rows_g32(8, i4, pf, ng, w + r * rb, rb, ws + r * ng, x, xs, lsum, y + r);
        for (; r + 4 <= rows; r += 4) rows_g32(4, i4, pf, ng, w + r * rb, rb, ws + r * ng, x, xs, lsum, y + r);
        for (; r < rows; r++) rows_g32(1, i4, pf, ng, w + r * rb, rb, ws + r * ng, x, xs, lsum, y + r);
    } else {
        /* int8 rows streamed from DRAM: one row at a time, a single stream the hardware prefetcher
           follows (26-29 GB/s against 18-19 for four side by side); int4 stays compute-bound */
        if (!(pf && !i4))
            for (; r + 4 <= rows; r += 4) rows_gen(4, i4, pf, n, group, w + r * rb, rb, ws + r * ng, x, xs, lsum, y + r);
        for (; r < rows; r++) rows_gen(1, i4, pf, n, group, w + r * rb, rb, ws + r * ng, x, xs, lsum, y + r);
    }
}

NB_ALWAYS void matvec_lanes(const int i4, int64_t rows, int64_t n, int64_t group, const uint8_t *w, const float *ws,
                            const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    if (nb_qdot_prefetch()) matvec_lanes_pf(i4, 1, rows, n, group, w, ws, x, xs, lsum, y);
    else matvec_lanes_pf(i4, 0, rows, n, group, w, ws, x, xs, lsum, y);
}

#endif
