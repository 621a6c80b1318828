/* qdot.c: scalar twins (the spec) of the integer dot kernels, and the dispatch to AVX2/AVX-512. */
#include "qdot.h"

#include <math.h>
#include <string.h>

#include "../../core/fp16.h"
#include "../../core/quant.h"
#include "../../core/simd.h"

/* SIMD twins (qdot_avx2.c, qdot_avx512.c) */
#if NB_HAVE_AVX2
int32_t nb_isum_i8_avx2(int64_t n, const int8_t *a, const int8_t *b);
float nb_dot_q8_0_q8_0_avx2(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x);
float nb_dot_q4_0_q8_0_avx2(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x);
float nb_dot_i4_i8_avx2(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                        const int8_t *x, const float *xs);
float nb_dot_f32_avx2(int64_t n, const float *w, const float *x);
float nb_dot_f16_avx2(int64_t n, const uint16_t *w, const float *x);
void nb_quantize_act_q8_0_avx2(const float *x, nb_block_q8_0 *y, int64_t n);
#endif
#if NB_HAVE_AVX512
int32_t nb_isum_i8_avx512(int64_t n, const int8_t *a, const int8_t *b);
float nb_dot_q8_0_q8_0_avx512(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x);
float nb_dot_q4_0_q8_0_avx512(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x);
float nb_dot_i4_i8_avx512(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                          const int8_t *x, const float *xs);
float nb_dot_f32_avx512(int64_t n, const float *w, const float *x);
void nb_matvec_qpack_avx512(int i4, const void *pk, int64_t rows, int64_t n, int64_t group, int64_t r0, int64_t nr,
                            const int8_t *x, const float *xs, const int32_t *lsum, float *y);
void nb_matvec_q8_0_avx512(int64_t rows, int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x,
                           const int32_t *lsum, float *y);
void nb_matvec_q4_0_avx512(int64_t rows, int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x,
                           const int32_t *lsum, float *y);
void nb_quantize_act_i8_avx512(const float *x, int8_t *q, float *s, int64_t n, int64_t group);
void nb_act_lanesums_avx512(int64_t n, int64_t group, const int8_t *x, int32_t *lsum);
#endif

/* ---- activation quantizers ---- */

/* float -> int8 for an already rounded code in [-127, 127]. A non-finite activation (the model
   diverged) would make the C conversion undefined: it becomes code 0 and the group's scale is
   made non-finite below, so the output is NaN rather than silently finite. */
static inline int8_t code_i8(float v) { return v >= -128.0f && v <= 127.0f ? (int8_t)v : 0; }

void nb_quantize_act_q8_0_ref(const float *x, nb_block_q8_0 *y, int64_t n) {
    for (int64_t b = 0; b < n / NB_QK; b++) {
        const float *xb = x + b * NB_QK;
        float amax = 0.0f;
        for (int j = 0; j < NB_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        int finite = 1;
        for (int j = 0; j < NB_QK; j++) finite &= isfinite(xb[j]);
        y[b].d = nb_fp32_to_fp16(finite ? amax / 127.0f : NAN);
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (int j = 0; j < NB_QK; j++) y[b].qs[j] = code_i8(nearbyintf(xb[j] * id)); /* half to even */
    }
}

void nb_quantize_act_i8_ref(const float *x, int8_t *q, float *s, int64_t n, int64_t group) {
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        float amax = 0.0f;
        int finite = 1;
        for (int64_t j = 0; j < len; j++) amax = fmaxf(amax, fabsf(x[g0 + j])), finite &= isfinite(x[g0 + j]);
        float sc = amax / 127.0f;
        s[g] = finite ? sc : NAN;
        /* the training fake-quant of int8 symmetric restricted activations: scale amax/127, then
           core/quant.h's rule itself (inv = 1/scale; code = clamp(rint(x * inv), -127, 127)) */
        float inv = finite ? nb_quant_inv(sc) : 0.0f;
        for (int64_t j = 0; j < len; j++) {
            float v = nb_quant_code(x[g0 + j], inv, 0.0f, -127.0f, 127.0f);
            q[g0 + j] = v == v ? (int8_t)v : 0; /* NaN input (non-finite group): code 0, scale NaN */
        }
    }
}

void nb_quantize_act_i8(const float *x, int8_t *q, float *s, int64_t n, int64_t group) {
#if NB_HAVE_AVX512
    if (nb_simd_active() >= NB_SIMD_AVX512) {
        nb_quantize_act_i8_avx512(x, q, s, n, group);
        return;
    }
#endif
    nb_quantize_act_i8_ref(x, q, s, n, group);
}

void nb_quantize_act_q8_0(const float *x, nb_block_q8_0 *y, int64_t n) {
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) {
        nb_quantize_act_q8_0_avx2(x, y, n);
        return;
    }
#endif
    nb_quantize_act_q8_0_ref(x, y, n);
}

/* ---- integer sums ---- */

int32_t nb_isum_i8_ref(int64_t n, const int8_t *a, const int8_t *b) {
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += (int32_t)a[i] * b[i];
    return s;
}

int32_t nb_isum_i8(int64_t n, const int8_t *a, const int8_t *b) {
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) return nb_isum_i8_avx512(n, a, b);
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_isum_i8_avx2(n, a, b);
#endif
    return nb_isum_i8_ref(n, a, b);
}

static int32_t isum_range(int64_t n, const int8_t *x) {
    int32_t s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

/* ---- block dots ---- */

/* 8 float lanes, lane k accumulating the int sums of products 4k..4k+3 of each 32-element chunk
   (what vpmaddubsw+vpmaddwd or vpdpbusd leave in a 256-bit register); then a fixed tree. */
static float hsum8(float *l) {
    for (int w = 4; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) l[j] += l[j + w];
    return l[0];
}

float nb_dot_q8_0_q8_0_ref(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x) {
    float lane[8] = {0};
    for (int64_t b = 0; b < n / NB_QK; b++) {
        float d = nb_fp16_to_fp32(w[b].d) * nb_fp16_to_fp32(x[b].d);
        for (int k = 0; k < 8; k++) {
            int32_t s = 0;
            for (int j = 4 * k; j < 4 * k + 4; j++) s += (int32_t)w[b].qs[j] * x[b].qs[j];
            lane[k] = fmaf((float)s, d, lane[k]);
        }
    }
    return hsum8(lane);
}

static inline int q4_0_elem(const nb_block_q4_0 *b, int j) {
    return (j < 16 ? b->qs[j] & 15 : b->qs[j - 16] >> 4) - 8;
}

float nb_dot_q4_0_q8_0_ref(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x) {
    float lane[8] = {0};
    for (int64_t b = 0; b < n / NB_QK; b++) {
        float d = nb_fp16_to_fp32(w[b].d) * nb_fp16_to_fp32(x[b].d);
        for (int k = 0; k < 8; k++) {
            int32_t s = 0;
            for (int j = 4 * k; j < 4 * k + 4; j++) s += q4_0_elem(&w[b], j) * x[b].qs[j];
            lane[k] = fmaf((float)s, d, lane[k]);
        }
    }
    return hsum8(lane);
}

float nb_dot_q8_0_q8_0(int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x) {
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) return nb_dot_q8_0_q8_0_avx512(n, w, x);
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_dot_q8_0_q8_0_avx2(n, w, x);
#endif
    return nb_dot_q8_0_q8_0_ref(n, w, x);
}

float nb_dot_q4_0_q8_0(int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x) {
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) return nb_dot_q4_0_q8_0_avx512(n, w, x);
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_dot_q4_0_q8_0_avx2(n, w, x);
#endif
    return nb_dot_q4_0_q8_0_ref(n, w, x);
}

/* ---- nibble int8 / int4 group dots ---- */

float nb_dot_i8_i8_ref(int64_t n, int64_t group, const int8_t *w, const float *ws, const int8_t *wz,
                       const int8_t *x, const float *xs) {
    float acc = 0.0f;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        int32_t s = nb_isum_i8_ref(len, w + g0, x + g0);
        if (wz) s -= (int32_t)wz[g] * isum_range(len, x + g0);
        acc = fmaf((float)s * ws[g], xs[g], acc);
    }
    return acc;
}

float nb_dot_i8_i8(int64_t n, int64_t group, const int8_t *w, const float *ws, const int8_t *wz, const int8_t *x,
                   const float *xs) {
    if (group < 16) return nb_dot_i8_i8_ref(n, group, w, ws, wz, x, xs); /* tiny groups: scalar wins */
    float acc = 0.0f;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        int32_t s = nb_isum_i8(len, w + g0, x + g0);
        if (wz) s -= (int32_t)wz[g] * isum_range(len, x + g0);
        acc = fmaf((float)s * ws[g], xs[g], acc);
    }
    return acc;
}

float nb_dot_i4_i8_ref(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz,
                       const int8_t *x, const float *xs) {
    float acc = 0.0f;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        int32_t s = 0;
        for (int64_t j = 0; j < len; j++) s += nb_i4_get(w, g0 + j) * x[g0 + j];
        if (wz) s -= (int32_t)wz[g] * isum_range(len, x + g0);
        acc = fmaf((float)s * ws[g], xs[g], acc);
    }
    return acc;
}

float nb_dot_i4_i8(int64_t n, int64_t group, const uint8_t *w, const float *ws, const int8_t *wz, const int8_t *x,
                   const float *xs) {
    /* the SIMD twins need every group to start on a byte: even group sizes of 32 or more */
    if (group < 32 || (group & 1)) return nb_dot_i4_i8_ref(n, group, w, ws, wz, x, xs);
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) return nb_dot_i4_i8_avx512(n, group, w, ws, wz, x, xs);
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_dot_i4_i8_avx2(n, group, w, ws, wz, x, xs);
#endif
    return nb_dot_i4_i8_ref(n, group, w, ws, wz, x, xs);
}

/* ---- float dots: 16 interleaved partial sums (fused multiply-add), then a fixed tree ---- */

static float tree16(float *s) {
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) s[j] += s[j + w];
    return s[0];
}

float nb_dot_f32_ref(int64_t n, const float *w, const float *x) {
    float s[16] = {0};
    for (int64_t i = 0; i < n; i++) s[i & 15] = fmaf(w[i], x[i], s[i & 15]);
    return tree16(s);
}

float nb_dot_f16_ref(int64_t n, const uint16_t *w, const float *x) {
    float s[16] = {0};
    for (int64_t i = 0; i < n; i++) s[i & 15] = fmaf(nb_fp16_to_fp32(w[i]), x[i], s[i & 15]);
    return tree16(s);
}

float nb_dot_f32(int64_t n, const float *w, const float *x) {
#if NB_HAVE_AVX512
    if (nb_simd_active() >= NB_SIMD_AVX512) return nb_dot_f32_avx512(n, w, x);
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_dot_f32_avx2(n, w, x);
#endif
    return nb_dot_f32_ref(n, w, x);
}

float nb_dot_f16(int64_t n, const uint16_t *w, const float *x) {
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_dot_f16_avx2(n, w, x);
#endif
    return nb_dot_f16_ref(n, w, x);
}

/* ---- per-matrix kernel choice ---- */

nb_dot_i8_fn nb_dot_i8_i8_pick(int64_t n, int64_t group, int has_zeros) {
    (void)n, (void)has_zeros;
    return group < 16 ? nb_dot_i8_i8_ref : nb_dot_i8_i8;
}

nb_dot_i4_fn nb_dot_i4_i8_pick(int64_t n, int64_t group, int has_zeros) {
    (void)n, (void)has_zeros;
    return group < 32 || (group & 1) ? nb_dot_i4_i8_ref : nb_dot_i4_i8;
}

/* ---- matrix x vector on 16-row packed blocks ---- */

int nb_qpack_ok(int64_t n, int64_t group, int has_zeros) {
    return n > 0 && group > 0 && !has_zeros && (group % 32 == 0 || group == n);
}

/* the packed group: a row-wide group of any length is one group of whole 32-chunks, padded */
static int64_t qpack_group(int64_t group) { return (group + 31) / 32 * 32; }

int nb_qpack_available(void) { return nb_simd_has_vnni(); }

/* layout: codes of block b, group g at b * ng * cbytes(group) + g * cbytes(group), 64 bytes a
   step (int8) or a pair of steps (int4); then the scales, (nblocks, ng, 16) floats */
static size_t qpack_group_bytes(int i4, int64_t group) { return (size_t)(i4 ? group / 8 : group / 4) * 64; }

size_t nb_qpack_bytes(int i4, int64_t rows, int64_t n, int64_t group) {
    const size_t nb = (size_t)((rows + 15) / 16), ng = (size_t)((n + group - 1) / group);
    group = qpack_group(group);
    return nb * ng * (qpack_group_bytes(i4, group) + 16 * sizeof(float));
}

void nb_qpack(int i4, int64_t rows, int64_t n, int64_t group, const void *w, const float *ws, void *dst) {
    const int64_t ng = (n + group - 1) / group, nb = (rows + 15) / 16;
    group = qpack_group(group); /* ng is 1 when that pads */
    const size_t gb = qpack_group_bytes(i4, group);
    uint8_t *codes = dst;
    float *sc = (float *)(codes + (size_t)nb * ng * gb);
    for (int64_t b = 0; b < nb; b++)
        for (int r = 0; r < 16; r++) {
            const int64_t row = b * 16 + r;
            for (int64_t g = 0; g < ng; g++) {
                uint8_t *o = codes + ((size_t)b * ng + g) * gb + 4 * r;
                const int64_t len = row < rows ? (n - g * group < group ? n - g * group : group) : 0; /* real codes */
                sc[((size_t)b * ng + g) * 16 + r] = row < rows ? ws[row * ng + g] : 0.0f;
                if (i4) { /* pair p: codes 8p..8p+3 in the low nibbles, 8p+4..8p+7 in the high ones */
                    const uint8_t *src = (const uint8_t *)w + (row < rows ? row : 0) * ((n + 1) / 2); /* its row */
                    const int64_t e0 = g * group; /* the group's first element: nibble e & 1 of byte e / 2 */
                    for (int64_t p = 0; p < group / 8; p++)
                        for (int i = 0; i < 4; i++) {
                            const int64_t j = 8 * p + i, k = j + 4;
                            const int lo = j < len ? ((src[(e0 + j) >> 1] >> (4 * ((e0 + j) & 1))) & 15) ^ 8 : 0;
                            const int hi = k < len ? ((src[(e0 + k) >> 1] >> (4 * ((e0 + k) & 1))) & 15) ^ 8 : 0;
                            o[p * 64 + i] = (uint8_t)(lo | hi << 4); /* two's complement nibble ^ 8 = code + 8 */
                        }
                } else {
                    const int8_t *src = (const int8_t *)w + row * n + g * group;
                    for (int64_t k = 0; k < group / 4; k++)
                        for (int i = 0; i < 4; i++) o[k * 64 + i] = (uint8_t)(4 * k + i < len ? src[4 * k + i] + 128 : 0);
                }
            }
        }
}

void nb_matvec_qpack(int i4, const void *pk, int64_t rows, int64_t n, int64_t group, int64_t r0, int64_t nr,
                     const int8_t *x, const float *xs, const int32_t *lsum, float *y) {
    const int64_t ng = (n + group - 1) / group, nb = (rows + 15) / 16;
    group = qpack_group(group); /* ng is 1 when that pads */
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) {
        nb_matvec_qpack_avx512(i4, pk, rows, n, group, r0, nr, x, xs, lsum, y);
        return;
    }
#endif
    /* the packed copy's rows, one at a time (the scalar twin's order; a CPU without VNNI never gets
       a pack from the runtime, this serves the tests) */
    const size_t gb = qpack_group_bytes(i4, group);
    const uint8_t *codes = pk;
    const float *sc = (const float *)(codes + (size_t)nb * ng * gb);
    (void)lsum;
    for (int64_t row = r0; row < r0 + nr; row++) {
        const int64_t b = row / 16, r = row % 16;
        float acc = 0.0f;
        for (int64_t g = 0; g < ng; g++) {
            const uint8_t *o = codes + ((size_t)b * ng + g) * gb;
            int32_t s = 0;
            for (int64_t k = 0; k < group / 4; k++)
                for (int i = 0; i < 4 && g * group + 4 * k + i < n; i++) {
                    const int c = i4 ? ((o[(k / 2) * 64 + 4 * r + i] >> (4 * (k & 1))) & 15) - 8
                                     : (int)o[k * 64 + 4 * r + i] - 128;
                    s += c * x[g * group + 4 * k + i];
                }
            acc = fmaf((float)s * sc[((size_t)b * ng + g) * 16 + r], xs[g], acc);
        }
        y[row - r0] = acc;
    }
}

static int prefetch_on;
void nb_qdot_set_prefetch(int on) { __atomic_store_n(&prefetch_on, on != 0, __ATOMIC_RELAXED); }
int nb_qdot_prefetch(void) { return __atomic_load_n(&prefetch_on, __ATOMIC_RELAXED); }

/* lsum[g * 8 + k] = sum of x[g * group + 32 c + 4 k + i] over the group's chunks c and i < 4. */
void nb_act_lanesums_ref(int64_t n, int64_t group, const int8_t *x, int32_t *lsum) {
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int32_t *l = lsum + g * 8;
        const int64_t len = n - g0 < group ? n - g0 : group; /* the last group may be short */
        for (int k = 0; k < 8; k++) l[k] = 0;
        for (int64_t j = 0; j < len; j++) l[(j & 31) >> 2] += x[g0 + j];
    }
}

void nb_act_lanesums(int64_t n, int64_t group, const int8_t *x, int32_t *lsum) {
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) { /* whole groups of whole 32-chunks; a short last group in the twin */
        const int64_t whole = group % 32 ? 0 : n / group * group;
        nb_act_lanesums_avx512(whole, group, x, lsum);
        if (whole < n) nb_act_lanesums_ref(n - whole, group, x + whole, lsum + whole / group * 8);
        return;
    }
#endif
    nb_act_lanesums_ref(n, group, x, lsum);
}

/* ---- matrix x vector, ggml blocks ---- */

void nb_act_lanesums_q8_0(int64_t n, const nb_block_q8_0 *x, int32_t *lsum) {
    for (int64_t b = 0; b < n / NB_QK; b++)
        for (int k = 0; k < 8; k++)
            lsum[b * 8 + k] = x[b].qs[4 * k] + x[b].qs[4 * k + 1] + x[b].qs[4 * k + 2] + x[b].qs[4 * k + 3];
}

void nb_matvec_q8_0_ref(int64_t rows, int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x,
                        const int32_t *lsum, float *y) {
    (void)lsum;
    for (int64_t r = 0; r < rows; r++) y[r] = nb_dot_q8_0_q8_0_ref(n, w + r * (n / NB_QK), x);
}

void nb_matvec_q4_0_ref(int64_t rows, int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x,
                        const int32_t *lsum, float *y) {
    (void)lsum;
    for (int64_t r = 0; r < rows; r++) y[r] = nb_dot_q4_0_q8_0_ref(n, w + r * (n / NB_QK), x);
}

void nb_matvec_q8_0(int64_t rows, int64_t n, const nb_block_q8_0 *w, const nb_block_q8_0 *x, const int32_t *lsum,
                    float *y) {
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) {
        nb_matvec_q8_0_avx512(rows, n, w, x, lsum, y);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) y[r] = nb_dot_q8_0_q8_0(n, w + r * (n / NB_QK), x);
}

void nb_matvec_q4_0(int64_t rows, int64_t n, const nb_block_q4_0 *w, const nb_block_q8_0 *x, const int32_t *lsum,
                    float *y) {
#if NB_HAVE_AVX512
    if (nb_simd_has_vnni()) {
        nb_matvec_q4_0_avx512(rows, n, w, x, lsum, y);
        return;
    }
#endif
    for (int64_t r = 0; r < rows; r++) y[r] = nb_dot_q4_0_q8_0(n, w + r * (n / NB_QK), x);
}
