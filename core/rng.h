/* rng.h: counter-based random numbers. A draw is a pure function of (seed, stream, counter), so
   any point of a run can be reproduced from three integers (saved in checkpoints). */
#ifndef NB_RNG_H
#define NB_RNG_H

#include <stdint.h>

typedef struct nb_rng {
    uint64_t seed;
    uint64_t stream;  /* independent sequences: data sampling, init, dropout, generation... */
    uint64_t counter; /* next draw */
} nb_rng;

/* The generator itself: a keyed mix (two rounds of splitmix64-style finalisers over the
   counter, keyed by seed and stream). */
uint64_t nb_rng_hash(uint64_t seed, uint64_t stream, uint64_t counter);
nb_rng nb_rng_make(uint64_t seed, uint64_t stream);
uint64_t nb_rng_u64(nb_rng *r);
uint32_t nb_rng_u32(nb_rng *r);
/* Uniform in [0, 1) with 24 bits. */
float nb_rng_uniform(nb_rng *r);
/* Uniform integer in [0, n). */
uint64_t nb_rng_below(nb_rng *r, uint64_t n);
/* Standard normal (Box-Muller, consumes two draws). */
float nb_rng_normal(nb_rng *r);

#endif
