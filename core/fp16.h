/* fp16.h: IEEE half and bfloat16 conversions (round to nearest even), scalar and exact. */
#ifndef NB_FP16_H
#define NB_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t nb_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float nb_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* float -> half, round to nearest even, overflow to inf, NaN kept. */
static inline uint16_t nb_fp32_to_fp16(float f) {
    uint32_t x = nb_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0));
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (ax < 0x38800000) {                                  /* subnormal or zero in half */
        float a = nb_bits_f32(ax) + 0.5f;                   /* let the FPU round: 2^-24 units */
        return (uint16_t)(sign | (nb_f32_bits(a) - 0x3f000000));
    }
    uint32_t mant_odd = (ax >> 13) & 1;
    ax += 0xc8000fff + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return (uint16_t)(sign | (ax >> 13));
}

static inline float nb_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        float f = (float)mant * (1.0f / 16777216.0f); /* subnormal: mant * 2^-24 */
        return nb_bits_f32(nb_f32_bits(f) | sign);
    }
    if (exp == 31) return nb_bits_f32(sign | 0x7f800000 | (mant << 13));
    return nb_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Round a float to the nearest fp16 value (what storing and reloading an fp16 scale gives). */
static inline float nb_round_fp16(float f) { return nb_fp16_to_fp32(nb_fp32_to_fp16(f)); }

static inline uint16_t nb_fp32_to_bf16(float f) {
    uint32_t x = nb_f32_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
static inline float nb_bf16_to_fp32(uint16_t h) { return nb_bits_f32((uint32_t)h << 16); }

#endif
