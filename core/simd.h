/* simd.h: run-time choice of the SIMD level (cpuid, capped by the build and by NB_SIMD). */
#ifndef NB_SIMD_H
#define NB_SIMD_H

typedef enum nb_simd_level {
    NB_SIMD_SCALAR = 0,
    NB_SIMD_AVX2 = 1,   /* AVX2 + FMA + F16C */
    NB_SIMD_AVX512 = 2, /* AVX-512 F/BW/VL (+VNNI, +BF16 reported separately) */
} nb_simd_level;

/* What the CPU supports (cpuid + OS xsave state), capped by what this build compiled in. */
nb_simd_level nb_simd_detect(void);
/* The level kernels use: detect(), lowered by the environment variable NB_SIMD=scalar|avx2|avx512
   (read once) or by nb_simd_force(). Asking for more than the CPU has gives the CPU's level. */
nb_simd_level nb_simd_active(void);
/* Force a level (tests compare twins this way); returns the level really set. */
nb_simd_level nb_simd_force(nb_simd_level l);
int nb_simd_has_vnni(void); /* AVX512-VNNI available and active level is AVX512 */
const char *nb_simd_name(nb_simd_level l);

/* OpenMP thread count (1 when built without OpenMP). */
void nb_threads_set(int n);
int nb_threads_get(void);

#endif
