/* rng.c: counter-based generator. */
#include "rng.h"

#include <math.h>

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t nb_rng_hash(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t key = mix(seed * 0x9e3779b97f4a7c15ULL + mix(stream + 0x632be59bd9b4e019ULL));
    return mix(mix(counter + key) ^ (key >> 17));
}

nb_rng nb_rng_make(uint64_t seed, uint64_t stream) {
    nb_rng r = {seed, stream, 0};
    return r;
}

uint64_t nb_rng_u64(nb_rng *r) { return nb_rng_hash(r->seed, r->stream, r->counter++); }
uint32_t nb_rng_u32(nb_rng *r) { return (uint32_t)(nb_rng_u64(r) >> 32); }
float nb_rng_uniform(nb_rng *r) { return (float)(nb_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

uint64_t nb_rng_below(nb_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    /* rejection keeps it unbiased */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = nb_rng_u64(r);
    while (x >= lim);
    return x % n;
}

float nb_rng_normal(nb_rng *r) {
    double u1 = ((double)(nb_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(nb_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
