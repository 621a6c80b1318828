/* qdot_vbmi_avx512.c: nb_matvec_i4_lanes for AVX-512 VNNI CPUs that also have AVX512-VBMI (Ice
   Lake and later, Zen 4): the int4 codes are unpacked in three instructions instead of four
   (qdot_lanes_avx512.h). Chosen at run time (nb_simd_has_vbmi); same bits as every twin. */
#pragma GCC target("avx512vbmi")
#include <immintrin.h>

#include "qdot.h"

#define NB_LANES_VBMI 1
#include "qdot_lanes_avx512.h"

void nb_matvec_i4_lanes_vbmi_avx512(int64_t rows, int64_t n, int64_t group, const uint8_t *w, const float *ws,
                                    const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    matvec_lanes(1, rows, n, group, w, ws, x, xs, lsum, y);
}
