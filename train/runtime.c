/* runtime.c: the integer inference runtime: quantized matmul drivers, forward pass with KV cache,
   generation, evaluation and model description. Loaders live in runtime_io.c and the formats. */
#include "runtime.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fp16.h"
#include "../core/rng.h"
#include "../data/tokenizer.h"
#include "../ops/kernels/attn.h"
#include "../ops/ops.h"
#include "../ops/kernels/qdot.h"
#include "../ops/kernels/vec.h"

const char *nb_qtype_name(nb_qtype t) {
    switch (t) {
    case NB_QT_F32: return "f32";
    case NB_QT_F16: return "f16";
    case NB_QT_Q8_0: return "q8_0";
    case NB_QT_Q4_0: return "q4_0";
    case NB_QT_I8: return "int8";
    case NB_QT_I4: return "int4";
    }
    return "?";
}

int nb_qtype_parse(const char *s) {
    for (int t = 0; t <= NB_QT_I4; t++)
        if (!strcmp(s, nb_qtype_name((nb_qtype)t))) return t;
    if (!strcmp(s, "i8")) return NB_QT_I8;
    if (!strcmp(s, "i4")) return NB_QT_I4;
    return -1;
}

int64_t nb_qtensor_ngroups(const nb_qtensor *t) {
    if (t->type != NB_QT_I8 && t->type != NB_QT_I4) return 0;
    return (t->cols + t->group - 1) / t->group;
}

size_t nb_qtensor_row_bytes(nb_qtype type, int64_t cols) {
    switch (type) {
    case NB_QT_F32: return (size_t)cols * 4;
    case NB_QT_F16: return (size_t)cols * 2;
    case NB_QT_Q8_0: return (size_t)(cols / NB_QK) * sizeof(nb_block_q8_0);
    case NB_QT_Q4_0: return (size_t)(cols / NB_QK) * sizeof(nb_block_q4_0);
    case NB_QT_I8: return (size_t)cols;
    case NB_QT_I4: return (size_t)(cols + 1) / 2;
    }
    return 0;
}

void nb_qtensor_dequant_row(const nb_qtensor *t, int64_t r, float *out) {
    const uint8_t *row = (const uint8_t *)t->data + (size_t)r * nb_qtensor_row_bytes(t->type, t->cols);
    int64_t n = t->cols, ng = nb_qtensor_ngroups(t);
    switch (t->type) {
    case NB_QT_F32: memcpy(out, row, (size_t)n * 4); break;
    case NB_QT_F16:
        for (int64_t i = 0; i < n; i++) out[i] = nb_fp16_to_fp32(((const uint16_t *)row)[i]);
        break;
    case NB_QT_Q8_0: {
        const nb_block_q8_0 *b = (const nb_block_q8_0 *)row;
        for (int64_t i = 0; i < n; i++) out[i] = nb_fp16_to_fp32(b[i / NB_QK].d) * b[i / NB_QK].qs[i % NB_QK];
        break;
    }
    case NB_QT_Q4_0: {
        const nb_block_q4_0 *b = (const nb_block_q4_0 *)row;
        for (int64_t i = 0; i < n; i++) {
            int j = (int)(i % NB_QK);
            uint8_t byte = b[i / NB_QK].qs[j % 16];
            int q = (j < 16 ? byte & 15 : byte >> 4) - 8;
            out[i] = nb_fp16_to_fp32(b[i / NB_QK].d) * q;
        }
        break;
    }
    case NB_QT_I8:
    case NB_QT_I4:
        for (int64_t i = 0; i < n; i++) {
            int64_t g = i / t->group;
            int q = t->type == NB_QT_I8 ? ((const int8_t *)row)[i] : nb_i4_get(row, i);
            int z = t->zeros ? t->zeros[r * ng + g] : 0;
            out[i] = t->scales[r * ng + g] * (float)(q - z);
        }
        break;
    }
}

/* ---- model memory ---- */

static int own(nb_qmodel *m, void *p) {
    if (m->n_allocs == m->cap_allocs) {
        int cap = m->cap_allocs ? 2 * m->cap_allocs : 64;
        void **a = nb_realloc(m->allocs, (size_t)cap * sizeof(void *));
        if (!a) return 0;
        m->allocs = a;
        m->cap_allocs = cap;
    }
    m->allocs[m->n_allocs++] = p;
    return 1;
}

/* Blocks of 16 KiB and more (weights, scales, file images) are carved from chunks of at least
   4 MiB on transparent huge pages (nb_malloc_huge): a decode step reads every weight once, and on
   4 KiB pages the TLB misses cost about a third of an int8 step (bench_decode). */
#define ARENA_MIN ((size_t)16 << 10)
#define ARENA_CHUNK ((size_t)4 << 20)

void *nb_qmodel_alloc(nb_qmodel *m, size_t bytes) {
    if (bytes < ARENA_MIN) {
        void *p = nb_calloc(1, bytes ? bytes : 1);
        if (p && !own(m, p)) nb_free(p), p = NULL;
        return p;
    }
    if (bytes > NB_MAX_ALLOC) return NULL;
    const size_t need = (bytes + 63) & ~(size_t)63;
    if (need > m->arena_left) {
        const size_t chunk = need > ARENA_CHUNK / 2 ? need : ARENA_CHUNK;
        uint8_t *c = nb_malloc_huge(chunk);
        if (!c) return NULL;
        if (!own(m, c)) {
            nb_free(c);
            return NULL;
        }
        if (chunk == need) { /* a block of its own: keep the current chunk's room */
            memset(c, 0, bytes);
            return c;
        }
        m->arena = c;
        m->arena_left = chunk;
    }
    uint8_t *p = m->arena;
    m->arena += need;
    m->arena_left -= need;
    memset(p, 0, bytes);
    return p;
}

void nb_qmodel_free(nb_qmodel *m) {
    if (!m) return;
    nb_tokenizer_free(m->tok);
    for (int i = 0; i < m->n_allocs; i++) nb_free(m->allocs[i]);
    nb_free(m->allocs);
    nb_free(m);
}

nb_status nb_qconfig_check(const nb_qconfig *c, const char *what) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab <= 0 || c->seq_len <= 0)
        return nb_fail(NB_EFORMAT, "%s: config has a non-positive size (dim %d hidden %d layers %d heads %d kv_heads %d "
                       "vocab %d seq_len %d)", what, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->vocab, c->seq_len);
    if (c->dim > (1 << 16) || c->hidden_dim > (1 << 18) || c->n_layers > 1024 || c->vocab > (1 << 22) ||
        c->seq_len > (1 << 20) || c->n_heads > 1024)
        return nb_fail(NB_EFORMAT, "%s: config sizes are implausibly large (dim %d hidden %d layers %d vocab %d seq_len %d)",
                       what, c->dim, c->hidden_dim, c->n_layers, c->vocab, c->seq_len);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads || (c->dim / c->n_heads) % 2)
        return nb_fail(NB_EFORMAT, "%s: dim %d, n_heads %d, n_kv_heads %d do not fit (heads must divide dim, kv heads "
                       "divide heads, head size even)", what, c->dim, c->n_heads, c->n_kv_heads);
    if (!(c->norm_eps > 0 && c->norm_eps < 1) || !(c->rope_theta > 1))
        return nb_fail(NB_EFORMAT, "%s: bad norm_eps %g or rope_theta %g", what, c->norm_eps, c->rope_theta);
    return NB_OK;
}

static void set_shape(nb_qtensor *t, int64_t rows, int64_t cols) {
    memset(t, 0, sizeof *t);
    t->type = NB_QT_F32;
    t->rows = rows;
    t->cols = cols;
}

nb_status nb_qmodel_new(const nb_qconfig *cfg, nb_qmodel **out) {
    *out = NULL;
    NB_TRY(nb_qconfig_check(cfg, "model"));
    nb_qmodel *m = nb_calloc(1, sizeof *m);
    if (!m) return NB_ENOMEM;
    m->cfg = *cfg;
    m->layers = nb_qmodel_alloc(m, (size_t)cfg->n_layers * sizeof(nb_qlayer));
    if (!m->layers) {
        nb_qmodel_free(m);
        return NB_ENOMEM;
    }
    int C = cfg->dim, H = cfg->hidden_dim, kv = cfg->dim / cfg->n_heads * cfg->n_kv_heads;
    set_shape(&m->tok_emb, cfg->vocab, C);
    set_shape(&m->norm, 1, C);
    set_shape(&m->classifier, cfg->vocab, C);
    for (int l = 0; l < cfg->n_layers; l++) {
        nb_qlayer *L = &m->layers[l];
        set_shape(&L->attn_norm, 1, C);
        set_shape(&L->ffn_norm, 1, C);
        set_shape(&L->wq, C, C);
        set_shape(&L->wk, kv, C);
        set_shape(&L->wv, kv, C);
        set_shape(&L->wo, C, C);
        set_shape(&L->w1, H, C);
        set_shape(&L->w2, C, H);
        set_shape(&L->w3, H, C);
    }
    *out = m;
    return NB_OK;
}

/* ---- state ---- */

static float *cache_alloc(size_t floats) { /* zeroed, on huge pages when big */
    if (floats > NB_MAX_ALLOC / 4) return NULL;
    float *p = nb_malloc_huge(floats * 4);
    if (p) memset(p, 0, floats * 4);
    return p;
}

/* A state's packed copy of one int8/int4 matrix (nb_qpack), found again by the tensor and the
   arrays it points to: a state multiplies the tensors of one model, which outlive it. */
typedef struct qpack_entry {
    const nb_qtensor *W;
    const void *data;
    const float *scales;
    int64_t rows, cols, group;
    nb_qtype type;
    void *pk;
} qpack_entry;

nb_status nb_qstate_init(nb_qstate *s, const nb_qmodel *m, int max_batch) {
    memset(s, 0, sizeof *s);
    const nb_qconfig *c = &m->cfg;
    if (max_batch < 1) max_batch = 1;
    s->max_batch = max_batch;
    size_t B = (size_t)max_batch, kv = (size_t)c->dim / c->n_heads * c->n_kv_heads;
    s->x = nb_calloc(B * c->dim, 4);
    s->xb = nb_calloc(B * c->dim, 4);
    s->xb2 = nb_calloc(B * c->dim, 4);
    s->q = nb_calloc(B * c->dim, 4);
    s->hb = nb_calloc(B * c->hidden_dim, 4);
    s->hb2 = nb_calloc(B * c->hidden_dim, 4);
    s->att = nb_calloc(2 * (size_t)(c->dim / c->n_heads), 4); /* the RoPE tables (cos, sin) of one position */
    s->key_cache = cache_alloc((size_t)c->n_layers * c->seq_len * kv);
    s->value_cache = cache_alloc((size_t)c->n_layers * c->seq_len * kv);
    s->key_cache_t = cache_alloc((size_t)c->n_layers * c->seq_len * kv);
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->hb || !s->hb2 || !s->att || !s->key_cache || !s->value_cache ||
        !s->key_cache_t) {
        nb_qstate_free(s);
        return nb_fail(NB_ENOMEM, "runtime state: out of memory (batch %d, seq_len %d)", max_batch, c->seq_len);
    }
    return NB_OK;
}

void nb_qstate_free(nb_qstate *s) {
    nb_free(s->x);
    nb_free(s->xb);
    nb_free(s->xb2);
    nb_free(s->q);
    nb_free(s->hb);
    nb_free(s->hb2);
    nb_free(s->att);
    nb_free(s->key_cache);
    nb_free(s->value_cache);
    nb_free(s->key_cache_t);
    nb_free(s->qbuf);
    nb_free(s->plans);
    qpack_entry *pe = s->packs;
    for (int i = 0; i < s->n_packs; i++) nb_free(pe[i].pk);
    nb_free(s->packs);
    memset(s, 0, sizeof *s);
}

static void *scratch(nb_qstate *s, size_t bytes) {
    if (bytes > s->qcap) {
        void *p = nb_realloc(s->qbuf, bytes);
        if (!p) return NULL;
        s->qbuf = p;
        s->qcap = bytes;
    }
    return s->qbuf;
}

/* Does W take the packed matvec (symmetric int8/int4 on whole groups of 32, or one group a row,
   on an AVX-512 VNNI CPU)? */
static int packable(const nb_qtensor *W) {
    return (W->type == NB_QT_I8 || W->type == NB_QT_I4) && nb_qpack_ok(W->cols, W->group, W->zeros != NULL) &&
           nb_qpack_available();
}

/* W's packed copy in this state, made at its first use (outside any parallel region); NULL when
   W is not packable or memory is short (the row dots then give the same bits, slower) */
static const void *state_pack(nb_qstate *s, const nb_qtensor *W) {
    if (!packable(W)) return NULL;
    qpack_entry *pe = s->packs;
    for (int i = 0; i < s->n_packs; i++)
        if (pe[i].W == W && pe[i].data == W->data && pe[i].scales == W->scales && pe[i].rows == W->rows &&
            pe[i].cols == W->cols && pe[i].group == W->group && pe[i].type == W->type)
            return pe[i].pk;
    if (s->n_packs == s->cap_packs) {
        int cap = s->cap_packs ? 2 * s->cap_packs : 16;
        void *p = nb_realloc(s->packs, (size_t)cap * sizeof(qpack_entry));
        if (!p) return NULL;
        s->packs = p, s->cap_packs = cap;
        pe = p;
    }
    const int i4 = W->type == NB_QT_I4;
    const size_t bytes = nb_qpack_bytes(i4, W->rows, W->cols, W->group);
    void *pk = bytes <= NB_MAX_ALLOC ? nb_malloc_huge(bytes) : NULL;
    if (!pk) return NULL;
    nb_qpack(i4, W->rows, W->cols, W->group, W->data, W->scales, pk);
    pe[s->n_packs++] = (qpack_entry){W, W->data, W->scales, W->rows, W->cols, W->group, W->type, pk};
    return pk;
}

/* ---- matmul drivers ---- */

/* How a matrix wants its activation rows: fp32 as they are, Q8_0 blocks (ggml types), or int8
   codes on groups (nibble int8/int4). Matrices with equal keys share one quantized copy. */
typedef struct act_key {
    int kind;      /* 0 fp32, 1 Q8_0 blocks, 2 int8 codes */
    int64_t K;     /* input features */
    int64_t ag;    /* kind 2: activation group (elements per scale) */
    int64_t group; /* kind 2: the weight's group (scales repeated on it; lane sums over it) */
    int lanes;     /* kind 2: lane sums wanted (the packed matvec, nb_qpack) */
} act_key;

typedef struct act_prep {
    act_key key;
    size_t off, row; /* offset in the scratch, bytes per token row */
    size_t xs_off;   /* kind 2: scales within a row */
    size_t ls_off;   /* kinds 1, 2: lane sums within a row (nb_act_lanesums*) */
} act_prep;

static act_key key_of(const nb_qtensor *W) {
    act_key k = {0, W->cols, 0, 0, 0};
    if (W->type == NB_QT_Q8_0 || W->type == NB_QT_Q4_0) k.kind = 1;
    if (W->type == NB_QT_I8 || W->type == NB_QT_I4) {
        k.kind = 2;
        k.ag = W->act_group > 0 ? W->act_group : W->group;
        k.group = W->group;
        k.lanes = packable(W);
    }
    return k;
}

static int same_key(const act_key *a, const act_key *b) {
    return a->kind == b->kind && a->K == b->K && a->ag == b->ag && a->group == b->group && a->lanes == b->lanes;
}

/* Rows [r0, r0 + nr) of W for every token. */
static void rows_block(const nb_qtensor *W, const act_prep *p, const void *pk, const uint8_t *abuf, const float *X,
                       int64_t T, int64_t r0, int64_t nr, float *Y) {
    const int64_t R = W->rows, K = W->cols;
    const size_t rb = nb_qtensor_row_bytes(W->type, K);
    const uint8_t *wd = W->data;
    switch (W->type) {
    case NB_QT_F32:
    case NB_QT_F16:
        for (int64_t r = r0; r < r0 + nr; r++)
            for (int64_t t = 0; t < T; t++)
                Y[t * R + r] = W->type == NB_QT_F32 ? nb_dot_f32(K, (const float *)(wd + r * rb), X + t * K)
                                                    : nb_dot_f16(K, (const uint16_t *)(wd + r * rb), X + t * K);
        return;
    case NB_QT_Q8_0:
    case NB_QT_Q4_0:
        for (int64_t t = 0; t < T; t++) {
            const nb_block_q8_0 *xq = (const nb_block_q8_0 *)(abuf + t * p->row);
            const int32_t *ls = (const int32_t *)(abuf + t * p->row + p->ls_off);
            if (W->type == NB_QT_Q8_0)
                nb_matvec_q8_0(nr, K, (const nb_block_q8_0 *)(wd + r0 * rb), xq, ls, Y + t * R + r0);
            else
                nb_matvec_q4_0(nr, K, (const nb_block_q4_0 *)(wd + r0 * rb), xq, ls, Y + t * R + r0);
        }
        return;
    case NB_QT_I8:
    case NB_QT_I4: {
        const int64_t ng = nb_qtensor_ngroups(W);
        if (p->key.lanes && pk) {
            for (int64_t t = 0; t < T; t++) {
                const uint8_t *xb = abuf + t * p->row;
                const float *xs = (const float *)(xb + p->xs_off);
                const int32_t *ls = (const int32_t *)(xb + p->ls_off);
                nb_matvec_qpack(W->type == NB_QT_I4, pk, R, K, W->group, r0, nr, (const int8_t *)xb, xs, ls,
                                Y + t * R + r0);
            }
            return;
        }
        const nb_dot_i8_fn f8 = nb_dot_i8_i8_pick(K, W->group, W->zeros != NULL);
        const nb_dot_i4_fn f4 = nb_dot_i4_i8_pick(K, W->group, W->zeros != NULL);
        for (int64_t r = r0; r < r0 + nr; r++)
            for (int64_t t = 0; t < T; t++) {
                const int8_t *xq = (const int8_t *)(abuf + t * p->row);
                const float *xs = (const float *)(abuf + t * p->row + p->xs_off);
                const int8_t *z = W->zeros ? W->zeros + r * ng : NULL;
                Y[t * R + r] = W->type == NB_QT_I8
                                   ? f8(K, W->group, (const int8_t *)(wd + r * rb), W->scales + r * ng, z, xq, xs)
                                   : f4(K, W->group, wd + r * rb, W->scales + r * ng, z, xq, xs);
            }
        return;
    }
    }
}

#define QMM_MAX 4   /* matrices per call */
#define QMM_ROWS 16 /* rows per work item: the kernels run several rows side by side */

/* Plan the activation copies n matrices want: prep[0..np) (one per distinct scheme), which[i] the
   copy matrix i reads; *total: bytes for T rows of all copies. */
static nb_status plan_acts(const nb_qtensor *const *W, int n, int64_t T, act_prep *prep, int *which, int *n_prep,
                           size_t *total) {
    int np = 0;
    *total = 0;
    for (int i = 0; i < n; i++) {
        if (W[i]->type > NB_QT_I4) return nb_fail(NB_EINVAL, "qmatmul: unknown weight type %d", (int)W[i]->type);
        if (W[i]->cols != W[0]->cols)
            return nb_fail(NB_EINVAL, "qmatmul: matrices read inputs of %lld and %lld features", (long long)W[0]->cols,
                           (long long)W[i]->cols);
        act_key k = key_of(W[i]);
        int j = 0;
        while (j < np && !same_key(&prep[j].key, &k)) j++;
        which[i] = j;
        if (j < np) continue;
        act_prep *p = &prep[np++];
        p->key = k;
        p->xs_off = p->ls_off = 0;
        const int64_t K = k.K;
        if (k.kind == 0) p->row = 0;
        else if (k.kind == 1) { /* blocks, then their lane sums */
            p->ls_off = ((size_t)(K / NB_QK) * sizeof(nb_block_q8_0) + 63) & ~(size_t)63;
            p->row = p->ls_off + (size_t)(K / NB_QK) * 32;
        }
        else {
            const int64_t ng = (K + k.group - 1) / k.group;
            p->xs_off = (size_t)((ng * k.group + 63) & ~63); /* codes to the end of a short last group, zeroed */
            p->ls_off = p->xs_off + (((size_t)ng * 4 + 63) & ~(size_t)63);
            p->row = (p->ls_off + (k.lanes ? (size_t)ng * 32 : 0) + 63) & ~(size_t)63;
        }
        p->off = *total;
        *total += p->row * (size_t)T;
    }
    *n_prep = np;
    return NB_OK;
}

/* Quantize the T rows of X into every planned copy (buf: NULL when no copy holds bytes). */
static void quantize_acts(const act_prep *prep, int np, const float *X, int64_t T, uint8_t *buf) {
    for (int j = 0; j < np; j++) {
        const act_prep *p = &prep[j];
        const int64_t K = p->key.K;
        uint8_t *b = buf ? buf + p->off : NULL; /* no buffer when no input is quantized (F32/F16 weights) */
        if (p->key.kind == 1)
            for (int64_t t = 0; t < T; t++) {
                nb_block_q8_0 *xq = (nb_block_q8_0 *)(b + t * p->row);
                nb_quantize_act_q8_0(X + t * K, xq, K);
                nb_act_lanesums_q8_0(K, xq, (int32_t *)(b + t * p->row + p->ls_off));
            }
        if (p->key.kind == 2) {
            const int64_t ng = (K + p->key.group - 1) / p->key.group;
            for (int64_t t = 0; t < T; t++) {
                int8_t *xq = (int8_t *)(b + t * p->row);
                float *xs = (float *)(b + t * p->row + p->xs_off);
                nb_quantize_act_i8(X + t * K, xq, xs, K, p->key.ag);
                memset(xq + K, 0, p->xs_off - (size_t)K); /* the packed kernel reads whole groups */
                if (p->key.ag != p->key.group) /* one scale per token (ag == K), repeated for every weight group */
                    for (int64_t g = ng - 1; g >= 0; g--) xs[g] = xs[0];
                if (p->key.lanes) nb_act_lanesums(K, p->key.group, xq, (int32_t *)(b + t * p->row + p->ls_off));
            }
        }
    }
}

/* (runtime.h) Each distinct activation scheme is quantized once, and all rows of all matrices are
   split between threads in one parallel region (blocks of QMM_ROWS rows, dynamic: a thread that a
   busy machine delays does not hold up a fixed share). Every row is computed by the same kernel
   whatever the thread count or schedule, so results do not depend on them. */
nb_status nb_qmatmul_n(const nb_qtensor *const *W, float *const *Y, int n, const float *X, int64_t T, nb_qstate *s) {
    if (n < 1 || n > QMM_MAX) return nb_fail(NB_EINVAL, "qmatmul: %d matrices in one call (1..%d)", n, QMM_MAX);
    act_prep prep[QMM_MAX];
    int which[QMM_MAX];
    int np = 0;
    size_t total = 0;
    NB_TRY(plan_acts(W, n, T, prep, which, &np, &total));
    int64_t macs = 0;
    for (int i = 0; i < n; i++) macs += W[i]->rows * W[i]->cols * T;
    uint8_t *buf = total ? scratch(s, total) : NULL;
    if (total && !buf) return NB_ENOMEM;
    quantize_acts(prep, np, X, T, buf);
    int64_t start[QMM_MAX + 1];
    start[0] = 0;
    for (int i = 0; i < n; i++) start[i + 1] = start[i] + (W[i]->rows + QMM_ROWS - 1) / QMM_ROWS;
    const void *pk[QMM_MAX];
    for (int i = 0; i < n; i++) pk[i] = prep[which[i]].key.lanes ? state_pack(s, W[i]) : NULL;
    const int64_t items = start[n];
#pragma omp parallel for schedule(dynamic, 2) if (macs > 32768)
    for (int64_t it = 0; it < items; it++) {
        int i = 0;
        while (it >= start[i + 1]) i++;
        const int64_t r0 = (it - start[i]) * QMM_ROWS, nr = W[i]->rows - r0 < QMM_ROWS ? W[i]->rows - r0 : QMM_ROWS;
        const act_prep *p = &prep[which[i]];
        rows_block(W[i], p, pk[i], buf ? buf + p->off : NULL, X, T, r0, nr, Y[i]);
    }
    return NB_OK;
}

nb_status nb_qmatmul(const nb_qtensor *W, const float *X, int64_t T, float *Y, nb_qstate *s) {
    return nb_qmatmul_n(&W, &Y, 1, X, T, s);
}

/* ---- forward: llama2.c run.c's model, computed with the training ops' row kernels ----
   Everything between the matmuls runs through the same nb_vec kernels, in the same order, as the
   tape forward of train/model.c (ops/norm.c, ops/rope.c, ops/attention.c, ops/activation.c), so
   the runtime and the fake-quant model compute the same bits from the same matmul outputs: a
   Q8_0 activation code downstream then never flips on a last-bit difference. */

static void softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = fmaxf(mx, x[i]);
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

/* Causal attention of rows pos..pos+B-1 over keys 0..pos+B-1 (kc, vc: (seq, kv_dim) of this layer),
   out (B, C): per head, nb_attn_forward_rows, the function nb_attention's forward runs per (batch,
   head) (ops/kernels/attn.h). A row's bits depend only on its own keys, not on the chunking
   (prefill or one-row decode) nor on the SIMD level. */
static nb_status attention(const nb_qconfig *c, nb_qstate *s, int B, int pos, const float *kc, const float *vc,
                           float *out) {
    const int C = c->dim, hs = C / c->n_heads, kv_dim = hs * c->n_kv_heads, kv_mul = c->n_heads / c->n_kv_heads;
    const size_t per = (size_t)nb_attn_scratch_floats(pos + B, hs);
    float *scr = scratch(s, per * (size_t)c->n_heads * sizeof(float));
    if (!scr) return NB_ENOMEM;
    const nb_attn_kernels *ak = nb_attn();
    /* heads in parallel once the work (rows x keys x head dim, all heads) outweighs a fork/join:
       a decode step over a long context is worth splitting; each head's bits do not depend on it */
    const int par = c->n_heads > 1 && (double)B * (pos + B) * hs * c->n_heads >= 8192.0;
#pragma omp parallel for schedule(static) if (par)
    for (int h = 0; h < c->n_heads; h++) {
        const int kvo = (h / kv_mul) * hs;
        nb_attn_forward_rows(ak, s->q + h * hs, C, kc + kvo, vc + kvo, kv_dim, out + h * hs, C, pos, B, hs, NULL, NULL,
                             scr + per * (size_t)h);
    }
    return NB_OK;
}

/* the rotated keys of kv heads [g0, g1) at position p into the transposed cache */
static void key_t_store(const nb_qconfig *c, nb_qstate *s, int l, int p, const float *kr, int64_t g0, int64_t g1) {
    const int64_t hs = c->dim / c->n_heads, S = c->seq_len;
    float *kt = s->key_cache_t + (size_t)l * S * hs * c->n_kv_heads;
    for (int64_t i = g0 * hs; i < g1 * hs; i++) kt[i * S + p] = kr[i];
}

static nb_status forward_chunk(const nb_qmodel *m, nb_qstate *s, const int32_t *tok, int B, int pos, float *logits,
                               int all_logits) {
    const nb_qconfig *c = &m->cfg;
    const int C = c->dim, H = c->hidden_dim, hs = C / c->n_heads;
    const int kv_dim = hs * c->n_kv_heads;
    const nb_vec_kernels *kk = nb_vec();
    for (int b = 0; b < B; b++) {
        if (tok[b] < 0 || tok[b] >= c->vocab)
            return nb_fail(NB_EINVAL, "forward: token %d at position %d is outside the vocabulary (%d)", tok[b], pos + b,
                           c->vocab);
        nb_qtensor_dequant_row(&m->tok_emb, tok[b], s->x + (size_t)b * C);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const nb_qlayer *L = &m->layers[l];
        float *kc = s->key_cache + (size_t)l * c->seq_len * kv_dim;
        float *vc = s->value_cache + (size_t)l * c->seq_len * kv_dim;
        for (int b = 0; b < B; b++)
            kk->rmsnorm_fwd(s->xb + (size_t)b * C, s->x + (size_t)b * C, L->attn_norm.data, c->norm_eps, C);
        /* q, k, v for all rows; k and v land in the cache at their positions */
        {
            const nb_qtensor *W[3] = {&L->wq, &L->wk, &L->wv};
            float *Y[3] = {s->q, kc + (size_t)pos * kv_dim, vc + (size_t)pos * kv_dim};
            NB_TRY(nb_qmatmul_n(W, Y, 3, s->xb, B, s)); /* one quantized activation, one parallel region */
        }
        for (int b = 0; b < B; b++) { /* each head of q, each kv head of k, rotated in place */
            float *rc = s->att, *rs = s->att + hs;
            nb_rope_tables(rc, rs, NULL, 1, hs, c->rope_theta, pos + b);
            for (int h = 0; h < c->n_heads; h++) kk->rope(s->q + (size_t)b * C + h * hs, s->q + (size_t)b * C + h * hs, rc, rs, hs, 0);
            float *kr = kc + (size_t)(pos + b) * kv_dim;
            for (int h = 0; h < c->n_kv_heads; h++) kk->rope(kr + h * hs, kr + h * hs, rc, rs, hs, 0);
            key_t_store(c, s, l, pos + b, kr, 0, c->n_kv_heads);
        }
        NB_TRY(attention(c, s, B, pos, kc, vc, s->xb));
        NB_TRY(nb_qmatmul(&L->wo, s->xb, B, s->xb2, s));
        for (size_t i = 0; i < (size_t)B * C; i++) s->x[i] += s->xb2[i];
        /* SwiGLU FFN: w2(silu(w1 x) * w3 x) */
        for (int b = 0; b < B; b++)
            kk->rmsnorm_fwd(s->xb + (size_t)b * C, s->x + (size_t)b * C, L->ffn_norm.data, c->norm_eps, C);
        {
            const nb_qtensor *W[2] = {&L->w1, &L->w3};
            float *Y[2] = {s->hb, s->hb2};
            NB_TRY(nb_qmatmul_n(W, Y, 2, s->xb, B, s));
        }
        kk->swiglu_fwd(s->hb, s->hb, s->hb2, (int64_t)B * H); /* in place: each element read before written */
        NB_TRY(nb_qmatmul(&L->w2, s->hb, B, s->xb, s));
        for (size_t i = 0; i < (size_t)B * C; i++) s->x[i] += s->xb[i];
    }
    int b0 = all_logits ? 0 : B - 1;
    for (int b = b0; b < B; b++) kk->rmsnorm_fwd(s->xb + (size_t)b * C, s->x + (size_t)b * C, m->norm.data, c->norm_eps, C);
    return nb_qmatmul(&m->classifier, s->xb + (size_t)b0 * C, B - b0, logits, s);
}

/* ---- one-token decode: one parallel region per token ----
   A decode step is some 30 small matvecs; a fork/join per matvec (nb_qmatmul_n) costs more than
   the second thread gains, so the whole token runs in one region. Each thread computes the cheap
   row-wise steps (RMSNorm, activation quantization) itself into its own buffers from the shared
   residual stream, owns a fixed contiguous share of every matrix's rows (whole heads for q, k, v,
   which it also rotates; blocks of QMM_ROWS rows for the rest, whose residual adds and SwiGLU it
   also does), and the threads meet at a barrier only where a step reads what another thread
   wrote: 4 per layer (5 when the kv heads do not split evenly), none with one thread. Every
   value is computed by the same kernel as in forward_chunk, so the bits equal a prefill's
   (tests/test_exact.c) whatever the thread count. */
#define TOK_BARRIER(n)                                                                  \
    do {                                                                                \
        if ((n) > 1) { _Pragma("omp barrier") }                                        \
    } while (0)

static int thread_id(void) { /* in the region */
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int thread_count(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

typedef struct tok_plan {
    act_prep prep[3];
    int which[3], np;
    size_t bytes;
    const void *pk[3]; /* the matrices' packed copies (state_pack), or NULL */
} tok_plan;

static void share(int64_t n, int t, int nt, int64_t *a, int64_t *b) { /* contiguous share t of n units */
    *a = n * t / nt;
    *b = n * (t + 1) / nt;
}

/* rows [a, b) of W (b - a > 0) for the one activation row of the plan's copy */
static void tok_rows(const nb_qtensor *W, const tok_plan *pl, int i, const uint8_t *abuf, const float *x, int64_t a,
                     int64_t b, float *y) {
    const act_prep *p = &pl->prep[pl->which[i]];
    rows_block(W, p, pl->pk[i], abuf ? abuf + p->off : NULL, x, 1, a, b - a, y);
}

/* a contiguous share of rows in whole blocks of QMM_ROWS (the row kernels' unit) */
static void share_rows(int64_t rows, int t, int nt, int64_t *a, int64_t *b) {
    share((rows + QMM_ROWS - 1) / QMM_ROWS, t, nt, a, b);
    *a *= QMM_ROWS;
    *b = *b * QMM_ROWS < rows ? *b * QMM_ROWS : rows;
}

/* thread t's share of the rows of W on the input in (quantized into this thread's abuf), into o
   and added into the residual stream x */
static void tok_residual(const nb_qtensor *W, const tok_plan *p, uint8_t *abuf, const float *in, int t, int nt,
                         float *o, float *x) {
    int64_t a, b;
    quantize_acts(p->prep, p->np, in, 1, p->bytes ? abuf : NULL);
    share_rows(W->rows, t, nt, &a, &b);
    if (a < b) tok_rows(W, p, 0, abuf, in, a, b, o);
    for (int64_t i = a; i < b; i++) x[i] += o[i];
}

static nb_status plan_n(const nb_qtensor *const *W, int n, tok_plan *p, nb_qstate *s) {
    NB_TRY(plan_acts(W, n, 1, p->prep, p->which, &p->np, &p->bytes));
    for (int i = 0; i < 3; i++) p->pk[i] = i < n && p->prep[p->which[i]].key.lanes ? state_pack(s, W[i]) : NULL;
    return NB_OK;
}

static nb_status plan_one(const nb_qtensor *W, tok_plan *p, nb_qstate *s) { return plan_n(&W, 1, p, s); }

/* a layer's plans: q/k/v, wo, w1/w3, w2 */
static nb_status layer_plans(const nb_qlayer *L, tok_plan *p, nb_qstate *s) {
    const nb_qtensor *qkv[3] = {&L->wq, &L->wk, &L->wv}, *ff[2] = {&L->w1, &L->w3};
    NB_TRY(plan_n(qkv, 3, &p[0], s));
    NB_TRY(plan_one(&L->wo, &p[1], s));
    NB_TRY(plan_n(ff, 2, &p[2], s));
    return plan_one(&L->w2, &p[3], s);
}

/* Core-to-core round trip (ns) between two of the decode's threads, measured once per process:
   cache-line hand-offs for at most a millisecond or so. About 60 ns when the two cores share an
   L3, over 300 when the host puts them on different ones; every barrier of a decode step costs a
   few. 0 without a second thread, or when the two never ran at once (an oversubscribed machine). */
static double round_trip_ns(void) {
    static int64_t cached = -1; /* picoseconds */
    int64_t ps = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (ps >= 0) return ps * 1e-3;
    ps = 0;
#ifdef _OPENMP
    static _Alignas(64) int flag;
    static _Alignas(64) int stop;
    const int n = 4000;
    double t0 = 0, t1 = 0;
    int done = 0;
    __atomic_store_n(&flag, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&stop, 0, __ATOMIC_RELAXED);
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num();
        if (omp_get_num_threads() == 2) {
#pragma omp barrier
            if (t == 0) t0 = omp_get_wtime();
            int i = 0;
            for (; i < n; i++) {
                long spins = 0;
                while (__atomic_load_n(&flag, __ATOMIC_ACQUIRE) != 2 * i + t && !__atomic_load_n(&stop, __ATOMIC_RELAXED))
                    if (++spins % 4096 == 0 && t == 0 && omp_get_wtime() - t0 > 2e-3)
                        __atomic_store_n(&stop, 1, __ATOMIC_RELAXED); /* the other thread is not running */
                if (__atomic_load_n(&stop, __ATOMIC_RELAXED)) break;
                __atomic_store_n(&flag, 2 * i + t + 1, __ATOMIC_RELEASE);
            }
            if (t == 0) t1 = omp_get_wtime(), done = i;
        }
    }
    if (done == n) ps = (int64_t)((t1 - t0) / n * 1e12);
#endif
    __atomic_store_n(&cached, ps, __ATOMIC_RELAXED);
    return ps * 1e-3;
}

/* Threads for a decode step: a second one pays for the step's barriers (4 a layer, each a few
   core-to-core round trips) only when the work is large enough. The work is counted in
   fp32-equivalent multiply-adds (measured kernel speeds: packed int8/int4 about 5x fp32's, Q8_0 /
   Q4_0 about 2x) and compared with 2^17 (stories260K in fp32: 1.45x faster on two threads that
   share an L3) scaled by the round trip over 60 ns: on cores without a shared L3 the same model
   decodes faster on one thread. */
static double work_units(const nb_qtensor *W) {
    double k = (double)W->rows * (double)W->cols;
    switch (W->type) {
    case NB_QT_F32:
    case NB_QT_F16: return k;
    case NB_QT_Q8_0:
    case NB_QT_Q4_0: return 0.5 * k;
    default: return (packable(W) ? 0.2 : 0.5) * k;
    }
}

static int all_threads; /* nb_qdecode_all_threads */
void nb_qdecode_all_threads(int on) { __atomic_store_n(&all_threads, on != 0, __ATOMIC_RELAXED); }

/* The bytes of the model's matrices (the classifier once when tied) and their work_units */
static void model_size(const nb_qmodel *m, size_t *bytes, double *work) {
    const nb_qtensor *top[2] = {&m->tok_emb, &m->classifier};
    *bytes = 0, *work = work_units(&m->classifier);
    for (int i = 0; i < (m->cfg.tied ? 1 : 2); i++) *bytes += nb_qtensor_row_bytes(top[i]->type, top[i]->cols) * top[i]->rows;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const nb_qlayer *L = &m->layers[l];
        const nb_qtensor *ts[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 7; i++) {
            *bytes += nb_qtensor_row_bytes(ts[i]->type, ts[i]->cols) * ts[i]->rows;
            *work += work_units(ts[i]);
        }
    }
}

static int token_threads(double work) {
    const int nt = nb_threads_get();
    if (nt < 2) return 1;
    if (__atomic_load_n(&all_threads, __ATOMIC_RELAXED)) return nt;
    if (work < (double)(1 << 17)) return 1;
    const double rt = round_trip_ns();
    return rt > 0 && work >= (double)(1 << 17) * (rt / 60.0 > 1.0 ? rt / 60.0 : 1.0) ? nt : 1;
}

static nb_status forward_token(const nb_qmodel *m, nb_qstate *s, int32_t tok, int pos, float *logits, double work) {
    const nb_qconfig *c = &m->cfg;
    const int C = c->dim, H = c->hidden_dim, hs = C / c->n_heads;
    const int kv_dim = hs * c->n_kv_heads, kv_mul = c->n_heads / c->n_kv_heads;
    if (tok < 0 || tok >= c->vocab)
        return nb_fail(NB_EINVAL, "forward: token %d at position %d is outside the vocabulary (%d)", tok, pos, c->vocab);
    /* activation plans: the model's, made (and checked) once for this state: layer l's four at
       plans[4 l], the classifier's at plans[4 L] */
    if (!s->plans) {
        tok_plan *p = nb_malloc((size_t)(4 * c->n_layers + 1) * sizeof(tok_plan));
        if (!p) return NB_ENOMEM;
        size_t most = 0;
        nb_status st = NB_OK;
        for (int l = 0; !st && l < c->n_layers; l++) st = layer_plans(&m->layers[l], p + 4 * l, s);
        if (!st) st = plan_one(&m->classifier, p + 4 * c->n_layers, s);
        if (st) {
            nb_free(p);
            return st;
        }
        for (int i = 0; i <= 4 * c->n_layers; i++) most = p[i].bytes > most ? p[i].bytes : most;
        s->plans = p;
        s->plan_bytes = (most + 63) & ~(size_t)63;
    }
    const tok_plan *plans = s->plans, *pc = plans + 4 * c->n_layers;
    const size_t abytes = s->plan_bytes;
    const size_t xbytes = ((size_t)(H > C ? H : C) * sizeof(float) + 63) & ~(size_t)63;
    /* sized for the whole context, so that the scratch is allocated once, not grown every token */
    const size_t per_head = ((size_t)nb_attn_decode_scratch_floats(c->seq_len, hs) * sizeof(float) + 63) & ~(size_t)63;
    const int nt = token_threads(work);
    uint8_t *scr = scratch(s, (size_t)nt * (abytes + xbytes) + per_head * c->n_heads + 64);
    if (!scr) return NB_ENOMEM;
    scr = (uint8_t *)(((uintptr_t)scr + 63) & ~(uintptr_t)63);
    float *att_scr = (float *)(scr + (size_t)nt * (abytes + xbytes));
    nb_qtensor_dequant_row(&m->tok_emb, tok, s->x);
    float *rc = s->att, *rs = s->att + hs;
    nb_rope_tables(rc, rs, NULL, 1, hs, c->rope_theta, pos);
    const nb_vec_kernels *kk = nb_vec();
    const nb_attn_kernels *ak = nb_attn();
    float *x = s->x, *q = s->q, *ao = s->xb, *o = s->xb2, *hb = s->hb, *hb2 = s->hb2;
#pragma omp parallel num_threads(nt)
    {
        const int t = thread_id(), n = thread_count(), grouped = c->n_kv_heads % n == 0;
        uint8_t *ab = scr + (size_t)t * (abytes + xbytes);
        float *xb = (float *)(ab + abytes); /* this thread's normed input */
        int64_t a, b;
        for (int l = 0; l < c->n_layers; l++) {
            const nb_qlayer *L = &m->layers[l];
            const tok_plan *pqkv = plans + 4 * l, *po = pqkv + 1, *pff = pqkv + 2, *p2 = pqkv + 3;
            float *kc = s->key_cache + (size_t)l * c->seq_len * kv_dim;
            float *vc = s->value_cache + (size_t)l * c->seq_len * kv_dim;
            float *kr = kc + (size_t)pos * kv_dim, *vr = vc + (size_t)pos * kv_dim;
            const float *ktl = s->key_cache_t + (size_t)l * c->seq_len * kv_dim;
            /* q, k, v, each rotated by the thread that made it, then attention. When the kv heads
               split evenly, a thread takes whole kv groups (its kv heads and the q heads that read
               them) and needs nothing from the others before its attention */
            kk->rmsnorm_fwd(xb, x, L->attn_norm.data, c->norm_eps, C);
            quantize_acts(pqkv->prep, pqkv->np, xb, 1, pqkv->bytes ? ab : NULL);
            int64_t g0, g1, h0, h1;
            share(c->n_kv_heads, t, n, &g0, &g1);
            if (grouped) h0 = g0 * kv_mul, h1 = g1 * kv_mul;
            else share(c->n_heads, t, n, &h0, &h1);
            if (h0 < h1) tok_rows(&L->wq, pqkv, 0, ab, xb, h0 * hs, h1 * hs, q);
            for (int64_t h = h0; h < h1; h++) kk->rope(q + h * hs, q + h * hs, rc, rs, hs, 0);
            if (g0 < g1) {
                tok_rows(&L->wk, pqkv, 1, ab, xb, g0 * hs, g1 * hs, kr);
                tok_rows(&L->wv, pqkv, 2, ab, xb, g0 * hs, g1 * hs, vr);
            }
            for (int64_t g = g0; g < g1; g++) kk->rope(kr + g * hs, kr + g * hs, rc, rs, hs, 0);
            key_t_store(c, s, l, pos, kr, g0, g1);
            if (!grouped) TOK_BARRIER(n);
            if (h0 < h1)
                nb_attn_decode_heads(ak, h0, h1, kv_mul, q, ktl, c->seq_len, vc, kv_dim, ao, pos, hs,
                                     (float *)((uint8_t *)att_scr + per_head * (size_t)h0),
                                     (int64_t)(per_head / sizeof(float)));
            TOK_BARRIER(n);
            /* wo, and the residual add of its own rows */
            tok_residual(&L->wo, po, ab, ao, t, n, o, x);
            TOK_BARRIER(n);
            /* w1, w3 and SwiGLU of its own rows */
            kk->rmsnorm_fwd(xb, x, L->ffn_norm.data, c->norm_eps, C);
            quantize_acts(pff->prep, pff->np, xb, 1, pff->bytes ? ab : NULL);
            share_rows(H, t, n, &a, &b);
            if (a < b) {
                tok_rows(&L->w1, pff, 0, ab, xb, a, b, hb);
                tok_rows(&L->w3, pff, 1, ab, xb, a, b, hb2);
                kk->swiglu_fwd(hb + a, hb + a, hb2 + a, b - a); /* elementwise: the same bits as one call */
            }
            TOK_BARRIER(n);
            /* w2, and the residual add of its own rows */
            tok_residual(&L->w2, p2, ab, hb, t, n, o, x);
            TOK_BARRIER(n);
        }
        kk->rmsnorm_fwd(xb, x, m->norm.data, c->norm_eps, C);
        quantize_acts(pc->prep, pc->np, xb, 1, pc->bytes ? ab : NULL);
        share_rows(c->vocab, t, n, &a, &b);
        if (a < b) tok_rows(&m->classifier, pc, 0, ab, xb, a, b, logits);
    }
    return NB_OK;
}

/* Weights beyond this many bytes come from DRAM on every token rather than from the caches (this
   machine: 32 MB of L3, shared with the KV cache): the matvec kernels then prefetch ahead. */
#define NB_STREAM_BYTES ((size_t)16 << 20)

nb_status nb_qmodel_forward(const nb_qmodel *m, nb_qstate *s, const int32_t *tokens, int T, int pos, float *logits,
                            int all_logits) {
    if (T < 1 || pos < 0 || pos + T > m->cfg.seq_len)
        return nb_fail(NB_EINVAL, "forward: positions %d..%d exceed the context length %d", pos, pos + T - 1,
                       m->cfg.seq_len);
    size_t bytes;
    double work;
    model_size(m, &bytes, &work);
    nb_qdot_set_prefetch(bytes > NB_STREAM_BYTES);
    if (T == 1) return forward_token(m, s, tokens[0], pos, logits, work); /* decode: one parallel region */
    for (int t0 = 0; t0 < T; t0 += s->max_batch) {
        int B = T - t0 < s->max_batch ? T - t0 : s->max_batch;
        int last = t0 + B == T;
        if (!all_logits && !last) {
            /* intermediate chunk: logits not wanted, compute the last row only into a scratch */
            float *tmp = nb_malloc((size_t)m->cfg.vocab * sizeof(float));
            if (!tmp) return NB_ENOMEM;
            nb_status st = forward_chunk(m, s, tokens + t0, B, pos + t0, tmp, 0);
            nb_free(tmp);
            NB_TRY(st);
        } else {
            NB_TRY(forward_chunk(m, s, tokens + t0, B, pos + t0,
                                 all_logits ? logits + (size_t)t0 * m->cfg.vocab : logits, all_logits));
        }
    }
    return NB_OK;
}

/* ---- generation and evaluation ---- */

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static const float *g_probs; /* qsort context (single-threaded caller) */
static int by_prob_desc(const void *a, const void *b) {
    float pa = g_probs[*(const int *)a], pb = g_probs[*(const int *)b];
    return pa < pb ? 1 : pa > pb ? -1 : *(const int *)a - *(const int *)b;
}

/* Sample from softmax(logits / temp), restricted to the nucleus of mass top_p when 0 < top_p < 1. */
static int sample(float *logits, int n, float temp, float top_p, nb_rng *r, int *idx) {
    for (int i = 0; i < n; i++) logits[i] /= temp;
    softmax(logits, n);
    float u = nb_rng_uniform(r);
    int k = n;
    for (int i = 0; i < n; i++) idx[i] = i;
    if (top_p > 0 && top_p < 1) {
        g_probs = logits;
        qsort(idx, (size_t)n, sizeof(int), by_prob_desc);
        float mass = 0.0f;
        for (k = 0; k < n;) {
            mass += logits[idx[k++]];
            if (mass >= top_p) break;
        }
        u *= mass;
    }
    float acc = 0.0f;
    for (int i = 0; i < k; i++) {
        acc += logits[idx[i]];
        if (u < acc) return idx[i];
    }
    return idx[k - 1];
}

nb_status nb_runtime_generate(const nb_qmodel *m, const int32_t *prompt, int n_prompt, const nb_gen_opts *o,
                              int32_t *out, int *n_out) {
    *n_out = 0;
    if (n_prompt < 1) return nb_fail(NB_EINVAL, "generate: empty prompt (give at least BOS)");
    int V = m->cfg.vocab;
    int max_new = o->max_new;
    if (n_prompt + max_new > m->cfg.seq_len) max_new = m->cfg.seq_len - n_prompt;
    if (max_new < 0) return nb_fail(NB_EINVAL, "generate: prompt of %d tokens exceeds the context %d", n_prompt,
                                    m->cfg.seq_len);
    nb_qstate s;
    NB_TRY(nb_qstate_init(&s, m, n_prompt < 64 ? n_prompt : 64));
    float *logits = nb_malloc((size_t)V * sizeof(float));
    int *idx = nb_malloc((size_t)V * sizeof(int));
    nb_status st = logits && idx ? NB_OK : NB_ENOMEM;
    nb_rng r = nb_rng_make(o->seed, 7);
    if (st == NB_OK) st = nb_qmodel_forward(m, &s, prompt, n_prompt, 0, logits, 0);
    int pos = n_prompt;
    for (int i = 0; st == NB_OK && i < max_new; i++) {
        int next = o->temperature <= 0 ? argmax(logits, V) : sample(logits, V, o->temperature, o->top_p, &r, idx);
        out[(*n_out)++] = next;
        if (o->emit) o->emit(o->ctx, next);
        if (o->stop_at_eos && next == m->vocab.eos && m->vocab.n) break;
        if (i + 1 < max_new) {
            int32_t t = next;
            st = nb_qmodel_forward(m, &s, &t, 1, pos++, logits, 0);
        }
    }
    nb_free(logits);
    nb_free(idx);
    nb_qstate_free(&s);
    return st;
}

nb_status nb_runtime_eval_tokens(const nb_qmodel *m, const int32_t *tokens, int64_t n, int window, double *loss,
                                 double *top1, int64_t *count) {
    if (window < 2 || window > m->cfg.seq_len) window = m->cfg.seq_len;
    int V = m->cfg.vocab;
    nb_qstate s;
    NB_TRY(nb_qstate_init(&s, m, 64));
    float *logits = nb_malloc((size_t)window * V * sizeof(float));
    if (!logits) {
        nb_qstate_free(&s);
        return NB_ENOMEM;
    }
    double sum = 0.0;
    int64_t cnt = 0, hits = 0;
    nb_status st = NB_OK;
    for (int64_t w0 = 0; w0 + 1 < n && st == NB_OK; w0 += window) {
        int T = n - w0 < window ? (int)(n - w0) : window;
        st = nb_qmodel_forward(m, &s, tokens + w0, T, 0, logits, 1);
        for (int t = 0; st == NB_OK && t + 1 < T; t++) {
            const float *lg = logits + (size_t)t * V;
            int y = tokens[w0 + t + 1];
            float mx = lg[0];
            for (int i = 1; i < V; i++) mx = fmaxf(mx, lg[i]);
            double z = 0.0;
            for (int i = 0; i < V; i++) z += exp((double)lg[i] - mx);
            sum += log(z) + mx - lg[y];
            hits += argmax(lg, V) == y;
            cnt++;
        }
    }
    nb_free(logits);
    nb_qstate_free(&s);
    NB_TRY(st);
    *loss = cnt ? sum / cnt : 0.0;
    if (top1) *top1 = cnt ? (double)hits / cnt : 0.0;
    if (count) *count = cnt;
    return NB_OK;
}

/* ---- description ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return;
        if (b->p && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *q = nb_realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

static size_t tensor_bytes(const nb_qtensor *t) {
    size_t b = (size_t)t->rows * nb_qtensor_row_bytes(t->type, t->cols);
    int64_t ng = nb_qtensor_ngroups(t);
    b += (size_t)(t->rows * ng) * (4 + (t->zeros ? 1 : 0));
    return b;
}

static void info_tensor(sbuf *b, int json, int *first, const char *name, const nb_qtensor *t) {
    if (json)
        sb_printf(b, "%s{\"name\": \"%s\", \"type\": \"%s\", \"shape\": [%lld, %lld], \"group\": %lld, \"bytes\": %zu}",
                  *first ? "" : ", ", name, nb_qtype_name(t->type), (long long)t->rows, (long long)t->cols,
                  (long long)t->group, tensor_bytes(t));
    else
        sb_printf(b, "  %-28s %-5s (%lld, %lld) group %-5lld %zu bytes\n", name, nb_qtype_name(t->type), (long long)t->rows,
                  (long long)t->cols, (long long)t->group, tensor_bytes(t));
    *first = 0;
}

nb_status nb_runtime_info(const nb_qmodel *m, int json, char **text) {
    sbuf b = {0};
    const nb_qconfig *c = &m->cfg;
    size_t total = 0;
    int first = 1;
    if (json)
        sb_printf(&b, "{\"source\": \"%s\", \"format\": \"%s\", \"dim\": %d, \"hidden_dim\": %d, \"n_layers\": %d, \"n_heads\": %d, "
                  "\"n_kv_heads\": %d, \"vocab_size\": %d, \"seq_len\": %d, \"tied\": %s, \"norm_eps\": %g, "
                  "\"rope_theta\": %g, \"tensors\": [",
                  m->source ? m->source : "", nb_model_format_name(m->source ? nb_runtime_detect(m->source) : NB_FMT_UNKNOWN),
                  c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab, c->seq_len,
                  c->tied ? "true" : "false", c->norm_eps, c->rope_theta);
    else
        sb_printf(&b, "model %s (%s)\n  dim %d, hidden %d, layers %d, heads %d (kv %d), vocab %d, seq_len %d, %s classifier\n",
                  m->source ? m->source : "", nb_model_format_name(m->source ? nb_runtime_detect(m->source) : NB_FMT_UNKNOWN),
                  c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab, c->seq_len,
                  c->tied ? "tied" : "untied");
    char nm[96];
    info_tensor(&b, json, &first, "tok_emb", &m->tok_emb);
    total += tensor_bytes(&m->tok_emb);
    for (int l = 0; l < c->n_layers; l++) {
        const nb_qlayer *L = &m->layers[l];
        const nb_qtensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        const char *ns[] = {"attn_norm", "attn.wq", "attn.wk", "attn.wv", "attn.wo", "ffn_norm", "ffn.w1", "ffn.w2", "ffn.w3"};
        for (int i = 0; i < 9; i++) {
            snprintf(nm, sizeof nm, "layers.%d.%s", l, ns[i]);
            info_tensor(&b, json, &first, nm, ts[i]);
            total += tensor_bytes(ts[i]);
        }
    }
    info_tensor(&b, json, &first, "norm", &m->norm);
    total += tensor_bytes(&m->norm);
    if (!c->tied) {
        info_tensor(&b, json, &first, "classifier", &m->classifier);
        total += tensor_bytes(&m->classifier);
    }
    if (json)
        sb_printf(&b, "], \"weight_bytes\": %zu, \"vocab_entries\": %d}\n", total, m->vocab.n);
    else
        sb_printf(&b, "  weights: %zu bytes; vocabulary: %d entries%s\n", total, m->vocab.n,
                  m->policy ? "; has policy" : "");
    if (b.oom) {
        nb_free(b.p);
        return NB_ENOMEM;
    }
    *text = b.p;
    return NB_OK;
}

const char *nb_qvocab_piece(const nb_qvocab *v, int prev, int id, size_t *len) {
    static __thread char byte[2];
    if (id < 0 || id >= v->n) {
        *len = 0;
        return "";
    }
    const char *p = v->pieces[id];
    if (prev == v->bos && p[0] == ' ') p++;
    unsigned int bv;
    if (strlen(p) == 6 && sscanf(p, "<0x%02X>", &bv) == 1) {
        byte[0] = (char)bv;
        *len = 1;
        return byte;
    }
    *len = strlen(p);
    return p;
}
