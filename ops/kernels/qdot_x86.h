/* qdot_x86.h: AVX2-level helpers shared by qdot_avx2.c and qdot_avx512.c (static inline; include
   only from files compiled with -mavx2 -mf16c). */
#ifndef NB_QDOT_X86_H
#define NB_QDOT_X86_H

#include <immintrin.h>
#include <stdint.h>

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* the scalar twins' tree over 8 lanes: (j, j+4), (j, j+2), (0, 1) */
static inline float hsum_f8(__m256 v) {
    float l[8];
    _mm256_storeu_ps(l, v);
    for (int w = 4; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

/* 16 bytes of Q4_0 codes -> 32 signed values: low nibbles are elements 0..15, high 16..31. */
static inline __m256i unpack_q4_0(const uint8_t *q) {
    __m128i v = _mm_loadu_si128((const __m128i *)q);
    __m128i m = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}

/* 16 bytes of nibble int4 codes -> 32 signed values in element order (2k low, 2k+1 high). */
static inline __m256i unpack_i4_v(__m128i v) {
    __m128i m = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    __m256i e = _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
    __m256i eight = _mm256_set1_epi8(8);
    return _mm256_sub_epi8(_mm256_xor_si256(e, eight), eight); /* 4-bit two's complement */
}
static inline __m256i unpack_i4(const uint8_t *q) { return unpack_i4_v(_mm_loadu_si128((const __m128i *)q)); }

#endif
