/* attn_avx512.c: AVX-512 attention kernels (16 lanes, 32 registers: tiles of up to 24 accumulators). */
#include "attn.h"

#include <immintrin.h>
#include <math.h>

#define VW 16
#define VF __m512
#define VM __mmask16
#define vfull() ((__mmask16)0xffff)
#define vfirst(r) ((r) >= VW ? (__mmask16)0xffff : (__mmask16)((1u << (r)) - 1u))
#define vfrom(c) ((c) <= 0 ? (__mmask16)0xffff : (c) >= VW ? (__mmask16)0 : (__mmask16)(0xffffu << (c)))
#define vload(p) _mm512_loadu_ps(p)
#define vloadm(p, m) _mm512_maskz_loadu_ps((m), (p))
#define vstore(p, v) _mm512_storeu_ps((p), (v))
#define vstorem(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define vbcast(p) _mm512_set1_ps(*(p))
#define vset1(x) _mm512_set1_ps(x)
#define vzero() _mm512_setzero_ps()
#define vadd(a, b) _mm512_add_ps((a), (b))
#define vsub(a, b) _mm512_sub_ps((a), (b))
#define vmul(a, b) _mm512_mul_ps((a), (b))
#define vmax(a, b) _mm512_max_ps((a), (b))
#define vmin(a, b) _mm512_min_ps((a), (b))
#define vfma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define vfnma(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define vmaxm(m, a, b) _mm512_mask_max_ps((a), (m), (a), (b))
#define vzerom(m, a) _mm512_maskz_mov_ps((m), (a))
#define vround(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vpow2mul(p, n) _mm512_scalef_ps((p), (n))
#define MR1 16
#define MR2 8
#define MR3 8
#define MR4 4

#include "attn_x86.h"

/* pv_l for heads of up to 8 columns over 8-lane vectors with AVX512-VL masks and 32 registers
   (half the lanes of a 16-lane vector would idle; two 8-lane FMAs issue a cycle): the same chains */
#define PW 8
#define PF __m256
#define PM __mmask8
#define pfull() ((__mmask8)0xff)
#define pfirst(r) ((r) >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (r)) - 1u))
#define pload(p) _mm256_loadu_ps(p)
#define ploadm(p, m) _mm256_maskz_loadu_ps((m), (p))
#define pstorem(p, m, v) _mm256_mask_storeu_ps((p), (m), (v))
#define pset1(x) _mm256_set1_ps(x)
#define pzero() _mm256_setzero_ps()
#define pfma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define PV_P(x) pv8_##x
#include "attn_pv_x86.h"

static void pv_l_any(int n, const float *const *e, int64_t nk, const float *const *v, int64_t ldv, int64_t H,
                     float *const *o, float *l) {
    (H <= 8 ? pv8_l : pv_l)(n, e, nk, v, ldv, H, o, l);
}

const nb_attn_kernels nb_attn_avx512 = {"avx512", VW, mm, softmax, colscale, probs, dscores, load_t, vexp_n, pv_l_any, max_exp};
