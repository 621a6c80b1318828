/* gguf.c: GGUF v3 writer and bounds-checked reader for llama-architecture models. */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../core/fp16.h"
#include "../ops/kernels/qdot.h"
#include "runtime_io.h"

#define GGUF_ALIGN 32
enum { T_U8 = 0, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 };

/* ---- writer ---- */

typedef struct wbuf {
    FILE *f;
    uint64_t pos;
    int err;
} wbuf;

static void wr(wbuf *w, const void *p, size_t n) {
    if (!w->err && n && fwrite(p, 1, n, w->f) != n) w->err = 1;
    w->pos += n;
}
static void wr_u32(wbuf *w, uint32_t v) { wr(w, &v, 4); }
static void wr_u64(wbuf *w, uint64_t v) { wr(w, &v, 8); }
static void wr_str(wbuf *w, const char *s, size_t n) {
    wr_u64(w, n);
    wr(w, s, n);
}
static void kv_str(wbuf *w, const char *k, const char *v) {
    wr_str(w, k, strlen(k));
    wr_u32(w, T_STR);
    wr_str(w, v, strlen(v));
}
static void kv_u32(wbuf *w, const char *k, uint32_t v) {
    wr_str(w, k, strlen(k));
    wr_u32(w, T_U32);
    wr_u32(w, v);
}
static void kv_f32(wbuf *w, const char *k, float v) {
    wr_str(w, k, strlen(k));
    wr_u32(w, T_F32);
    wr(w, &v, 4);
}
static void pad(wbuf *w) {
    static const uint8_t z[GGUF_ALIGN] = {0};
    size_t n = (size_t)((GGUF_ALIGN - w->pos % GGUF_ALIGN) % GGUF_ALIGN);
    wr(w, z, n);
}

static int ggml_type_of(nb_qtype t) {
    switch (t) {
    case NB_QT_F32: return NB_GGUF_F32;
    case NB_QT_F16: return NB_GGUF_F16;
    case NB_QT_Q8_0: return NB_GGUF_Q8_0;
    case NB_QT_Q4_0: return NB_GGUF_Q4_0;
    default: return -1;
    }
}

typedef struct gtensor {
    char name[64];
    const nb_qtensor *t;
    int is_vec;
} gtensor;

static int list_tensors(const nb_qmodel *m, gtensor *g) {
    int n = 0;
    snprintf(g[n].name, 64, "token_embd.weight"), g[n].t = &m->tok_emb, g[n++].is_vec = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const nb_qlayer *L = &m->layers[l];
        const nb_qtensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        const char *ns[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_down",
                            "ffn_up"};
        for (int i = 0; i < 9; i++) {
            snprintf(g[n].name, 64, "blk.%d.%s.weight", l, ns[i]);
            g[n].t = ts[i];
            g[n++].is_vec = i == 0 || i == 5;
        }
    }
    snprintf(g[n].name, 64, "output_norm.weight"), g[n].t = &m->norm, g[n++].is_vec = 1;
    if (!m->cfg.tied) snprintf(g[n].name, 64, "output.weight"), g[n].t = &m->classifier, g[n++].is_vec = 0;
    return n;
}

/* piece with ' ' replaced by U+2581 (e2 96 81) */
static size_t escape_spaces(const char *s, char *out) {
    size_t k = 0;
    for (; *s; s++) {
        if (*s == ' ') {
            out[k++] = (char)0xe2;
            out[k++] = (char)0x96;
            out[k++] = (char)0x81;
        } else {
            out[k++] = *s;
        }
    }
    out[k] = 0;
    return k;
}

nb_status nb_gguf_write(const nb_qmodel *m, const char *path, const char *name) {
    const nb_qconfig *c = &m->cfg;
    if (m->vocab.n != c->vocab)
        return nb_fail(NB_EINVAL, "%s: GGUF needs the model's vocabulary (%d entries, model vocab %d)", path, m->vocab.n,
                       c->vocab);
    int cap = 3 + 9 * c->n_layers;
    gtensor *g = nb_malloc((size_t)cap * sizeof *g);
    if (!g) return NB_ENOMEM;
    int nt = list_tensors(m, g);
    for (int i = 0; i < nt; i++)
        if (ggml_type_of(g[i].t->type) < 0) {
            nb_status st = nb_fail(NB_EUNSUPPORTED, "%s: tensor %s is %s, which GGUF cannot hold (use f32, f16, q8_0 or q4_0)",
                                   path, g[i].name, nb_qtype_name(g[i].t->type));
            nb_free(g);
            return st;
        }
    FILE *f = fopen(path, "wb");
    if (!f) {
        nb_free(g);
        return nb_fail(NB_EIO, "create %s: %s", path, strerror(errno));
    }
    wbuf w = {f, 0, 0};
    int n_kv = 19;
    wr_u32(&w, 0x46554747u); /* "GGUF" */
    wr_u32(&w, 3);
    wr_u64(&w, (uint64_t)nt);
    wr_u64(&w, (uint64_t)n_kv);
    kv_str(&w, "general.architecture", "llama");
    kv_str(&w, "general.name", name ? name : "nibble");
    kv_u32(&w, "general.alignment", GGUF_ALIGN);
    kv_u32(&w, "llama.context_length", (uint32_t)c->seq_len);
    kv_u32(&w, "llama.embedding_length", (uint32_t)c->dim);
    kv_u32(&w, "llama.block_count", (uint32_t)c->n_layers);
    kv_u32(&w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    kv_u32(&w, "llama.attention.head_count", (uint32_t)c->n_heads);
    kv_u32(&w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    kv_u32(&w, "llama.rope.dimension_count", (uint32_t)(c->dim / c->n_heads));
    kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    kv_f32(&w, "llama.rope.freq_base", c->rope_theta);
    kv_str(&w, "tokenizer.ggml.model", "llama");
    /* tokens */
    wr_str(&w, "tokenizer.ggml.tokens", strlen("tokenizer.ggml.tokens"));
    wr_u32(&w, T_ARR);
    wr_u32(&w, T_STR);
    wr_u64(&w, (uint64_t)m->vocab.n);
    char *tmp = nb_malloc((size_t)m->vocab.max_len * 3 + 16);
    for (int i = 0; tmp && i < m->vocab.n; i++) {
        size_t k = escape_spaces(m->vocab.pieces[i], tmp);
        wr_str(&w, tmp, k);
    }
    nb_free(tmp);
    wr_str(&w, "tokenizer.ggml.scores", strlen("tokenizer.ggml.scores"));
    wr_u32(&w, T_ARR);
    wr_u32(&w, T_F32);
    wr_u64(&w, (uint64_t)m->vocab.n);
    wr(&w, m->vocab.scores, (size_t)m->vocab.n * 4);
    wr_str(&w, "tokenizer.ggml.token_type", strlen("tokenizer.ggml.token_type"));
    wr_u32(&w, T_ARR);
    wr_u32(&w, T_I32);
    wr_u64(&w, (uint64_t)m->vocab.n);
    wr(&w, m->vocab.types, (size_t)m->vocab.n * 4);
    kv_u32(&w, "tokenizer.ggml.bos_token_id", (uint32_t)m->vocab.bos);
    kv_u32(&w, "tokenizer.ggml.eos_token_id", (uint32_t)m->vocab.eos);
    kv_u32(&w, "tokenizer.ggml.unknown_token_id", (uint32_t)m->vocab.unk);
    /* tensor infos: dims are ggml order (ne0 = cols) */
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const nb_qtensor *t = g[i].t;
        wr_str(&w, g[i].name, strlen(g[i].name));
        if (g[i].is_vec) {
            wr_u32(&w, 1);
            wr_u64(&w, (uint64_t)t->cols);
        } else {
            wr_u32(&w, 2);
            wr_u64(&w, (uint64_t)t->cols);
            wr_u64(&w, (uint64_t)t->rows);
        }
        wr_u32(&w, (uint32_t)ggml_type_of(t->type));
        wr_u64(&w, off);
        off += (uint64_t)t->rows * nb_qtensor_row_bytes(t->type, t->cols);
        off = (off + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    pad(&w);
    for (int i = 0; i < nt; i++) {
        const nb_qtensor *t = g[i].t;
        wr(&w, t->data, (size_t)t->rows * nb_qtensor_row_bytes(t->type, t->cols));
        pad(&w);
    }
    nb_free(g);
    int cerr = fclose(f);
    if (w.err || cerr) return nb_fail(NB_EIO, "write %s: %s", path, strerror(errno));
    return NB_OK;
}

/* ---- reader ---- */

typedef struct rbuf {
    const uint8_t *p;
    size_t n, off;
    const char *path;
} rbuf;

static nb_status need(rbuf *r, uint64_t k, const char *what) {
    if (k > r->n - r->off)
        return nb_fail(NB_EFORMAT, "%s: truncated GGUF: %s needs %llu bytes at offset %zu, file has %zu", r->path, what,
                       (unsigned long long)k, r->off, r->n);
    return NB_OK;
}
static nb_status rd(rbuf *r, void *dst, size_t k, const char *what) {
    NB_TRY(need(r, k, what));
    memcpy(dst, r->p + r->off, k);
    r->off += k;
    return NB_OK;
}
static nb_status rd_str(rbuf *r, const char **s, uint64_t *len, const char *what) {
    NB_TRY(rd(r, len, 8, what));
    NB_TRY(need(r, *len, what));
    *s = (const char *)r->p + r->off;
    r->off += *len;
    return NB_OK;
}

static size_t scalar_size(uint32_t t) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t <= T_F64 ? sz[t] : 0;
}

/* Skip or read a value of type t. */
static nb_status skip_value(rbuf *r, uint32_t t, const char *key) {
    if (t == T_STR) {
        const char *s;
        uint64_t l;
        return rd_str(r, &s, &l, key);
    }
    if (t == T_ARR) {
        uint32_t et;
        uint64_t n;
        NB_TRY(rd(r, &et, 4, key));
        NB_TRY(rd(r, &n, 8, key));
        if (et == T_ARR) return nb_fail(NB_EFORMAT, "%s: key %s: nested arrays are not supported", r->path, key);
        if (et == T_STR) {
            for (uint64_t i = 0; i < n; i++) NB_TRY(skip_value(r, T_STR, key));
            return NB_OK;
        }
        size_t es = scalar_size(et);
        if (!es) return nb_fail(NB_EFORMAT, "%s: key %s: unknown array element type %u", r->path, key, et);
        if (n > (r->n - r->off) / es) return need(r, UINT64_MAX, key);
        r->off += (size_t)n * es;
        return NB_OK;
    }
    size_t es = scalar_size(t);
    if (!es) return nb_fail(NB_EFORMAT, "%s: key %s: unknown value type %u", r->path, key, t);
    NB_TRY(need(r, es, key));
    r->off += es;
    return NB_OK;
}

static int key_is(const char *k, uint64_t kl, const char *s) { return kl == strlen(s) && !memcmp(k, s, kl); }

/* integer or float scalar value at r (type t) as double; advances */
static nb_status rd_num(rbuf *r, uint32_t t, const char *key, double *v) {
    uint8_t b[8] = {0};
    size_t es = scalar_size(t);
    if (!es || t == T_BOOL) return nb_fail(NB_EFORMAT, "%s: key %s should be a number (type %u)", r->path, key, t);
    NB_TRY(rd(r, b, es, key));
    switch (t) {
    case T_U8: *v = b[0]; break;
    case T_I8: *v = (int8_t)b[0]; break;
    case T_U16: { uint16_t x; memcpy(&x, b, 2); *v = x; break; }
    case T_I16: { int16_t x; memcpy(&x, b, 2); *v = x; break; }
    case T_U32: { uint32_t x; memcpy(&x, b, 4); *v = x; break; }
    case T_I32: { int32_t x; memcpy(&x, b, 4); *v = x; break; }
    case T_F32: { float x; memcpy(&x, b, 4); *v = x; break; }
    case T_U64: { uint64_t x; memcpy(&x, b, 8); *v = (double)x; break; }
    case T_I64: { int64_t x; memcpy(&x, b, 8); *v = (double)x; break; }
    case T_F64: memcpy(v, b, 8); break;
    }
    return NB_OK;
}

static int to_int(double v) { return v >= -2147483648.0 && v <= 2147483647.0 ? (int)v : -1; }

typedef struct tinfo {
    const char *name;
    uint64_t name_len;
    uint32_t ndim;
    uint64_t ne[4];
    uint32_t type;
    uint64_t off;
} tinfo;

static nb_status bind(nb_qmodel *m, rbuf *r, const tinfo *ti, size_t data0, nb_qtensor *t, int is_vec) {
    char nm[128];
    snprintf(nm, sizeof nm, "%.*s", (int)(ti->name_len < 100 ? ti->name_len : 100), ti->name);
    int64_t cols = (int64_t)ti->ne[0], rows = ti->ndim > 1 ? (int64_t)ti->ne[1] : 1;
    for (uint32_t d = 2; d < ti->ndim; d++)
        if (ti->ne[d] != 1) return nb_fail(NB_EFORMAT, "%s: tensor %s has %u dimensions", r->path, nm, ti->ndim);
    if (cols != t->cols || rows != t->rows)
        return nb_fail(NB_EFORMAT, "%s: tensor %s is (%lld, %lld), the config wants (%lld, %lld)", r->path, nm,
                       (long long)rows, (long long)cols, (long long)t->rows, (long long)t->cols);
    nb_qtype qt;
    switch (ti->type) {
    case NB_GGUF_F32: qt = NB_QT_F32; break;
    case NB_GGUF_F16: qt = NB_QT_F16; break;
    case NB_GGUF_Q8_0: qt = NB_QT_Q8_0; break;
    case NB_GGUF_Q4_0: qt = NB_QT_Q4_0; break;
    default:
        return nb_fail(NB_EUNSUPPORTED, "%s: tensor %s has ggml type %u (nibble reads F32, F16, Q4_0, Q8_0)", r->path, nm,
                       ti->type);
    }
    if ((qt == NB_QT_Q8_0 || qt == NB_QT_Q4_0) && cols % NB_QK)
        return nb_fail(NB_EFORMAT, "%s: tensor %s: %lld columns is not a multiple of the block size 32", r->path, nm,
                       (long long)cols);
    uint64_t bytes = (uint64_t)rows * nb_qtensor_row_bytes(qt, cols);
    if (ti->off % GGUF_ALIGN || data0 + ti->off > r->n || bytes > r->n - data0 - ti->off)
        return nb_fail(NB_EFORMAT, "%s: tensor %s: %llu bytes at data offset %llu run past the end of the file (%zu bytes)",
                       r->path, nm, (unsigned long long)bytes, (unsigned long long)ti->off, r->n);
    const uint8_t *src = r->p + data0 + ti->off;
    t->type = qt;
    t->group = 0;
    if (is_vec && qt != NB_QT_F32) {
        /* norms run in fp32 */
        float *v = nb_qmodel_alloc(m, (size_t)cols * 4);
        if (!v) return NB_ENOMEM;
        t->data = (void *)src;
        nb_qtensor_dequant_row(t, 0, v);
        t->type = NB_QT_F32;
        t->data = v;
    } else {
        t->data = (void *)src;
    }
    if (t->type == NB_QT_F32 && !nb_rt_all_finite(t->data, rows * cols))
        return nb_fail(NB_EFORMAT, "%s: tensor %s contains NaN or Inf", r->path, nm);
    return NB_OK;
}

nb_status nb_gguf_read(const char *path, nb_qmodel **out) {
    *out = NULL;
    nb_qmodel *m = nb_calloc(1, sizeof *m);
    if (!m) return NB_ENOMEM;
    uint8_t *buf;
    size_t len;
    tinfo *ti = NULL;
    nb_status st = nb_rt_read_file(m, path, &buf, &len);
    if (st) goto fail;
    rbuf r = {buf, len, 0, path};
    uint32_t magic, version;
    uint64_t nt, nkv;
    if ((st = rd(&r, &magic, 4, "magic")) || (st = rd(&r, &version, 4, "version"))) goto fail;
    if (magic != 0x46554747u) {
        st = nb_fail(NB_EFORMAT, "%s: not a GGUF file", path);
        goto fail;
    }
    if (version != 2 && version != 3) {
        st = nb_fail(NB_EFORMAT, "%s: GGUF version %u (nibble reads 2 and 3)", path, version);
        goto fail;
    }
    if ((st = rd(&r, &nt, 8, "tensor count")) || (st = rd(&r, &nkv, 8, "metadata count"))) goto fail;
    if (nt > len / 24 || nkv > len / 12) {
        st = nb_fail(NB_EFORMAT, "%s: %llu tensors / %llu metadata entries cannot fit in %zu bytes", path,
                     (unsigned long long)nt, (unsigned long long)nkv, len);
        goto fail;
    }
    nb_qconfig c = {0};
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    int have_arch = 0, align = GGUF_ALIGN, rope_dims = -1;
    size_t tok_off = 0, score_off = 0, type_off = 0;
    uint64_t n_tok = 0, n_score = 0, n_type = 0;
    uint32_t type_et = 0;
    int bos = 1, eos = 2, unk = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        const char *k;
        uint64_t kl;
        uint32_t t;
        if ((st = rd_str(&r, &k, &kl, "metadata key")) || (st = rd(&r, &t, 4, "metadata type"))) goto fail;
        char key[80];
        snprintf(key, sizeof key, "%.*s", (int)(kl < 70 ? kl : 70), k);
        double v = 0;
        if (key_is(k, kl, "general.architecture")) {
            const char *s;
            uint64_t sl;
            if (t != T_STR) goto badtype;
            if ((st = rd_str(&r, &s, &sl, key))) goto fail;
            if (!(sl == 5 && !memcmp(s, "llama", 5))) {
                st = nb_fail(NB_EUNSUPPORTED, "%s: architecture '%.*s' (nibble reads llama)", path, (int)(sl < 40 ? sl : 40), s);
                goto fail;
            }
            have_arch = 1;
            continue;
        }
        int *dst = NULL;
        float *fdst = NULL;
        if (key_is(k, kl, "llama.context_length")) dst = &c.seq_len;
        else if (key_is(k, kl, "llama.embedding_length")) dst = &c.dim;
        else if (key_is(k, kl, "llama.block_count")) dst = &c.n_layers;
        else if (key_is(k, kl, "llama.feed_forward_length")) dst = &c.hidden_dim;
        else if (key_is(k, kl, "llama.attention.head_count")) dst = &c.n_heads;
        else if (key_is(k, kl, "llama.attention.head_count_kv")) dst = &c.n_kv_heads;
        else if (key_is(k, kl, "llama.rope.dimension_count")) dst = &rope_dims;
        else if (key_is(k, kl, "general.alignment")) dst = &align;
        else if (key_is(k, kl, "tokenizer.ggml.bos_token_id")) dst = &bos;
        else if (key_is(k, kl, "tokenizer.ggml.eos_token_id")) dst = &eos;
        else if (key_is(k, kl, "tokenizer.ggml.unknown_token_id")) dst = &unk;
        else if (key_is(k, kl, "llama.attention.layer_norm_rms_epsilon")) fdst = &c.norm_eps;
        else if (key_is(k, kl, "llama.rope.freq_base")) fdst = &c.rope_theta;
        if (dst || fdst) {
            if (t == T_STR || t == T_ARR) goto badtype;
            if ((st = rd_num(&r, t, key, &v))) goto fail;
            if (dst) *dst = to_int(v);
            else *fdst = (float)v;
            continue;
        }
        int is_tok = key_is(k, kl, "tokenizer.ggml.tokens"), is_sc = key_is(k, kl, "tokenizer.ggml.scores"),
            is_ty = key_is(k, kl, "tokenizer.ggml.token_type");
        if ((is_tok || is_sc || is_ty) && t == T_ARR) {
            uint32_t et;
            uint64_t n;
            size_t at = r.off;
            if ((st = rd(&r, &et, 4, key)) || (st = rd(&r, &n, 8, key))) goto fail;
            if (is_tok) tok_off = r.off, n_tok = n;
            if (is_sc) score_off = r.off, n_score = n;
            if (is_ty) type_off = r.off, n_type = n, type_et = et;
            if ((is_tok && et != T_STR) || (is_sc && et != T_F32) || (is_ty && et != T_I32 && et != T_U32)) goto badtype;
            r.off = at;
        }
        if ((st = skip_value(&r, t, key))) goto fail;
        continue;
    badtype:
        st = nb_fail(NB_EFORMAT, "%s: metadata %s has unexpected type %u", path, key, t);
        goto fail;
    }
    if (!have_arch) {
        st = nb_fail(NB_EFORMAT, "%s: no general.architecture key", path);
        goto fail;
    }
    if (align <= 0 || align > 4096 || (align & (align - 1))) {
        st = nb_fail(NB_EFORMAT, "%s: bad general.alignment %d", path, align);
        goto fail;
    }
    if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
    /* tensor infos */
    ti = nb_calloc(nt ? nt : 1, sizeof *ti);
    if (!ti) {
        st = NB_ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < nt; i++) {
        if ((st = rd_str(&r, &ti[i].name, &ti[i].name_len, "tensor name")) || (st = rd(&r, &ti[i].ndim, 4, "tensor dims")))
            goto fail;
        if (ti[i].ndim < 1 || ti[i].ndim > 4) {
            st = nb_fail(NB_EFORMAT, "%s: tensor %llu has %u dimensions", path, (unsigned long long)i, ti[i].ndim);
            goto fail;
        }
        for (uint32_t d = 0; d < ti[i].ndim; d++)
            if ((st = rd(&r, &ti[i].ne[d], 8, "tensor shape"))) goto fail;
        if ((st = rd(&r, &ti[i].type, 4, "tensor type")) || (st = rd(&r, &ti[i].off, 8, "tensor offset"))) goto fail;
    }
    size_t data0 = (r.off + (size_t)align - 1) / (size_t)align * (size_t)align;
    /* vocab size from the token list or the embedding */
    if (n_tok) c.vocab = (int)(n_tok < (1u << 30) ? n_tok : 0);
    c.tied = 1;
    for (uint64_t i = 0; i < nt; i++) {
        if (key_is(ti[i].name, ti[i].name_len, "output.weight")) c.tied = 0;
        if (key_is(ti[i].name, ti[i].name_len, "token_embd.weight") && !n_tok && ti[i].ndim == 2)
            c.vocab = (int)(ti[i].ne[1] < (1u << 30) ? ti[i].ne[1] : 0);
    }
    if (rope_dims >= 0 && c.n_heads > 0 && rope_dims != c.dim / c.n_heads) {
        st = nb_fail(NB_EUNSUPPORTED, "%s: rope.dimension_count %d differs from the head size %d (partial rope)", path,
                     rope_dims, c.dim / c.n_heads);
        goto fail;
    }
    nb_qmodel *mm;
    if ((st = nb_qmodel_new(&c, &mm))) {
        st = nb_fail_prefix(st, "%s", path);
        goto fail;
    }
    /* move the file block into the new model */
    mm->allocs = nb_realloc(mm->allocs, (size_t)(mm->n_allocs + m->n_allocs + 1) * sizeof(void *));
    for (int i = 0; mm->allocs && i < m->n_allocs; i++) mm->allocs[mm->n_allocs++] = m->allocs[i];
    mm->cap_allocs = mm->n_allocs + 1;
    nb_free(m->allocs);
    nb_free(m);
    m = mm;
    if (!m->allocs) {
        st = NB_ENOMEM;
        goto fail;
    }
    /* bind tensors by name */
    int seen = 0, want = 2 + 9 * c.n_layers + (c.tied ? 0 : 1);
    for (uint64_t i = 0; i < nt; i++) {
        char nm[64];
        if (ti[i].name_len >= sizeof nm) continue;
        memcpy(nm, ti[i].name, ti[i].name_len);
        nm[ti[i].name_len] = 0;
        nb_qtensor *t = NULL;
        int is_vec = 0, l;
        char part[32];
        if (!strcmp(nm, "token_embd.weight")) t = &m->tok_emb;
        else if (!strcmp(nm, "output_norm.weight")) t = &m->norm, is_vec = 1;
        else if (!strcmp(nm, "output.weight")) t = &m->classifier;
        else if (sscanf(nm, "blk.%d.%31[a-z_].weight", &l, part) == 2 && l >= 0 && l < c.n_layers) {
            nb_qlayer *L = &m->layers[l];
            if (!strcmp(part, "attn_norm")) t = &L->attn_norm, is_vec = 1;
            else if (!strcmp(part, "attn_q")) t = &L->wq;
            else if (!strcmp(part, "attn_k")) t = &L->wk;
            else if (!strcmp(part, "attn_v")) t = &L->wv;
            else if (!strcmp(part, "attn_output")) t = &L->wo;
            else if (!strcmp(part, "ffn_norm")) t = &L->ffn_norm, is_vec = 1;
            else if (!strcmp(part, "ffn_gate")) t = &L->w1;
            else if (!strcmp(part, "ffn_down")) t = &L->w2;
            else if (!strcmp(part, "ffn_up")) t = &L->w3;
        }
        if (!t) continue;
        if (t->data) {
            st = nb_fail(NB_EFORMAT, "%s: tensor %s appears twice", path, nm);
            goto fail;
        }
        if ((st = bind(m, &r, &ti[i], data0, t, is_vec))) goto fail;
        seen++;
    }
    if (seen != want) {
        st = nb_fail(NB_EFORMAT, "%s: found %d of the %d llama tensors (missing e.g. %s)", path, seen, want,
                     !m->tok_emb.data ? "token_embd.weight" : !m->norm.data ? "output_norm.weight" : "a blk.N tensor");
        goto fail;
    }
    if (c.tied) m->classifier = m->tok_emb;
    /* vocabulary */
    if (n_tok) {
        if ((n_score && n_score != n_tok) || (n_type && n_type != n_tok)) {
            st = nb_fail(NB_EFORMAT, "%s: %llu tokens but %llu scores / %llu types", path, (unsigned long long)n_tok,
                         (unsigned long long)n_score, (unsigned long long)n_type);
            goto fail;
        }
        if ((st = nb_rt_vocab_init(m, (int)n_tok))) goto fail;
        rbuf tr = r;
        tr.off = tok_off;
        char *tmp = nb_malloc(len < 4096 ? 4096 : 4096);
        for (uint64_t i = 0; i < n_tok; i++) {
            const char *s;
            uint64_t sl;
            if ((st = rd_str(&tr, &s, &sl, "token"))) break;
            /* U+2581 back to a plain space */
            size_t k = 0;
            for (uint64_t j = 0; j < sl && k < 4000; j++) {
                if (j + 2 < sl && (uint8_t)s[j] == 0xe2 && (uint8_t)s[j + 1] == 0x96 && (uint8_t)s[j + 2] == 0x81) {
                    tmp[k++] = ' ';
                    j += 2;
                } else {
                    tmp[k++] = s[j];
                }
            }
            float sc = 0;
            int32_t ty = 1;
            if (n_score) memcpy(&sc, buf + score_off + 4 * i, 4);
            if (n_type) memcpy(&ty, buf + type_off + 4 * i, 4);
            (void)type_et;
            if ((st = nb_rt_vocab_set(m, (int)i, tmp, k, sc, ty))) break;
        }
        nb_free(tmp);
        if (st) goto fail;
        m->vocab.bos = bos;
        m->vocab.eos = eos;
        m->vocab.unk = unk;
    }
    m->source = nb_qmodel_alloc(m, strlen(path) + 1);
    if (m->source) strcpy(m->source, path);
    nb_free(ti);
    *out = m;
    return NB_OK;
fail:
    nb_free(ti);
    nb_qmodel_free(m);
    return st;
}
