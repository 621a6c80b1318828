/* export.c: checkpoint -> exactly-the-trained-grid runtime model -> nibble / GGUF / llama2.c file. */
#include "export.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/fp16.h"
#include "../core/quant_blocks.h"
#include "../data/tokenizer.h"
#include "../ops/kernels/qdot.h"
#include "checkpoint.h"
#include "export_nb.h"
#include "gguf.h"
#include "llama2c.h"
#include "model.h"
#include "qat_ckpt.h"
#include "runtime_io.h"

int nb_export_format_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "nibble")) return NB_EXPORT_NIBBLE;
    if (!strcmp(s, "gguf")) return NB_EXPORT_GGUF;
    if (!strcmp(s, "llama2c")) return NB_EXPORT_LLAMA2C;
    return -1;
}

const char *nb_export_format_name(nb_export_format f) {
    switch (f) {
    case NB_EXPORT_NIBBLE: return "nibble";
    case NB_EXPORT_GGUF: return "gguf";
    case NB_EXPORT_LLAMA2C: return "llama2c";
    }
    return "?";
}

void nb_export_report_free(nb_export_report *r) {
    if (!r) return;
    nb_free(r->t);
    memset(r, 0, sizeof *r);
}

/* ---- building the exact model ---- */

typedef struct build_ctx {
    nb_model *m;
    nb_qat *q;
    nb_qmodel *out;
} build_ctx;

static void grid_text(const nb_qat_winfo *wi, char *buf, int n) {
    if (!wi->quantized) {
        snprintf(buf, (size_t)n, "fp32");
        return;
    }
    switch (wi->spec.format) {
    case NB_QFMT_Q8_0: snprintf(buf, (size_t)n, "Q8_0"); return;
    case NB_QFMT_Q4_0: snprintf(buf, (size_t)n, "Q4_0"); return;
    case NB_QFMT_F16: snprintf(buf, (size_t)n, "f16"); return;
    case NB_QFMT_INT: nb_qspec_str(&wi->spec, buf, n); return;
    }
    snprintf(buf, (size_t)n, "?");
}

static nb_status exact_tensor(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    build_ctx *b = ctx;
    int idx = nb_paramset_find(&b->m->params, name);
    if (idx < 0) return nb_fail(NB_EINVAL, "export: the model has no parameter %s", name);
    nb_qat_winfo wi;
    nb_qat_weight_info(b->q, idx, &wi);
    if (!wi.quantized) return NB_OK; /* stays F32 (nb_qmodel_from_model copied it) */
    const float *W = b->m->params.p[idx].t.data;
    const int64_t R = t->rows, K = t->cols;
    nb_qmodel *qm = b->out;
    switch (wi.spec.format) {
    case NB_QFMT_Q8_0: {
        nb_block_q8_0 *d = nb_qmodel_alloc(qm, (size_t)R * nb_qtensor_row_bytes(NB_QT_Q8_0, K));
        if (!d) return NB_ENOMEM;
        for (int64_t r = 0; r < R; r++) nb_quantize_row_q8_0_ref(W + r * K, d + r * (K / 32), K);
        t->type = NB_QT_Q8_0;
        t->data = d;
        t->group = 0;
        return NB_OK;
    }
    case NB_QFMT_Q4_0: {
        nb_block_q4_0 *d = nb_qmodel_alloc(qm, (size_t)R * nb_qtensor_row_bytes(NB_QT_Q4_0, K));
        if (!d) return NB_ENOMEM;
        for (int64_t r = 0; r < R; r++) nb_quantize_row_q4_0_ref(W + r * K, d + r * (K / 32), K);
        t->type = NB_QT_Q4_0;
        t->data = d;
        t->group = 0;
        return NB_OK;
    }
    case NB_QFMT_F16: {
        uint16_t *d = nb_qmodel_alloc(qm, (size_t)(R * K) * 2);
        if (!d) return NB_ENOMEM;
        for (int64_t i = 0; i < R * K; i++) d[i] = nb_fp32_to_fp16(W[i]);
        t->type = NB_QT_F16;
        t->data = d;
        t->group = 0;
        return NB_OK;
    }
    case NB_QFMT_INT: break;
    }
    /* integer grid: the policy's own codes, scales and zero points */
    const nb_qspec *s = &wi.spec;
    int64_t ns = wi.nscales;
    int8_t *codes = nb_malloc((size_t)(R * K));
    float *sc = nb_malloc((size_t)ns * sizeof(float));
    float *zf = s->symmetric ? NULL : nb_malloc((size_t)ns * sizeof(float));
    nb_status st = !codes || !sc || (!s->symmetric && !zf) ? nb_fail(NB_ENOMEM, "export: codes of %s", name) : NB_OK;
    if (!st) st = nb_qat_weight_quantize(b->q, idx, codes, sc, zf);
    int64_t group = s->gran == NB_QGRAN_GROUP ? s->group_size : K;
    int64_t ng = (K + group - 1) / group;
    int bits = s->ternary ? 2 : s->bits;
    nb_qtype qt = bits <= 4 ? NB_QT_I4 : NB_QT_I8;
    float *scales = NULL;
    int8_t *zeros = NULL;
    void *data = NULL;
    if (!st) {
        scales = nb_qmodel_alloc(qm, (size_t)(R * ng) * sizeof(float));
        zeros = zf ? nb_qmodel_alloc(qm, (size_t)(R * ng)) : NULL;
        data = nb_qmodel_alloc(qm, (size_t)R * nb_qtensor_row_bytes(qt, K));
        if (!scales || (zf && !zeros) || !data) st = NB_ENOMEM;
    }
    if (!st) {
        /* scale index: tensor 0, row r, group r * ng + g (quant.h) */
        for (int64_t r = 0; r < R; r++)
            for (int64_t g = 0; g < ng; g++) {
                int64_t k = s->gran == NB_QGRAN_TENSOR ? 0 : s->gran == NB_QGRAN_ROW ? r : r * ng + g;
                scales[r * ng + g] = sc[k];
                if (zeros) zeros[r * ng + g] = (int8_t)zf[k];
            }
        if (qt == NB_QT_I8) memcpy(data, codes, (size_t)(R * K));
        else {
            size_t rb = nb_qtensor_row_bytes(NB_QT_I4, K);
            uint8_t *p = data;
            memset(p, 0, rb * (size_t)R);
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < K; c++) nb_i4_set(p + r * (int64_t)rb, c, codes[r * K + c]);
        }
        t->type = qt;
        t->group = group;
        /* the runtime quantizes this weight's input as the policy trained it: int8 per token
           (symmetric -127..127) when the rule said token, else on the weight's own groups */
        t->act_group = wi.act_quantized && wi.act_dynamic && wi.act_spec.format == NB_QFMT_INT &&
                               wi.act_spec.gran != NB_QGRAN_GROUP
                           ? K
                           : 0;
        t->data = data;
        t->scales = scales;
        t->zeros = zeros;
    }
    nb_free(codes);
    nb_free(sc);
    nb_free(zf);
    return st;
}

nb_status nb_export_build(nb_model *m, nb_qat *q, const nb_tokenizer *tok, nb_qmodel **out) {
    *out = NULL;
    nb_qmodel *qm;
    NB_TRY(nb_qmodel_from_model(m, tok, &qm));
    build_ctx b = {m, q, qm};
    nb_status st = q ? nb_rt_visit(qm, exact_tensor, &b) : NB_OK;
    if (!st && m->cfg.tied) qm->classifier = qm->tok_emb;
    if (st) {
        nb_qmodel_free(qm);
        return st;
    }
    *out = qm;
    return NB_OK;
}

/* ---- fitting the model to a format ---- */

typedef struct conv_ctx {
    const nb_export_opts *o;
    nb_model *m;
    nb_qat *q;
    nb_qmodel *x;    /* the model being converted (tensors replaced in place) */
    int allow;       /* requantize what does not fit */
    int gs;          /* llama2c group size */
} conv_ctx;

static int is_norm(const char *name) {
    size_t n = strlen(name);
    return n >= 4 && !strcmp(name + n - 4, "norm");
}

static void tensor_grid(conv_ctx *c, const char *name, const nb_qtensor *t, char *buf, int n) {
    int idx = c->m ? nb_paramset_find(&c->m->params, name) : -1;
    if (c->q && idx >= 0) {
        nb_qat_winfo wi;
        nb_qat_weight_info(c->q, idx, &wi);
        grid_text(&wi, buf, n);
        return;
    }
    if (t->type == NB_QT_I8 || t->type == NB_QT_I4)
        snprintf(buf, (size_t)n, "%s %s g%lld", t->type == NB_QT_I8 ? "int8" : "int4", t->zeros ? "asym" : "sym",
                 (long long)t->group);
    else snprintf(buf, (size_t)n, "%s", t->type == NB_QT_F32 ? "fp32" : nb_qtype_name(t->type));
}

static int64_t gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int zeros_all_zero(const nb_qtensor *t) {
    if (!t->zeros) return 1;
    int64_t n = t->rows * nb_qtensor_ngroups(t);
    for (int64_t i = 0; i < n; i++)
        if (t->zeros[i]) return 0;
    return 1;
}

static int code_at(const nb_qtensor *t, int64_t r, int64_t c) {
    const uint8_t *row = (const uint8_t *)t->data + (size_t)r * nb_qtensor_row_bytes(t->type, t->cols);
    return t->type == NB_QT_I8 ? ((const int8_t *)row)[c] : nb_i4_get(row, c);
}

static nb_status refuse(conv_ctx *c, const char *name, const nb_qtensor *t, const char *why) {
    char grid[64];
    tensor_grid(c, name, t, grid, sizeof grid);
    return nb_fail(NB_EINVAL,
                   "%s cannot hold %s exactly: its grid is %s, and %s; use --requantize to requantize it with %s's own "
                   "quantizer (the error it adds is reported)",
                   nb_export_format_name(c->o->format), name, grid, why, nb_export_format_name(c->o->format));
}

/* requantize t (its current dequantized values) to type/group with the runtime's quantizers */
static nb_status requant(conv_ctx *c, nb_qtensor *t, nb_qtype type, int64_t group) {
    float *w = nb_malloc((size_t)(t->rows * t->cols) * sizeof(float));
    if (!w) return nb_fail(NB_ENOMEM, "export: requantize (%lld, %lld)", (long long)t->rows, (long long)t->cols);
    for (int64_t r = 0; r < t->rows; r++) nb_qtensor_dequant_row(t, r, w + r * t->cols);
    nb_qtensor n = {type, t->rows, t->cols, group, NULL, NULL, NULL};
    nb_status st = nb_rt_quantize_tensor(c->x, w, &n);
    nb_free(w);
    if (!st) *t = n;
    return st;
}

/* GGUF: Q4_0 / Q8_0 blocks from an int grid, when exact; else why not (in why) */
static int gguf_fits(const nb_qtensor *t, char *why, size_t n) {
    if (!zeros_all_zero(t)) return snprintf(why, n, "it is asymmetric (zero points; GGUF's Q4_0/Q8_0 are symmetric)"), 0;
    if (t->cols % 32)
        return snprintf(why, n, "its rows of %lld are not a multiple of GGUF's 32-weight blocks", (long long)t->cols), 0;
    if (t->group % 32)
        return snprintf(why, n, "its scale groups of %lld weights do not hold whole 32-weight blocks", (long long)t->group), 0;
    int64_t ns = t->rows * nb_qtensor_ngroups(t);
    for (int64_t i = 0; i < ns; i++)
        if (!(nb_round_fp16(t->scales[i]) == t->scales[i]))
            return snprintf(why, n, "its scales are fp32 (scale %lld is %.9g; GGUF blocks store fp16 scales: train with "
                                    "scale_dtype: f16 or the q4_0/q8_0 preset)", (long long)i, (double)t->scales[i]), 0;
    if (t->type == NB_QT_I8)
        for (int64_t r = 0; r < t->rows; r++)
            for (int64_t k = 0; k < t->cols; k++)
                if (code_at(t, r, k) == -128)
                    return snprintf(why, n, "row %lld holds the int8 code -128 (Q8_0 holds -127..127: restrict_range)",
                                    (long long)r), 0;
    return 1;
}

static nb_status to_blocks(conv_ctx *c, nb_qtensor *t) {
    const int64_t R = t->rows, K = t->cols, nb = K / 32, ng = nb_qtensor_ngroups(t);
    nb_qtype type = t->type == NB_QT_I4 ? NB_QT_Q4_0 : NB_QT_Q8_0;
    uint8_t *d = nb_qmodel_alloc(c->x, (size_t)R * nb_qtensor_row_bytes(type, K));
    if (!d) return NB_ENOMEM;
    for (int64_t r = 0; r < R; r++)
        for (int64_t b = 0; b < nb; b++) {
            uint16_t h = nb_fp32_to_fp16(t->scales[r * ng + (b * 32) / t->group]);
            if (type == NB_QT_Q8_0) {
                nb_block_q8_0 *y = (nb_block_q8_0 *)d + r * nb + b;
                y->d = h;
                for (int j = 0; j < 32; j++) y->qs[j] = (int8_t)code_at(t, r, b * 32 + j);
            } else {
                nb_block_q4_0 *y = (nb_block_q4_0 *)d + r * nb + b;
                y->d = h;
                for (int j = 0; j < 16; j++)
                    y->qs[j] = (uint8_t)((code_at(t, r, b * 32 + j) + 8) | ((code_at(t, r, b * 32 + j + 16) + 8) << 4));
            }
        }
    nb_qtensor n = {type, R, K, 0, d, NULL, NULL};
    *t = n;
    return NB_OK;
}

static nb_status conv_gguf(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    conv_ctx *c = ctx;
    if (t->type != NB_QT_I8 && t->type != NB_QT_I4) return NB_OK;
    char why[256];
    if (gguf_fits(t, why, sizeof why)) return to_blocks(c, t);
    if (!c->allow) return refuse(c, name, t, why);
    nb_qtype type = t->cols % 32 ? NB_QT_F16 : t->type == NB_QT_I4 ? NB_QT_Q4_0 : NB_QT_Q8_0;
    return requant(c, t, type, 0);
}

/* llama2c: consecutive weights sharing one scale (0: the tensor cannot be int8 exactly) */
static int64_t l2c_run(const nb_qtensor *t) {
    if (t->type == NB_QT_Q8_0 || t->type == NB_QT_Q4_0) return 32;
    if ((t->type == NB_QT_I8 || t->type == NB_QT_I4) && zeros_all_zero(t)) return gcd64(t->group, t->cols);
    return 0;
}

static nb_status gs_scan(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    conv_ctx *c = ctx;
    if (is_norm(name)) return NB_OK;
    int64_t run = l2c_run(t);
    if (run) c->gs = (int)gcd64(c->gs, run);
    return NB_OK;
}

static nb_status conv_llama2c(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    conv_ctx *c = ctx;
    if (is_norm(name)) return NB_OK; /* fp32 in the format */
    const int64_t R = t->rows, K = t->cols, gs = c->gs, ngs = K / gs;
    int64_t run = l2c_run(t);
    if (!run || run % gs) {
        char why[256];
        if (t->type == NB_QT_F32 || t->type == NB_QT_F16)
            snprintf(why, sizeof why, "llama2.c version 2 stores every matrix as int8 (this one is %s)",
                     t->type == NB_QT_F32 ? "fp32" : "fp16");
        else if (!run) snprintf(why, sizeof why, "it is asymmetric (zero points; llama2.c's int8 is symmetric)");
        else
            snprintf(why, sizeof why, "its scale groups of %lld weights do not split into the file's groups of %lld",
                     (long long)run, (long long)gs);
        if (!c->allow) return refuse(c, name, t, why);
        return requant(c, t, NB_QT_I8, gs);
    }
    int8_t *codes = nb_qmodel_alloc(c->x, (size_t)(R * K));
    float *sc = nb_qmodel_alloc(c->x, (size_t)(R * ngs) * sizeof(float));
    if (!codes || !sc) return NB_ENOMEM;
    for (int64_t r = 0; r < R; r++)
        for (int64_t g = 0; g < ngs; g++) {
            int64_t k0 = g * gs;
            if (t->type == NB_QT_Q8_0 || t->type == NB_QT_Q4_0) {
                int64_t b = k0 / 32;
                if (t->type == NB_QT_Q8_0) {
                    const nb_block_q8_0 *y = (const nb_block_q8_0 *)t->data + r * (K / 32) + b;
                    sc[r * ngs + g] = nb_fp16_to_fp32(y->d);
                    for (int64_t j = 0; j < gs; j++) codes[r * K + k0 + j] = y->qs[(k0 + j) % 32];
                } else {
                    const nb_block_q4_0 *y = (const nb_block_q4_0 *)t->data + r * (K / 32) + b;
                    sc[r * ngs + g] = nb_fp16_to_fp32(y->d);
                    for (int64_t j = 0; j < gs; j++) codes[r * K + k0 + j] = (int8_t)nb_q4_0_code(y, (int)((k0 + j) % 32));
                }
            } else {
                sc[r * ngs + g] = t->scales[r * nb_qtensor_ngroups(t) + k0 / t->group];
                for (int64_t j = 0; j < gs; j++) codes[r * K + k0 + j] = (int8_t)code_at(t, r, k0 + j);
            }
        }
    nb_qtensor n = {NB_QT_I8, R, K, gs, codes, sc, NULL};
    *t = n;
    return NB_OK;
}

/* ---- error report ---- */

typedef struct cmp_ctx {
    nb_qmodel *ref;
    nb_export_report *r;
    conv_ctx *c;
    double sum_d2, sum_w2;
    nb_qtensor *ref_tensors[4096];
    int n_ref;
} cmp_ctx;

static nb_status collect_ref(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)name;
    (void)layer;
    cmp_ctx *k = ctx;
    if (k->n_ref >= (int)(sizeof k->ref_tensors / sizeof k->ref_tensors[0]))
        return nb_fail(NB_EUNSUPPORTED, "export: more than %d tensors", k->n_ref);
    k->ref_tensors[k->n_ref++] = t;
    return NB_OK;
}

static const char *stored_text(const nb_qtensor *t, char *buf, size_t n) {
    if (t->type == NB_QT_I8 || t->type == NB_QT_I4)
        snprintf(buf, n, "%s%s g%lld", nb_qtype_name(t->type), t->zeros ? " asym" : "", (long long)t->group);
    else snprintf(buf, n, "%s", nb_qtype_name(t->type));
    return buf;
}

static nb_status compare_one(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    cmp_ctx *k = ctx;
    nb_export_report *r = k->r;
    const nb_qtensor *a = k->ref_tensors[r->n];
    nb_export_tensor *e = &r->t[r->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    tensor_grid(k->c, name, a, e->grid, sizeof e->grid);
    stored_text(t, e->stored, sizeof e->stored);
    e->numel = t->rows * t->cols;
    float *x = nb_malloc((size_t)t->cols * sizeof(float)), *y = nb_malloc((size_t)t->cols * sizeof(float));
    if (!x || !y) {
        nb_free(x);
        nb_free(y);
        return nb_fail(NB_ENOMEM, "export: compare %s", name);
    }
    double d2 = 0, w2 = 0, mx = 0;
    for (int64_t row = 0; row < t->rows; row++) {
        nb_qtensor_dequant_row(a, row, x);
        nb_qtensor_dequant_row(t, row, y);
        for (int64_t j = 0; j < t->cols; j++) {
            double d = (double)y[j] - (double)x[j];
            if (!(fabs(d) <= mx)) mx = fabs(d);
            if (x[j] != y[j]) e->changed = 1;
            d2 += d * d;
            w2 += (double)x[j] * x[j];
        }
    }
    nb_free(x);
    nb_free(y);
    e->max_abs = mx;
    e->rel_rms = w2 > 0 ? sqrt(d2 / w2) : sqrt(d2);
    k->sum_d2 += d2;
    k->sum_w2 += w2;
    if (mx > r->max_abs) r->max_abs = mx;
    r->n_changed += e->changed;
    return NB_OK;
}

/* ---- the command ---- */

static int64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* the quant: section of a recipe text (top-level key to the next top-level key) */
static char *quant_section(const char *recipe) {
    if (!recipe) return NULL;
    const char *p = recipe, *start = NULL, *end = NULL;
    while (*p) {
        const char *eol = strchr(p, '\n');
        const char *next = eol ? eol + 1 : p + strlen(p);
        if (!start) {
            if (!strncmp(p, "quant:", 6)) start = p;
        } else if (*p != ' ' && *p != '\t' && *p != '#' && *p != '\n' && *p != '\r') {
            end = p;
            break;
        }
        p = next;
    }
    if (!start) return NULL;
    if (!end) end = recipe + strlen(recipe);
    char *s = nb_malloc((size_t)(end - start) + 1);
    if (!s) return NULL;
    memcpy(s, start, (size_t)(end - start));
    s[end - start] = 0;
    return s;
}

static nb_status policy_text(nb_qmodel *x, const char *ckpt, const nb_export_report *r) {
    char *recipe = NULL;
    if (nb_file_is_hdf5(ckpt)) {
        nb_ckpt *c = NULL;
        if (nb_ckpt_open(ckpt, &c) == NB_OK) {
            if (nb_ckpt_read_attr(c, "recipe", &recipe) != NB_OK) recipe = NULL;
            nb_ckpt_close(c);
        }
        nb_clear_error();
    }
    char *qs = quant_section(recipe);
    nb_free(recipe);
    size_t cap = (qs ? strlen(qs) : 0) + 64 + (size_t)r->n * 200;
    char *s = nb_qmodel_alloc(x, cap);
    if (!s) {
        nb_free(qs);
        return NB_ENOMEM;
    }
    size_t o = (size_t)snprintf(s, cap, "%s# tensors (trained grid -> stored type):\n", qs ? qs : "");
    for (int i = 0; i < r->n && o < cap; i++)
        o += (size_t)snprintf(s + o, cap - o, "# %s: %s -> %s%s\n", r->t[i].name, r->t[i].grid, r->t[i].stored,
                              r->t[i].changed ? " (requantized)" : "");
    nb_free(qs);
    x->policy = s;
    return NB_OK;
}

static nb_status write_format(nb_qmodel *x, const char *path, const nb_export_opts *o, const char *name, int gs) {
    switch (o->format) {
    case NB_EXPORT_NIBBLE: return nb_export_nb_write(x, path);
    case NB_EXPORT_GGUF: return nb_gguf_write(x, path, name);
    case NB_EXPORT_LLAMA2C: {
        int used = 0;
        NB_TRY(nb_llama2c_write_v2(x, path, gs, &used));
        if (used != gs) return nb_fail(NB_EINVAL, "llama2c: group size %d was changed to %d by the writer", gs, used);
        return NB_OK;
    }
    }
    return nb_fail(NB_EINVAL, "export: unknown format %d", (int)o->format);
}

nb_status nb_export_checkpoint(const char *ckpt, const char *out, const nb_export_opts *o, nb_export_report *rep) {
    nb_export_report local;
    nb_export_report *r = rep ? rep : &local;
    memset(r, 0, sizeof *r);
    nb_model m;
    nb_tokenizer *tok = NULL;
    nb_qat *q = NULL;
    nb_qmodel *ex = NULL, *x = NULL;
    char *tmp = NULL;
    NB_TRY(nb_export_open_model(ckpt, o->tokenizer, &m, &tok));
    nb_status st = nb_qat_load_file(ckpt, &m, &q);
    r->quantized = q != NULL;
    r->ckpt_bytes = file_size(ckpt);
    r->fp32_bytes = nb_model_numel(&m) * 4;
    if (!st && q && o->type)
        st = nb_fail(NB_EINVAL, "--type %s: %s carries a quantization policy and exports its trained grid (use "
                                "--requantize to convert what the format cannot hold)", o->type, ckpt);
    nb_qtype tt = NB_QT_F32;
    if (!st && o->type) {
        int v = nb_qtype_parse(o->type);
        if (v < 0 || v == NB_QT_F32) st = nb_fail(NB_EINVAL, "--type: expected q8_0, q4_0, int8, int4 or f16, got \"%s\"", o->type);
        else tt = (nb_qtype)v;
        if (!st && o->format == NB_EXPORT_GGUF && (tt == NB_QT_I8 || tt == NB_QT_I4))
            st = nb_fail(NB_EINVAL, "--type %s: GGUF holds f32, f16, q8_0 and q4_0 (use --type q8_0 or q4_0)", o->type);
        if (!st && o->format == NB_EXPORT_LLAMA2C && tt != NB_QT_I8)
            st = nb_fail(NB_EINVAL, "--type %s: llama2.c version 2 holds int8 only (use --type int8 or no --type)", o->type);
    }
    if (!st) st = nb_export_build(&m, q, tok, &ex);
    /* x: the model to write; ex stays the trained reference for the error report */
    if (!st && o->type) st = nb_qmodel_quantize(ex, tt, o->group, NB_QT_F32, &x);
    else if (!st) st = nb_export_build(&m, q, tok, &x); /* the exact tensors again */
    conv_ctx c = {o, &m, q, x, o->requantize || (!q && !o->type && o->format == NB_EXPORT_LLAMA2C) || (!q && o->type), 0};
    if (!st && o->format == NB_EXPORT_GGUF) st = nb_rt_visit(x, conv_gguf, &c);
    if (!st && o->format == NB_EXPORT_LLAMA2C) {
        c.gs = 0;
        st = nb_rt_visit(x, gs_scan, &c);
        if (!st) {
            if (c.gs == 0) c.gs = 64;
            c.gs = (int)gcd64(gcd64(c.gs, x->cfg.dim), x->cfg.hidden_dim);
            if (o->type && o->group > 0) c.gs = (int)gcd64(gcd64(o->group, x->cfg.dim), x->cfg.hidden_dim);
            r->llama2c_gs = c.gs;
            st = nb_rt_visit(x, conv_llama2c, &c);
        }
    }
    if (!st && x->cfg.tied) x->classifier = x->tok_emb;
    cmp_ctx *k = NULL;
    if (!st) {
        k = nb_calloc(1, sizeof *k);
        r->t = nb_calloc((size_t)(4 + 9 * (size_t)x->cfg.n_layers), sizeof *r->t);
        if (!k || !r->t) st = nb_fail(NB_ENOMEM, "export: report");
    }
    if (!st) {
        k->ref = ex;
        k->r = r;
        k->c = &c;
        st = nb_rt_visit(ex, collect_ref, k);
        if (!st) st = nb_rt_visit(x, compare_one, k);
        r->rel_rms = k->sum_w2 > 0 ? sqrt(k->sum_d2 / k->sum_w2) : 0;
    }
    nb_free(k);
    if (!st) st = policy_text(x, ckpt, r);
    if (!st) {
        size_t n = strlen(out) + 32;
        tmp = nb_malloc(n);
        if (!tmp) st = NB_ENOMEM;
        else snprintf(tmp, n, "%s.tmp-%d", out, (int)getpid());
    }
    if (!st) {
        char name[128];
        const char *b = strrchr(ckpt, '/');
        snprintf(name, sizeof name, "%s", b ? b + 1 : ckpt);
        char *dot = strrchr(name, '.');
        if (dot && dot != name) *dot = 0;
        st = write_format(x, tmp, o, name, c.gs);
        if (!st) {
            FILE *f = fopen(tmp, "rb+");
            if (f) {
                fflush(f);
                fsync(fileno(f));
                fclose(f);
            }
            if (rename(tmp, out) != 0) st = nb_fail(NB_EIO, "rename %s to %s: %s", tmp, out, strerror(errno));
        }
        if (st) remove(tmp);
    }
    if (!st) r->out_bytes = file_size(out);
    nb_free(tmp);
    nb_qmodel_free(ex);
    nb_qmodel_free(x);
    nb_qat_free(q);
    nb_tokenizer_free(tok);
    nb_model_free(&m);
    if (r == &local) nb_export_report_free(r);
    return st;
}

void nb_export_report_print(FILE *f, const nb_export_report *r, const char *out_path) {
    if (r->n_changed) {
        fprintf(f, "requantized tensors (error against the trained weights):\n");
        fprintf(f, "  %-26s %-22s %-14s %12s %10s\n", "tensor", "trained grid", "stored", "max |dw|", "rel RMS");
        for (int i = 0; i < r->n; i++)
            if (r->t[i].changed)
                fprintf(f, "  %-26s %-22s %-14s %12.4g %9.4f%%\n", r->t[i].name, r->t[i].grid, r->t[i].stored,
                        r->t[i].max_abs, 100.0 * r->t[i].rel_rms);
        fprintf(f, "  overall: %d of %d tensors changed, max |dw| %.4g, relative RMS %.4f%%\n", r->n_changed, r->n,
                r->max_abs, 100.0 * r->rel_rms);
    } else {
        fprintf(f, "all %d tensors exported exactly as trained (no requantization)\n", r->n);
    }
    if (r->llama2c_gs) fprintf(f, "llama2.c group size: %d\n", r->llama2c_gs);
    double fp = (double)r->fp32_bytes;
    fprintf(f, "sizes: checkpoint %.2f MB (weights as fp32 %.2f MB) -> %s %.2f MB (fp32 weights / export = %.2fx)\n",
            (double)r->ckpt_bytes / 1e6, fp / 1e6, out_path, (double)r->out_bytes / 1e6,
            r->out_bytes > 0 ? fp / (double)r->out_bytes : 0.0);
}
