/* quant.c: the reference quantizer: grids, observers, scales, codes, fake-quant, dispatch. */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp16.h"
#include "quant_blocks.h"
#include "simd.h"

/* ---- spec ---- */

nb_status nb_qspec_check(const nb_qspec *s, const char *name, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0) return nb_fail(NB_ESHAPE, "%s: cannot quantize an empty tensor (%lld, %lld)", name,
                                               (long long)rows, (long long)cols);
    switch (s->format) {
    case NB_QFMT_F16: return NB_OK;
    case NB_QFMT_Q8_0:
    case NB_QFMT_Q4_0:
        if (cols % 32)
            return nb_fail(NB_EINVAL, "%s: rows of %lld elements are not a multiple of 32, which %s blocks need", name,
                           (long long)cols, s->format == NB_QFMT_Q8_0 ? "Q8_0" : "Q4_0");
        return NB_OK;
    case NB_QFMT_INT: break;
    default: return nb_fail(NB_EINVAL, "%s: unknown quant format %d", name, (int)s->format);
    }
    if (!s->ternary && (s->bits < 2 || s->bits > 8))
        return nb_fail(NB_EINVAL, "%s: bits: expected 2..8, got %d", name, s->bits);
    if (s->ternary && !s->symmetric) return nb_fail(NB_EINVAL, "%s: a ternary grid is symmetric", name);
    if (s->restrict_range && !s->symmetric)
        return nb_fail(NB_EINVAL, "%s: restricted range needs a symmetric grid", name);
    if (s->gran != NB_QGRAN_TENSOR && s->gran != NB_QGRAN_ROW && s->gran != NB_QGRAN_GROUP)
        return nb_fail(NB_EINVAL, "%s: unknown granularity %d", name, (int)s->gran);
    if (s->gran == NB_QGRAN_GROUP) {
        if (s->group_size != 32 && s->group_size != 64 && s->group_size != 128)
            return nb_fail(NB_EINVAL, "%s: group_size: expected 32, 64 or 128, got %d", name, s->group_size);
        if (cols % s->group_size && s->tail != NB_QTAIL_SHORT)
            return nb_fail(NB_EINVAL,
                           "%s: rows of %lld elements are not a multiple of group_size %d (set tail: short_group, "
                           "or give this tensor its own rule)",
                           name, (long long)cols, s->group_size);
    }
    return NB_OK;
}

void nb_qspec_range(const nb_qspec *s, int *qmin, int *qmax) {
    if (s->format == NB_QFMT_Q4_0) {
        *qmin = -8, *qmax = 7;
    } else if (s->format == NB_QFMT_Q8_0) {
        *qmin = -127, *qmax = 127;
    } else if (s->ternary) {
        *qmin = -1, *qmax = 1;
    } else {
        int b = s->bits < 2 ? 2 : s->bits > 8 ? 8 : s->bits;
        *qmax = (1 << (b - 1)) - 1;
        *qmin = s->symmetric && s->restrict_range ? -*qmax : -*qmax - 1;
    }
}

int64_t nb_qspec_groups_per_row(const nb_qspec *s, int64_t cols) {
    if (s->format == NB_QFMT_Q8_0 || s->format == NB_QFMT_Q4_0) return cols / 32;
    if (s->format == NB_QFMT_F16 || s->gran != NB_QGRAN_GROUP) return 1;
    return (cols + s->group_size - 1) / s->group_size;
}

int64_t nb_qspec_nscales(const nb_qspec *s, int64_t rows, int64_t cols) {
    if (s->format == NB_QFMT_F16) return 0;
    if (s->format == NB_QFMT_INT && s->gran == NB_QGRAN_TENSOR) return 1;
    return rows * nb_qspec_groups_per_row(s, cols);
}

int64_t nb_qspec_group_numel(const nb_qspec *s, int64_t rows, int64_t cols) {
    if (s->format == NB_QFMT_Q8_0 || s->format == NB_QFMT_Q4_0) return 32;
    if (s->format == NB_QFMT_F16) return 1;
    if (s->gran == NB_QGRAN_TENSOR) return rows * cols;
    if (s->gran == NB_QGRAN_ROW) return cols;
    return s->group_size;
}

const char *nb_qspec_str(const nb_qspec *s, char *buf, int n) {
    if (s->format == NB_QFMT_Q8_0) snprintf(buf, n, "Q8_0");
    else if (s->format == NB_QFMT_Q4_0) snprintf(buf, n, "Q4_0");
    else if (s->format == NB_QFMT_F16) snprintf(buf, n, "F16");
    else {
        char g[24];
        if (s->gran == NB_QGRAN_GROUP) snprintf(g, sizeof g, "g%d%s", s->group_size, s->tail ? "+tail" : "");
        else snprintf(g, sizeof g, "%s", s->gran == NB_QGRAN_ROW ? "per-row" : "per-tensor");
        if (s->ternary) snprintf(buf, n, "ternary %s%s", g, s->scale_f16 ? " f16" : "");
        else snprintf(buf, n, "int%d %s%s %s%s", s->bits, s->symmetric ? "sym" : "asym",
                      s->restrict_range ? " restricted" : "", g, s->scale_f16 ? " f16" : "");
    }
    return buf;
}

/* ---- the segment kernels: scalar twins ---- */

/* y = (clamp(rint(x * inv) + z, qmin, qmax) - z) * s: round half to even, as torch. */
void nb_qseg_fq_ref(const float *x, float *y, int64_t n, float s, float inv, float z, float qmin, float qmax) {
    for (int64_t i = 0; i < n; i++) y[i] = (nb_quant_code(x[i], inv, z, qmin, qmax) - z) * s;
}

void nb_qseg_minmax_ref(const float *x, int64_t n, float *lo, float *hi) {
    float a = x[0], b = x[0];
    for (int64_t i = 1; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

typedef void (*fq_fn)(const float *, float *, int64_t, float, float, float, float, float);
typedef void (*mm_fn)(const float *, int64_t, float *, float *);

static fq_fn pick_fq(void) {
#if NB_HAVE_AVX512
    if (nb_simd_active() == NB_SIMD_AVX512) return nb_qseg_fq_avx512;
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_qseg_fq_avx2;
#endif
    return nb_qseg_fq_ref;
}

static mm_fn pick_minmax(void) {
#if NB_HAVE_AVX512
    if (nb_simd_active() == NB_SIMD_AVX512) return nb_qseg_minmax_avx512;
#endif
#if NB_HAVE_AVX2
    if (nb_simd_active() >= NB_SIMD_AVX2) return nb_qseg_minmax_avx2;
#endif
    return nb_qseg_minmax_ref;
}

/* ---- segments of a (rows, cols) matrix: each is a run of one row sharing one scale ---- */

typedef struct seg_geom {
    int64_t G;   /* elements per segment (last of a row may be shorter) */
    int64_t gpr; /* segments per row */
    int tensor;  /* one scale for everything */
} seg_geom;

static seg_geom geometry(const nb_qspec *s, int64_t cols) {
    seg_geom g = {cols, 1, 0};
    if (s->format == NB_QFMT_Q8_0 || s->format == NB_QFMT_Q4_0) g.G = 32;
    else if (s->gran == NB_QGRAN_GROUP) g.G = s->group_size;
    else g.tensor = s->gran == NB_QGRAN_TENSOR;
    g.gpr = (cols + g.G - 1) / g.G;
    return g;
}

static inline int64_t seg_len(const seg_geom *g, int64_t cols, int64_t k) {
    int64_t off = k * g->G;
    return cols - off < g->G ? cols - off : g->G;
}

static inline void scale_of(float s, float *inv) { *inv = nb_quant_inv(s); }

static inline float zero_of(const float *zero, int64_t k, int qmin, int qmax) {
    if (!zero) return 0.0f;
    float z = rintf(zero[k]);
    return z < qmin ? (float)qmin : z > qmax ? (float)qmax : z;
}

/* ---- observers ---- */

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* percentile p (0..100) of v (n, sorted in place): linear interpolation between ranks */
static float percentile_of(float *v, int64_t n, float p) {
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    double pos = (double)p / 100.0 * (double)(n - 1);
    int64_t i = (int64_t)pos;
    if (i >= n - 1) return v[n - 1];
    double f = pos - (double)i;
    return (float)((1.0 - f) * v[i] + f * v[i + 1]);
}

/* squared error of fake-quantizing the group with range (lo, hi) */
static double group_err(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, int64_t stride, float lo, float hi) {
    float sc, z = 0.0f, inv;
    nb_quant_params(s, &lo, &hi, 1, &sc, &z);
    scale_of(sc, &inv);
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    double e = 0;
    float buf[256];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c += 256) {
            int64_t m = cols - c < 256 ? cols - c : 256;
            nb_qseg_fq_ref(x + r * stride + c, buf, m, sc, inv, z, (float)qmin, (float)qmax);
            for (int64_t i = 0; i < m; i++) {
                double d = (double)x[r * stride + c + i] - buf[i];
                e += d * d;
            }
        }
    return e;
}

/* range of one group: `rows` runs of `cols` elements, `stride` apart */
static nb_status observe_group(const nb_qspec *s, const nb_qobs *o, const float *x, int64_t rows, int64_t cols,
                               int64_t stride, float *lo, float *hi) {
    mm_fn mm = pick_minmax();
    float a = INFINITY, b = -INFINITY;
    double asum = 0;
    for (int64_t r = 0; r < rows; r++) {
        float l, h;
        mm(x + r * stride, cols, &l, &h);
        a = l < a ? l : a;
        b = h > b ? h : b;
        if (s->ternary)
            for (int64_t c = 0; c < cols; c++) asum += fabsf(x[r * stride + c]);
    }
    if (s->ternary) { /* BitNet b1.58: s = mean |x| */
        b = (float)(asum / (double)(rows * cols));
        a = -b;
    }
    if (o->kind == NB_QOBS_PERCENTILE && !s->ternary) {
        int64_t n = rows * cols;
        float *v = nb_malloc((size_t)n * sizeof *v);
        if (!v) return nb_fail(NB_ENOMEM, "percentile observer: %lld values", (long long)n);
        float p = o->percentile > 0 ? o->percentile : 99.99f;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) v[r * cols + c] = s->symmetric ? fabsf(x[r * stride + c]) : x[r * stride + c];
        b = percentile_of(v, n, p); /* sorts v */
        if (s->symmetric) {
            a = -b;
        } else { /* the (100 - p)-th percentile from the same sorted values */
            double pos = (100.0 - p) / 100.0 * (double)(n - 1);
            int64_t i = (int64_t)pos;
            double f = pos - (double)i;
            a = i >= n - 1 ? v[n - 1] : (float)((1.0 - f) * v[i] + f * v[i + 1]);
        }
        nb_free(v);
    } else if (o->kind == NB_QOBS_MSE) {
        int steps = o->mse_steps > 0 ? o->mse_steps : 20;
        float rmin = o->mse_min_ratio > 0 ? o->mse_min_ratio : 0.5f;
        float best_a = a, best_b = b;
        double best = INFINITY;
        for (int k = 0; k < steps; k++) {
            /* ternary: 0.5 .. 2 x absmean; otherwise 1 .. rmin x the min-max range */
            float r = s->ternary ? 0.5f + 1.5f * (float)k / (float)(steps > 1 ? steps - 1 : 1)
                                 : 1.0f - (1.0f - rmin) * (float)k / (float)(steps > 1 ? steps - 1 : 1);
            double e = group_err(s, x, rows, cols, stride, a * r, b * r);
            if (e < best) { /* ties keep the earlier (wider) ratio */
                best = e;
                best_a = a * r;
                best_b = b * r;
            }
        }
        a = best_a;
        b = best_b;
    }
    *lo = a;
    *hi = b;
    return NB_OK;
}

nb_status nb_quant_observe(const nb_qspec *s, const nb_qobs *o, const float *x, int64_t rows, int64_t cols,
                           float *lo, float *hi, int first) {
    seg_geom g = geometry(s, cols);
    int ema = o->kind == NB_QOBS_EMA && !first;
    float d = o->ema_decay > 0 ? o->ema_decay : 0.99f;
    int64_t nsc = g.tensor ? 1 : rows * g.gpr;
    for (int64_t k = 0; k < nsc; k++) {
        float l = 0.0f, h = 0.0f;
        if (g.tensor) NB_TRY(observe_group(s, o, x, rows, cols, cols, &l, &h));
        else {
            int64_t r = k / g.gpr, j = k % g.gpr;
            NB_TRY(observe_group(s, o, x + r * cols + j * g.G, 1, seg_len(&g, cols, j), cols, &l, &h));
        }
        if (ema) {
            lo[k] = d * lo[k] + (1.0f - d) * l;
            hi[k] = d * hi[k] + (1.0f - d) * h;
        } else {
            lo[k] = l;
            hi[k] = h;
        }
    }
    return NB_OK;
}

void nb_quant_params(const nb_qspec *s, const float *lo, const float *hi, int64_t n, float *scale, float *zero) {
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    for (int64_t k = 0; k < n; k++) {
        float l = lo[k] < 0.0f ? lo[k] : 0.0f, h = hi[k] > 0.0f ? hi[k] : 0.0f;
        float sc, z = 0.0f;
        if (s->symmetric || s->ternary) {
            float amax = -l > h ? -l : h;
            float den = s->restrict_range ? (float)qmax : (float)(qmax - qmin) / 2.0f;
            sc = amax / den;
            if (s->scale_f16) sc = nb_round_fp16(sc);
        } else {
            sc = (h - l) / (float)(qmax - qmin);
            if (s->scale_f16) sc = nb_round_fp16(sc);
            if (sc != 0.0f) {
                z = (float)qmin - rintf(l / sc);
                z = z < qmin ? (float)qmin : z > qmax ? (float)qmax : z;
            }
        }
        scale[k] = sc;
        if (zero) zero[k] = z;
    }
}

/* ---- codes, dequantize, fake-quant ---- */

void nb_quant_codes_ref(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, const float *scale,
                        const float *zero, int8_t *q) {
    NB_ASSERT(s->format == NB_QFMT_INT);
    seg_geom g = geometry(s, cols);
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < g.gpr; j++) {
            int64_t k = g.tensor ? 0 : r * g.gpr + j, off = r * cols + j * g.G, n = seg_len(&g, cols, j);
            float inv, z = zero_of(zero, k, qmin, qmax);
            scale_of(scale[k], &inv);
            for (int64_t i = 0; i < n; i++) q[off + i] = (int8_t)nb_quant_code(x[off + i], inv, z, (float)qmin, (float)qmax);
        }
}

void nb_dequant_ref(const nb_qspec *s, const int8_t *q, int64_t rows, int64_t cols, const float *scale,
                    const float *zero, float *y) {
    NB_ASSERT(s->format == NB_QFMT_INT);
    seg_geom g = geometry(s, cols);
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < g.gpr; j++) {
            int64_t k = g.tensor ? 0 : r * g.gpr + j, off = r * cols + j * g.G, n = seg_len(&g, cols, j);
            float z = zero_of(zero, k, qmin, qmax);
            for (int64_t i = 0; i < n; i++) y[off + i] = ((float)q[off + i] - z) * scale[k];
        }
}

static void fakequant_with(fq_fn fq, const nb_qspec *s, const float *x, int64_t rows, int64_t cols,
                           const float *scale, const float *zero, float *y) {
    if (s->format == NB_QFMT_F16) {
        for (int64_t i = 0; i < rows * cols; i++) y[i] = nb_round_fp16(x[i]);
        return;
    }
    if (s->format == NB_QFMT_Q8_0 || s->format == NB_QFMT_Q4_0) {
        for (int64_t r = 0; r < rows; r++) {
            if (s->format == NB_QFMT_Q8_0) nb_fakequant_row_q8_0(x + r * cols, y + r * cols, cols);
            else nb_fakequant_row_q4_0(x + r * cols, y + r * cols, cols);
        }
        return;
    }
    seg_geom g = geometry(s, cols);
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < g.gpr; j++) {
            int64_t k = g.tensor ? 0 : r * g.gpr + j, off = r * cols + j * g.G;
            float inv;
            scale_of(scale[k], &inv);
            fq(x + off, y + off, seg_len(&g, cols, j), scale[k], inv, zero_of(zero, k, qmin, qmax), (float)qmin,
               (float)qmax);
        }
}

void nb_fakequant_ref(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, const float *scale,
                      const float *zero, float *y) {
    fakequant_with(nb_qseg_fq_ref, s, x, rows, cols, scale, zero, y);
}

void nb_fakequant_mat(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, const float *scale,
                      const float *zero, float *y) {
    fakequant_with(pick_fq(), s, x, rows, cols, scale, zero, y);
}

/* per row (token): range of each segment, params by the same rule, fake-quant */
static void dynamic_with(fq_fn fq, mm_fn mm, const nb_qspec *s, const float *x, int64_t rows, int64_t cols, float *y,
                         float *scale_out) {
    if (s->format == NB_QFMT_Q8_0) { /* activations: llama.cpp's x86 rule (quant_blocks.h) */
        for (int64_t r = 0; r < rows; r++) nb_fakequant_row_q8_0_act(x + r * cols, y + r * cols, cols);
        if (scale_out)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols / 32; j++) {
                    nb_block_q8_0 b;
                    nb_quantize_row_q8_0_act(x + r * cols + j * 32, &b, 32);
                    scale_out[r * (cols / 32) + j] = nb_fp16_to_fp32(b.d);
                }
        return;
    }
    if (s->format != NB_QFMT_INT) {
        fakequant_with(fq, s, x, rows, cols, NULL, NULL, y);
        if (scale_out && (s->format == NB_QFMT_Q8_0 || s->format == NB_QFMT_Q4_0)) {
            for (int64_t r = 0; r < rows; r++)
                for (int64_t j = 0; j < cols / 32; j++) {
                    if (s->format == NB_QFMT_Q8_0) {
                        nb_block_q8_0 b;
                        nb_quantize_row_q8_0_ref(x + r * cols + j * 32, &b, 32);
                        scale_out[r * (cols / 32) + j] = nb_fp16_to_fp32(b.d);
                    } else {
                        nb_block_q4_0 b;
                        nb_quantize_row_q4_0_ref(x + r * cols + j * 32, &b, 32);
                        scale_out[r * (cols / 32) + j] = nb_fp16_to_fp32(b.d);
                    }
                }
        }
        return;
    }
    nb_qspec rs = *s;
    if (rs.gran == NB_QGRAN_TENSOR) rs.gran = NB_QGRAN_ROW; /* dynamic is per row at least */
    seg_geom g = geometry(&rs, cols);
    int qmin, qmax;
    nb_qspec_range(s, &qmin, &qmax);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < g.gpr; j++) {
            int64_t off = r * cols + j * g.G, n = seg_len(&g, cols, j);
            float lo, hi, sc, z = 0.0f, inv;
            if (rs.ternary) {
                double a = 0;
                for (int64_t i = 0; i < n; i++) a += fabsf(x[off + i]);
                hi = (float)(a / (double)n);
                lo = -hi;
            } else {
                mm(x + off, n, &lo, &hi);
            }
            nb_quant_params(&rs, &lo, &hi, 1, &sc, &z);
            scale_of(sc, &inv);
            fq(x + off, y + off, n, sc, inv, z, (float)qmin, (float)qmax);
            if (scale_out) scale_out[r * g.gpr + j] = sc;
        }
}

void nb_fakequant_dynamic_ref(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, float *y, float *scale_out) {
    dynamic_with(nb_qseg_fq_ref, nb_qseg_minmax_ref, s, x, rows, cols, y, scale_out);
}

void nb_fakequant_dynamic(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, float *y, float *scale_out) {
    dynamic_with(pick_fq(), pick_minmax(), s, x, rows, cols, y, scale_out);
}

double nb_quant_sqnr_db(const float *x, const float *y, int64_t n) {
    double sig = 0, err = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        sig += (double)x[i] * x[i];
        err += d * d;
    }
    if (err == 0) return 999.0;
    if (sig == 0) return -999.0;
    return 10.0 * log10(sig / err);
}
