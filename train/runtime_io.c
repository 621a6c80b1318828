/* runtime_io.c: loading llama2.c checkpoints and tokenizers into an nb_qmodel, requantization,
   and the format dispatch of nb_qmodel_open. */
#include "runtime_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/fp16.h"
#include <hdf5.h>

#include "../data/tokenizer.h"
#include "../ops/kernels/qdot.h"
#include "export_nb.h"
#include "gguf.h"
#include "llama2c.h"

nb_status nb_rt_read_file(nb_qmodel *m, const char *path, uint8_t **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return nb_fail(NB_EIO, "%s: cannot seek", path);
    }
    long sz = ftell(f);
    if (sz < 0 || (size_t)sz > NB_MAX_ALLOC) {
        fclose(f);
        return nb_fail(NB_EFORMAT, "%s: file size %ld is unusable", path, sz);
    }
    rewind(f);
    uint8_t *b = nb_qmodel_alloc(m, (size_t)sz + 64);
    if (!b) {
        fclose(f);
        return nb_fail(NB_ENOMEM, "%s: cannot hold %ld bytes", path, sz);
    }
    size_t got = fread(b, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) return nb_fail(NB_EIO, "%s: read %zu of %ld bytes", path, got, sz);
    *buf = b;
    *len = (size_t)sz;
    return NB_OK;
}

int nb_rt_all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* ---- reference weight quantizers (ggml blocks: core/quant_blocks.h) ---- */

void nb_rt_quantize_sym(const float *x, int64_t n, int64_t group, int bits, void *codes, float *scales) {
    int qmax = (1 << (bits - 1)) - 1;
    for (int64_t g0 = 0, g = 0; g0 < n; g0 += group, g++) {
        int64_t len = n - g0 < group ? n - g0 : group;
        float amax = 0.0f;
        for (int64_t j = 0; j < len; j++) amax = fmaxf(amax, fabsf(x[g0 + j]));
        float s = amax / (float)qmax;
        scales[g] = s;
        for (int64_t j = 0; j < len; j++) {
            int q = s != 0.0f ? (int)nearbyintf(x[g0 + j] / s) : 0;
            q = q > qmax ? qmax : q < -qmax ? -qmax : q;
            if (bits == 8) ((int8_t *)codes)[g0 + j] = (int8_t)q;
            else nb_i4_set(codes, g0 + j, q);
        }
    }
}

nb_status nb_rt_quantize_tensor(nb_qmodel *m, const float *w, nb_qtensor *t) {
    const int64_t R = t->rows, K = t->cols;
    if ((t->type == NB_QT_Q8_0 || t->type == NB_QT_Q4_0) && K % NB_QK)
        return nb_fail(NB_EINVAL, "quantize: %s needs rows of a multiple of 32 elements, got %lld", nb_qtype_name(t->type),
                       (long long)K);
    if (t->type == NB_QT_I8 || t->type == NB_QT_I4) {
        if (t->group <= 0 || t->group > K) t->group = K;
    } else {
        t->group = 0;
    }
    size_t rb = nb_qtensor_row_bytes(t->type, K);
    uint8_t *d = nb_qmodel_alloc(m, rb * (size_t)R);
    if (!d) return NB_ENOMEM;
    int64_t ng = nb_qtensor_ngroups(t);
    if (ng) {
        t->scales = nb_qmodel_alloc(m, (size_t)(R * ng) * sizeof(float));
        if (!t->scales) return NB_ENOMEM;
    }
    t->zeros = NULL;
    for (int64_t r = 0; r < R; r++) {
        const float *x = w + r * K;
        uint8_t *o = d + r * rb;
        switch (t->type) {
        case NB_QT_F32: memcpy(o, x, (size_t)K * 4); break;
        case NB_QT_F16:
            for (int64_t i = 0; i < K; i++) ((uint16_t *)o)[i] = nb_fp32_to_fp16(x[i]);
            break;
        case NB_QT_Q8_0: nb_quantize_row_q8_0_ref(x, (nb_block_q8_0 *)o, K); break;
        case NB_QT_Q4_0: nb_quantize_row_q4_0_ref(x, (nb_block_q4_0 *)o, K); break;
        case NB_QT_I8: nb_rt_quantize_sym(x, K, t->group, 8, o, t->scales + r * ng); break;
        case NB_QT_I4: nb_rt_quantize_sym(x, K, t->group, 4, o, t->scales + r * ng); break;
        }
    }
    t->data = d;
    return NB_OK;
}

nb_status nb_rt_visit(nb_qmodel *m, nb_rt_visit_fn fn, void *ctx) {
    char nm[96];
    NB_TRY(fn(ctx, "tok_emb", &m->tok_emb, -1));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        nb_qlayer *L = &m->layers[l];
        nb_qtensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        const char *ns[] = {"attn_norm", "attn.wq", "attn.wk", "attn.wv", "attn.wo", "ffn_norm", "ffn.w1", "ffn.w2", "ffn.w3"};
        for (int i = 0; i < 9; i++) {
            snprintf(nm, sizeof nm, "layers.%d.%s", l, ns[i]);
            NB_TRY(fn(ctx, nm, ts[i], l));
        }
    }
    NB_TRY(fn(ctx, "norm", &m->norm, -1));
    if (!m->cfg.tied) NB_TRY(fn(ctx, "classifier", &m->classifier, -1));
    return NB_OK;
}

/* ---- vocabulary ---- */

nb_status nb_rt_vocab_init(nb_qmodel *m, int n) {
    nb_qvocab *v = &m->vocab;
    memset(v, 0, sizeof *v);
    v->pieces = nb_qmodel_alloc(m, (size_t)n * sizeof(char *));
    v->scores = nb_qmodel_alloc(m, (size_t)n * sizeof(float));
    v->types = nb_qmodel_alloc(m, (size_t)n * sizeof(int32_t));
    if (!v->pieces || !v->scores || !v->types) return NB_ENOMEM;
    v->n = n;
    v->unk = 0;
    v->bos = n > 1 ? 1 : -1;
    v->eos = n > 2 ? 2 : -1;
    return NB_OK;
}

nb_status nb_rt_vocab_set(nb_qmodel *m, int i, const char *piece, size_t len, float score, int type) {
    char *p = nb_qmodel_alloc(m, len + 1);
    if (!p) return NB_ENOMEM;
    memcpy(p, piece, len);
    p[len] = 0;
    m->vocab.pieces[i] = p;
    m->vocab.scores[i] = score;
    m->vocab.types[i] = type;
    if ((int)len > m->vocab.max_len) m->vocab.max_len = (int)len;
    return NB_OK;
}

int nb_rt_piece_type(int id, const char *piece) {
    unsigned int b;
    if (id == 0) return 2;
    if (id == 1 || id == 2 || !piece[0]) return 3;
    if (strlen(piece) == 6 && sscanf(piece, "<0x%02X>", &b) == 1) return 6;
    return 1;
}

nb_status nb_qvocab_load_llama2c(const char *path, int n, nb_qvocab *v, nb_qmodel *owner) {
    (void)v;
    uint8_t *buf;
    size_t len;
    NB_TRY(nb_rt_read_file(owner, path, &buf, &len));
    if (len < 4) return nb_fail(NB_EFORMAT, "%s: too short for a llama2.c tokenizer (%zu bytes)", path, len);
    NB_TRY(nb_rt_vocab_init(owner, n));
    size_t off = 4; /* max_token_length */
    for (int i = 0; i < n; i++) {
        float score;
        int32_t l;
        if (off + 8 > len) return nb_fail(NB_EFORMAT, "%s: truncated at token %d of %d", path, i, n);
        memcpy(&score, buf + off, 4);
        memcpy(&l, buf + off + 4, 4);
        off += 8;
        if (l < 0 || (size_t)l > len - off)
            return nb_fail(NB_EFORMAT, "%s: token %d has length %d beyond the file end", path, i, l);
        char tmp[512];
        size_t cl = (size_t)l < sizeof tmp - 1 ? (size_t)l : sizeof tmp - 1;
        memcpy(tmp, buf + off, cl);
        tmp[cl] = 0;
        NB_TRY(nb_rt_vocab_set(owner, i, (const char *)buf + off, (size_t)l, score, nb_rt_piece_type(i, tmp)));
        off += (size_t)l;
    }
    return NB_OK;
}

/* ---- tokenizer ---- */

nb_status nb_qmodel_tokenizer(nb_qmodel *m, nb_tokenizer **out) {
    *out = m->tok;
    if (m->tok) return NB_OK;
    const nb_qvocab *v = &m->vocab;
    if (!v->n) return nb_fail(NB_EINVAL, "%s: the model file carries no vocabulary (give a tokenizer)",
                              m->source ? m->source : "model");
    /* serialize as a llama2.c tokenizer.bin image and let the tokenizer module parse it */
    size_t size = 4;
    for (int i = 0; i < v->n; i++) size += 8 + strlen(v->pieces[i]);
    uint8_t *b = nb_malloc(size);
    if (!b) return NB_ENOMEM;
    int32_t ml = v->max_len;
    memcpy(b, &ml, 4);
    size_t off = 4;
    for (int i = 0; i < v->n; i++) {
        int32_t l = (int32_t)strlen(v->pieces[i]);
        memcpy(b + off, &v->scores[i], 4);
        memcpy(b + off + 4, &l, 4);
        memcpy(b + off + 8, v->pieces[i], (size_t)l);
        off += 8 + (size_t)l;
    }
    nb_status st = nb_tokenizer_llama2c_load_mem(b, size, m->source ? m->source : "vocabulary", v->n, &m->tok);
    nb_free(b);
    *out = m->tok;
    return st;
}

/* A copy of a tokenizer through an in-memory HDF5 file (the tokenizer module's own storage). */
static nb_status clone_tokenizer(const nb_tokenizer *t, nb_tokenizer **out) {
    *out = NULL;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    hid_t f = H5Fcreate("nb_tokenizer_clone", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return nb_fail(NB_ENOMEM, "copying the tokenizer: in-memory HDF5 file failed");
    hid_t g = H5Gcreate2(f, "t", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    nb_status st = g >= 0 ? nb_tokenizer_save_h5(t, g) : NB_ENOMEM;
    if (!st) st = nb_tokenizer_load_h5(g, out);
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return st;
}

nb_status nb_qmodel_set_tokenizer(nb_qmodel *m, nb_tokenizer *t) {
    int n = nb_tokenizer_vocab(t);
    if (n != m->cfg.vocab) {
        nb_tokenizer_free(t);
        return nb_fail(NB_EINVAL, "tokenizer has %d entries, the model's vocabulary is %d", n, m->cfg.vocab);
    }
    nb_tokenizer_free(m->tok);
    m->tok = t;
    NB_TRY(nb_rt_vocab_init(m, n));
    int llama = nb_tokenizer_kind(t) == NB_TOK_LLAMA2C;
    for (int i = 0; i < n; i++) {
        size_t len;
        float sc;
        const char *p = nb_tokenizer_token(t, i, &len, &sc);
        char tmp[64];
        size_t cl = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
        memcpy(tmp, p, cl);
        tmp[cl] = 0;
        int ty = llama ? nb_rt_piece_type(i, tmp) : (i == nb_tokenizer_bos(t) || i == nb_tokenizer_eos(t) ? 3 : 1);
        NB_TRY(nb_rt_vocab_set(m, i, p, len, sc, ty));
    }
    m->vocab.bos = nb_tokenizer_bos(t);
    m->vocab.eos = nb_tokenizer_eos(t);
    m->vocab.unk = llama ? 0 : -1;
    return NB_OK;
}

/* ---- llama2.c legacy checkpoint ---- */

nb_status nb_qmodel_from_llama2c(const char *path, const char *tok_path, nb_qmodel **out) {
    *out = NULL;
    nb_qmodel tmp = {0};
    uint8_t *buf;
    size_t len;
    nb_status st = nb_rt_read_file(&tmp, path, &buf, &len);
    if (st) {
        for (int i = 0; i < tmp.n_allocs; i++) nb_free(tmp.allocs[i]);
        nb_free(tmp.allocs);
        return st;
    }
    nb_qmodel *m = NULL;
    if (len < 28) {
        st = nb_fail(NB_EFORMAT, "%s: %zu bytes is too short for a llama2.c checkpoint header (28)", path, len);
        goto fail;
    }
    int32_t h[7];
    memcpy(h, buf, 28);
    nb_qconfig c = {h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? (h[5] == INT32_MIN ? 0 : -h[5]) : h[5], h[6], h[5] > 0, 1e-5f, 10000.0f};
    if ((st = nb_qconfig_check(&c, path))) goto fail;
    int64_t C = c.dim, H = c.hidden_dim, L = c.n_layers, V = c.vocab, hs = C / c.n_heads, kv = hs * c.n_kv_heads;
    int64_t nfl = V * C + L * C + L * C * C + 2 * L * kv * C + L * C * C + L * C + 3 * L * H * C + C + c.seq_len * hs;
    if (!c.tied) nfl += V * C;
    if ((uint64_t)len != 28 + 4 * (uint64_t)nfl) {
        st = nb_fail(NB_EFORMAT, "%s: llama2.c checkpoint with dim %d, hidden %d, %d layers, vocab %d should be %lld bytes, "
                     "file has %zu", path, c.dim, c.hidden_dim, c.n_layers, c.vocab, (long long)(28 + 4 * nfl), len);
        goto fail;
    }
    if ((st = nb_qmodel_new(&c, &m))) goto fail;
    /* hand the file block over to the model */
    for (int i = 0; i < tmp.n_allocs; i++) {
        if (!nb_qmodel_alloc(m, 0)) {
            st = NB_ENOMEM;
            goto fail;
        }
        nb_free(m->allocs[m->n_allocs - 1]);
        m->allocs[m->n_allocs - 1] = tmp.allocs[i];
    }
    nb_free(tmp.allocs);
    memset(&tmp, 0, sizeof tmp);
    float *p = (float *)(buf + 28);
    if (!nb_rt_all_finite(p, nfl)) {
        st = nb_fail(NB_EFORMAT, "%s: weights contain NaN or Inf", path);
        goto fail;
    }
    m->tok_emb.data = p;
    p += V * C;
    for (int l = 0; l < L; l++) m->layers[l].attn_norm.data = p + l * C;
    p += L * C;
    for (int l = 0; l < L; l++) m->layers[l].wq.data = p + l * C * C;
    p += L * C * C;
    for (int l = 0; l < L; l++) m->layers[l].wk.data = p + l * kv * C;
    p += L * kv * C;
    for (int l = 0; l < L; l++) m->layers[l].wv.data = p + l * kv * C;
    p += L * kv * C;
    for (int l = 0; l < L; l++) m->layers[l].wo.data = p + l * C * C;
    p += L * C * C;
    for (int l = 0; l < L; l++) m->layers[l].ffn_norm.data = p + l * C;
    p += L * C;
    for (int l = 0; l < L; l++) m->layers[l].w1.data = p + l * H * C;
    p += L * H * C;
    for (int l = 0; l < L; l++) m->layers[l].w2.data = p + l * H * C;
    p += L * H * C;
    for (int l = 0; l < L; l++) m->layers[l].w3.data = p + l * H * C;
    p += L * H * C;
    m->norm.data = p;
    p += C;
    p += c.seq_len * hs; /* freq_cis_real and freq_cis_imag: RoPE is recomputed */
    m->classifier = m->tok_emb;
    if (!c.tied) m->classifier.data = p;
    if (tok_path && (st = nb_qvocab_load_llama2c(tok_path, c.vocab, &m->vocab, m))) goto fail;
    m->source = nb_qmodel_alloc(m, strlen(path) + 1);
    if (m->source) strcpy(m->source, path);
    *out = m;
    return NB_OK;
fail:
    for (int i = 0; i < tmp.n_allocs; i++) nb_free(tmp.allocs[i]);
    nb_free(tmp.allocs);
    nb_qmodel_free(m);
    return st;
}

/* ---- requantization ---- */

typedef struct qctx {
    const nb_qmodel *src;
    nb_qmodel *dst;
    nb_qtype type, fallback;
    int64_t group;
} qctx;

static nb_status requant_one(void *vctx, const char *name, nb_qtensor *t, int layer) {
    qctx *q = vctx;
    /* find the source tensor at the same place */
    size_t off = (size_t)((const char *)t - (const char *)q->dst->layers);
    const nb_qtensor *s;
    if (layer >= 0) s = (const nb_qtensor *)((const char *)q->src->layers + off);
    else if (t == &q->dst->tok_emb) s = &q->src->tok_emb;
    else if (t == &q->dst->norm) s = &q->src->norm;
    else s = &q->src->classifier;
    float *w = nb_malloc((size_t)(s->rows * s->cols) * sizeof(float));
    if (!w) return NB_ENOMEM;
    for (int64_t r = 0; r < s->rows; r++) nb_qtensor_dequant_row(s, r, w + r * s->cols);
    int is_norm = s->rows == 1;
    nb_qtype ty = is_norm ? NB_QT_F32 : q->type;
    if ((ty == NB_QT_Q8_0 || ty == NB_QT_Q4_0) && s->cols % NB_QK) ty = q->fallback;
    t->type = ty;
    t->group = q->group;
    nb_status st = nb_rt_quantize_tensor(q->dst, w, t);
    nb_free(w);
    if (st) return nb_fail_prefix(st, "%s", name);
    return NB_OK;
}

nb_status nb_qmodel_quantize(const nb_qmodel *src, nb_qtype type, int64_t group, nb_qtype fallback, nb_qmodel **out) {
    NB_TRY(nb_qmodel_new(&src->cfg, out));
    nb_qmodel *m = *out;
    qctx q = {src, m, type, fallback, group};
    nb_status st = nb_rt_visit(m, requant_one, &q);
    if (!st && src->cfg.tied) m->classifier = m->tok_emb;
    if (!st && src->tok) st = clone_tokenizer(src->tok, &m->tok);
    if (!st && src->vocab.n) {
        st = nb_rt_vocab_init(m, src->vocab.n);
        for (int i = 0; !st && i < src->vocab.n; i++)
            st = nb_rt_vocab_set(m, i, src->vocab.pieces[i], strlen(src->vocab.pieces[i]), src->vocab.scores[i],
                                 src->vocab.types[i]);
        m->vocab.bos = src->vocab.bos;
        m->vocab.eos = src->vocab.eos;
        m->vocab.unk = src->vocab.unk;
    }
    if (st) {
        nb_qmodel_free(m);
        *out = NULL;
    }
    return st;
}

/* ---- format dispatch ---- */

const char *nb_model_format_name(nb_model_format f) {
    switch (f) {
    case NB_FMT_GGUF: return "gguf";
    case NB_FMT_LLAMA2C_Q80: return "llama2c-q80";
    case NB_FMT_NIBBLE_EXPORT: return "nibble-export";
    case NB_FMT_LLAMA2C_FP32: return "llama2c-fp32";
    default: return "unknown";
    }
}

nb_model_format nb_runtime_detect(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NB_FMT_UNKNOWN;
    uint8_t h[28] = {0};
    size_t got = fread(h, 1, sizeof h, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    uint32_t m0;
    memcpy(&m0, h, 4);
    if (got >= 4 && !memcmp(h, "GGUF", 4)) return NB_FMT_GGUF;
    if (got >= 8 && m0 == NB_LLAMA2C_MAGIC) return NB_FMT_LLAMA2C_Q80;
    if (got >= 8 && !memcmp(h, "\x89HDF\r\n\x1a\n", 8)) return nb_export_nb_is_export(path) ? NB_FMT_NIBBLE_EXPORT : NB_FMT_UNKNOWN;
    if (got == 28) {
        int32_t c[7];
        memcpy(c, h, 28);
        nb_qconfig q = {c[0], c[1], c[2], c[3], c[4], c[5] < 0 ? -c[5] : c[5], c[6], c[5] > 0, 1e-5f, 10000.0f};
        if (nb_qconfig_check(&q, path) == NB_OK) {
            int64_t C = q.dim, H = q.hidden_dim, L = q.n_layers, V = q.vocab, hs = C / q.n_heads, kv = hs * q.n_kv_heads;
            int64_t nfl = V * C * (q.tied ? 1 : 2) + 2 * L * C + 2 * L * C * C + 2 * L * kv * C + 3 * L * H * C + C +
                          q.seq_len * hs;
            nb_clear_error();
            if (28 + 4 * nfl == size) return NB_FMT_LLAMA2C_FP32;
        }
        nb_clear_error();
    }
    return NB_FMT_UNKNOWN;
}

nb_status nb_qmodel_open(const char *path, const char *tok_path, nb_qmodel **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    uint8_t magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    if (got >= 4 && !memcmp(magic, "GGUF", 4)) return nb_gguf_read(path, out);
    if (got >= 8 && !memcmp(magic, "\x89HDF\r\n\x1a\n", 8)) return nb_export_nb_read(path, out);
    uint32_t m0;
    memcpy(&m0, magic, 4);
    if (got >= 8 && m0 == NB_LLAMA2C_MAGIC) return nb_llama2c_read_v2(path, out);
    return nb_qmodel_from_llama2c(path, tok_path, out);
}
