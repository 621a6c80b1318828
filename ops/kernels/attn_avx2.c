/* attn_avx2.c: AVX2+FMA attention kernels (8 lanes, 16 registers: tiles of up to 12 accumulators). */
#include "attn.h"

#include <immintrin.h>
#include <math.h>

#define VW 8
#define VF __m256
#define VM __m256i
#define IOTA _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
#define vfull() _mm256_set1_epi32(-1)
#define vfirst(r) _mm256_cmpgt_epi32(_mm256_set1_epi32((int)((r) < VW ? (r) : VW)), IOTA)
#define vfrom(c) _mm256_cmpgt_epi32(IOTA, _mm256_set1_epi32((int)((c) < 0 ? -1 : (c) > VW ? VW : (c)-1)))
#define vload(p) _mm256_loadu_ps(p)
#define vloadm(p, m) _mm256_maskload_ps((p), (m))
#define vstore(p, v) _mm256_storeu_ps((p), (v))
#define vstorem(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#define vbcast(p) _mm256_broadcast_ss(p)
#define vset1(x) _mm256_set1_ps(x)
#define vzero() _mm256_setzero_ps()
#define vadd(a, b) _mm256_add_ps((a), (b))
#define vsub(a, b) _mm256_sub_ps((a), (b))
#define vmul(a, b) _mm256_mul_ps((a), (b))
#define vmax(a, b) _mm256_max_ps((a), (b))
#define vmin(a, b) _mm256_min_ps((a), (b))
#define vfma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define vfnma(a, b, c) _mm256_fnmadd_ps((a), (b), (c))
#define vmaxm(m, a, b) _mm256_blendv_ps((a), _mm256_max_ps((a), (b)), _mm256_castsi256_ps(m))
#define vzerom(m, a) _mm256_and_ps(_mm256_castsi256_ps(m), (a))
#define vround(x) _mm256_round_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2mul(p, n) _mm256_mul_ps((p), _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)))
#define MR1 12
#define MR2 6
#define MR3 4
#define MR4 3

#include "attn_x86.h"

const nb_attn_kernels nb_attn_avx2 = {"avx2", VW, mm, softmax, colscale, probs, dscores, load_t, vexp_n, pv_l, max_exp};
