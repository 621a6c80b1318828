/* simd.c: cpuid detection, NB_SIMD override and the thread count. */
#include "simd.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static int cpu_vnni;

static nb_simd_level cpu_level(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return NB_SIMD_SCALAR;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(osxsave && avx)) return NB_SIMD_SCALAR;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    int ymm_os = (lo & 6) == 6, zmm_os = (lo & 0xe6) == 0xe6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return NB_SIMD_SCALAR;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    if (!(ymm_os && avx2 && fma && f16c)) return NB_SIMD_SCALAR;
    if (zmm_os && avx512f && avx512bw && avx512vl) {
        cpu_vnni = vnni;
        return NB_SIMD_AVX512;
    }
    return NB_SIMD_AVX2;
#else
    return NB_SIMD_SCALAR;
#endif
}

nb_simd_level nb_simd_detect(void) {
    nb_simd_level l = cpu_level();
#if !NB_HAVE_AVX512
    if (l > NB_SIMD_AVX2) l = NB_SIMD_AVX2;
#endif
#if !NB_HAVE_AVX2
    l = NB_SIMD_SCALAR;
#endif
    return l;
}

static int active = -1;

nb_simd_level nb_simd_force(nb_simd_level l) {
    nb_simd_level max = nb_simd_detect();
    active = l > max ? max : l;
    return (nb_simd_level)active;
}

nb_simd_level nb_simd_active(void) {
    if (active < 0) {
        nb_simd_level l = nb_simd_detect();
        const char *e = getenv("NB_SIMD");
        if (e && !strcmp(e, "scalar")) l = NB_SIMD_SCALAR;
        else if (e && !strcmp(e, "avx2") && l > NB_SIMD_AVX2) l = NB_SIMD_AVX2;
        active = l;
    }
    return (nb_simd_level)active;
}

int nb_simd_has_vnni(void) {
    return nb_simd_active() == NB_SIMD_AVX512 && cpu_vnni;
}

const char *nb_simd_name(nb_simd_level l) {
    return l == NB_SIMD_AVX512 ? "avx512" : l == NB_SIMD_AVX2 ? "avx2" : "scalar";
}

void nb_threads_set(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

int nb_threads_get(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
