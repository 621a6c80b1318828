/* quant.h: THE quantizer. One definition of integer grids, scales, rounding and observers, used by
   the fake-quant ops in training, by PTQ and by export, so what is trained is what ships.

   Grid: codes q are int8, qmin..qmax (always signed; an asymmetric grid is the signed grid with
   a zero point z in qmin..qmax):
     symmetric, b bits:           qmin = -2^(b-1), qmax = 2^(b-1) - 1, z = 0
     symmetric, restricted range: qmin = -(2^(b-1) - 1), qmax = 2^(b-1) - 1
     asymmetric, b bits:          qmin = -2^(b-1), qmax = 2^(b-1) - 1, z from the range
     ternary:                     qmin = -1, qmax = 1, z = 0 (bits ignored)
   Quantize:   q = clamp(rint(x * (1/s)) + z, qmin, qmax)   with 1/s computed once per group in
               f32 and 1/0 taken as 0 (an all-zero group gives codes z and values 0)
   Dequantize: y = (q - z) * s
   Rounding: round half to even (rintf in the default rounding mode; SIMD roundscale nearest),
   as torch's fake_quantize_* (std::nearbyint). The llama.cpp block formats keep llama.cpp's own
   rounding (Q8_0: roundf, half away from zero; Q4_0: floor(x/d + 8.5)); see quant_blocks.h.
   Zero points are passed as floats (learned LSQ+ offsets are floats): the quantizer uses
   z = clamp(rint(zero), qmin, qmax).

   Granularity of a (rows, cols) matrix (a weight W (Cout, Cin), or activations (tokens, Cin)):
     tensor: one scale;  row: one scale per row (per output channel / per token);
     group: one scale per G consecutive elements of a row (G = 32, 64, 128), scale index
            r * groups_per_row + c / G.
   Tail rule for group when cols % G != 0: NB_QTAIL_ERROR refuses the tensor (nb_qspec_check);
   NB_QTAIL_SHORT makes the last group of each row shorter (cols % G elements, its own scale),
   groups_per_row = ceil(cols / G).
   Scale dtype f16: every scale is rounded to fp16 (round to nearest even) when it is computed,
   and that rounded value is used both to quantize and to dequantize. */
#ifndef NB_QUANT_H
#define NB_QUANT_H

#include <math.h>
#include <stdint.h>

#include "status.h"

/* On-disk values (export writes them): explicit and append-only. */
typedef enum nb_qformat {
    NB_QFMT_INT = 0,   /* integer grid described by nb_qspec */
    NB_QFMT_Q8_0 = 1,  /* llama.cpp Q8_0 blocks of 32 along the row (quant_blocks.h) */
    NB_QFMT_Q4_0 = 2,  /* llama.cpp Q4_0 blocks of 32 along the row */
    NB_QFMT_F16 = 3,   /* values rounded to fp16 (the format-legal fallback of the presets) */
} nb_qformat;

typedef enum nb_qgran {
    NB_QGRAN_TENSOR = 0,
    NB_QGRAN_ROW = 1,   /* per output channel (weights) or per token (activations) */
    NB_QGRAN_GROUP = 2,
} nb_qgran;

typedef enum nb_qtail {
    NB_QTAIL_ERROR = 0, /* cols % G != 0 is refused */
    NB_QTAIL_SHORT = 1, /* last group of the row is shorter */
} nb_qtail;

typedef struct nb_qspec {
    nb_qformat format;
    int bits;           /* 2..8 (NB_QFMT_INT, not ternary) */
    int symmetric;      /* 1: z = 0 */
    int restrict_range; /* symmetric: qmin = -qmax */
    int ternary;        /* {-1, 0, 1} * s */
    nb_qgran gran;
    int group_size;     /* G (NB_QGRAN_GROUP): 32, 64 or 128 */
    nb_qtail tail;
    int scale_f16;      /* scales rounded to fp16 */
} nb_qspec;

/* Observers turn data into a range [lo, hi] per scale group; nb_quant_params turns ranges into
   scales and zero points. */
typedef enum nb_qobs_kind {
    NB_QOBS_MINMAX = 0,     /* min and max of the data */
    NB_QOBS_EMA = 1,        /* moving average of min and max: r = d r + (1 - d) r_new */
    NB_QOBS_MSE = 2,        /* min-max shrunk by the clip ratio (grid 1.0 down to mse_min_ratio)
                               with the least squared quantization error on the data */
    NB_QOBS_PERCENTILE = 3, /* percentile of |x| (symmetric) or the (100-p, p) percentiles */
} nb_qobs_kind;

typedef struct nb_qobs {
    nb_qobs_kind kind;
    float ema_decay;     /* 0.99 */
    float percentile;    /* 99.99 */
    int mse_steps;       /* clip ratios tried (0 = 20) */
    float mse_min_ratio; /* smallest ratio (0 = 0.5) */
} nb_qobs;

/* Checks the spec for a (rows, cols) tensor called `name` (used in the message): bits 2..8,
   G in {32, 64, 128}, cols % G (tail error), cols % 32 for the block formats. NB_EINVAL with a
   message naming the tensor. */
nb_status nb_qspec_check(const nb_qspec *s, const char *name, int64_t rows, int64_t cols);
/* qmin, qmax of the INT grid (block formats: -8..7 for Q4_0, -127..127 for Q8_0). */
void nb_qspec_range(const nb_qspec *s, int *qmin, int *qmax);
/* Groups per row: 1 (tensor: the whole matrix is one group, but 1 here), 1 (row),
   ceil(cols / G) (group). Block formats: cols / 32. */
int64_t nb_qspec_groups_per_row(const nb_qspec *s, int64_t cols);
/* Number of scales of a (rows, cols) tensor: 1, rows, rows * groups_per_row. */
int64_t nb_qspec_nscales(const nb_qspec *s, int64_t rows, int64_t cols);
/* Elements sharing one scale (the LSQ gradient scale's N); the short tail group counts G. */
int64_t nb_qspec_group_numel(const nb_qspec *s, int64_t rows, int64_t cols);
/* "int4 sym g32 f16" style description into buf. */
const char *nb_qspec_str(const nb_qspec *s, char *buf, int n);

/* Range of each scale group of x (rows, cols) into lo, hi (nscales each). EMA: blends into the
   existing lo/hi unless `first`; the other kinds overwrite. Ternary ranges are +-mean|x| (the
   BitNet b1.58 absmean scale) for minmax/ema/percentile; mse searches 0.5..2 x absmean.
   Only percentile allocates (a copy of one group); NB_ENOMEM if that fails. */
nb_status nb_quant_observe(const nb_qspec *s, const nb_qobs *o, const float *x, int64_t rows, int64_t cols,
                           float *lo, float *hi, int first);
/* Scale and zero point of n groups from their ranges (the range is widened to contain 0):
     symmetric: s = max(|lo|, |hi|) / ((qmax - qmin) / 2)  (torch's symmetric rule: amax / 7.5
                for int4), restricted: amax / qmax; ternary: s = max(|lo|, |hi|);
     asymmetric: s = (hi - lo) / (qmax - qmin), z = clamp(qmin - rint(lo / s), qmin, qmax).
   Scales rounded to fp16 when s->scale_f16. zero may be NULL for symmetric specs. */
void nb_quant_params(const nb_qspec *s, const float *lo, const float *hi, int64_t n, float *scale, float *zero);

/* Codes of x (rows, cols) with the given scales/zeros (zero NULL = 0). INT format only. */
void nb_quant_codes_ref(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, const float *scale,
                        const float *zero, int8_t *q);
/* y = (q - z) * s. INT format only. */
void nb_dequant_ref(const nb_qspec *s, const int8_t *q, int64_t rows, int64_t cols, const float *scale,
                    const float *zero, float *y);
/* y = dequant(quant(x)) for every format (block formats and F16 ignore scale/zero: the block
   functions compute their own). x and y may alias. nb_fakequant dispatches to the SIMD twins
   (bit-identical results). */
void nb_fakequant_ref(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, const float *scale,
                      const float *zero, float *y);
void nb_fakequant_mat(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, const float *scale,
                      const float *zero, float *y);
/* Dynamic per-token (per-row) fake-quant of activations (rows, cols): each row's scale (and zero
   point when asymmetric) from its own min/max with the rule of nb_quant_params; granularity
   group uses each group's range; block format Q8_0 quantizes each row as llama.cpp does.
   scale_out (optional) receives the nscales scales used. */
void nb_fakequant_dynamic_ref(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, float *y, float *scale_out);
void nb_fakequant_dynamic(const nb_qspec *s, const float *x, int64_t rows, int64_t cols, float *y, float *scale_out);

/* Error measures of y = fakequant(x) over n elements: signal-to-quantization-noise ratio in dB
   (10 log10(sum x^2 / sum (x - y)^2), +inf as 999 when exact). */
double nb_quant_sqnr_db(const float *x, const float *y, int64_t n);

/* ---- the SIMD twins (core/quant_avx2.c, core/quant_avx512.c) ----
   One contiguous segment of n elements with one scale: y = (clamp(rint(x*inv) + z, qmin, qmax) - z) * s.
   min/max of a segment. Exactly equal results across twins. */
/* The quantize rule above as two scalar helpers, shared by the reference quantizer (this file's
   nb_quant_codes_ref and nb_qseg_fq_ref) and the integer runtime's int8 activation quantizer
   (ops/kernels/qdot.c), so both round exactly alike: inv = 1/s computed once (0 when s == 0);
   code = clamp(rint(x * inv) + z, qmin, qmax), NaN stays NaN. */
static inline float nb_quant_inv(float s) { return s != 0.0f ? 1.0f / s : 0.0f; }
static inline float nb_quant_code(float x, float inv, float z, float qmin, float qmax) {
    float q = rintf(x * inv) + z;
    return q < qmin ? qmin : q > qmax ? qmax : q;
}

void nb_qseg_fq_ref(const float *x, float *y, int64_t n, float s, float inv, float z, float qmin, float qmax);
void nb_qseg_minmax_ref(const float *x, int64_t n, float *lo, float *hi);
void nb_qseg_fq_avx2(const float *x, float *y, int64_t n, float s, float inv, float z, float qmin, float qmax);
void nb_qseg_minmax_avx2(const float *x, int64_t n, float *lo, float *hi);
void nb_qseg_fq_avx512(const float *x, float *y, int64_t n, float s, float inv, float z, float qmin, float qmax);
void nb_qseg_minmax_avx512(const float *x, int64_t n, float *lo, float *hi);

#endif
