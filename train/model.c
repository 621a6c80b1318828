/* model.c: the llama-style decoder: config, parameter table, tape forward, KV-cache decode, sampler. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/kernels/vec.h"
#include "../ops/ops.h"
#include "linear_exact.h"

/* ---- config ---- */

void nb_model_config_defaults(nb_model_config *c) {
    memset(c, 0, sizeof *c);
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tied = 1;
}

int nb_model_default_hidden(int dim) {
    int64_t h = 4 * (int64_t)dim;
    h = 2 * h / 3;
    h = 32 * ((h + 31) / 32);
    return (int)h;
}

nb_status nb_model_config_check(const nb_model_config *c, const char *what) {
    const char *w = what ? what : "model config";
#define RANGE(field, lo, hi)                                                                          \
    if (c->field < (lo) || c->field > (hi))                                                           \
        return nb_fail(NB_EFORMAT, "%s: %s = %d, expected %d..%d", w, #field, c->field, (int)(lo), (int)(hi));
    RANGE(dim, 1, NB_MODEL_MAX_DIM);
    RANGE(n_layers, 1, NB_MODEL_MAX_LAYERS);
    RANGE(n_heads, 1, NB_MODEL_MAX_HEADS);
    RANGE(n_kv_heads, 1, NB_MODEL_MAX_HEADS);
    RANGE(hidden_dim, 1, 16 * NB_MODEL_MAX_DIM);
    RANGE(vocab_size, 1, NB_MODEL_MAX_VOCAB);
    RANGE(seq_len, 1, NB_MODEL_MAX_SEQ);
#undef RANGE
    if (c->dim % c->n_heads)
        return nb_fail(NB_EFORMAT, "%s: n_heads = %d does not divide dim = %d", w, c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return nb_fail(NB_EFORMAT, "%s: n_kv_heads = %d does not divide n_heads = %d", w, c->n_kv_heads, c->n_heads);
    if ((c->dim / c->n_heads) % 2)
        return nb_fail(NB_EFORMAT, "%s: head dim %d (dim / n_heads) must be even for RoPE", w, c->dim / c->n_heads);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return nb_fail(NB_EFORMAT, "%s: norm_eps = %g, expected in (0, 1)", w, c->norm_eps);
    if (!(c->rope_theta > 1.0f && c->rope_theta < 1e12f))
        return nb_fail(NB_EFORMAT, "%s: rope_theta = %g, expected in (1, 1e12)", w, c->rope_theta);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return nb_fail(NB_EFORMAT, "%s: dropout = %g, expected in [0, 1)", w, c->dropout);
    if (c->tied != 0 && c->tied != 1) return nb_fail(NB_EFORMAT, "%s: tied = %d, expected 0 or 1", w, c->tied);
    int64_t n = nb_model_config_numel(c);
    if (n > NB_MODEL_MAX_PARAMS)
        return nb_fail(NB_EFORMAT, "%s: %lld parameters, more than the limit %lld", w, (long long)n,
                       (long long)NB_MODEL_MAX_PARAMS);
    return NB_OK;
}

nb_status nb_model_config_from_recipe(const nb_recipe_model *rm, int tokenizer_vocab, nb_model_config *c) {
    nb_model_config_defaults(c);
    c->dim = rm->dim;
    c->n_layers = rm->n_layers;
    c->n_heads = rm->n_heads;
    c->n_kv_heads = rm->n_kv_heads ? rm->n_kv_heads : rm->n_heads;
    c->hidden_dim = rm->hidden_dim ? rm->hidden_dim : nb_model_default_hidden(rm->dim);
    c->vocab_size = rm->vocab_size ? rm->vocab_size : tokenizer_vocab;
    c->seq_len = rm->seq_len;
    c->norm_eps = rm->norm_eps;
    c->rope_theta = rm->rope_theta;
    c->tied = rm->tied_embeddings ? 1 : 0;
    c->dropout = rm->dropout;
    nb_status s = nb_model_config_check(c, "recipe model");
    if (s == NB_EFORMAT) s = NB_EINVAL; /* a recipe is user input, not a file format */
    return s;
}

int64_t nb_model_config_numel(const nb_model_config *c) {
    int64_t C = c->dim, V = c->vocab_size, F = c->hidden_dim, L = c->n_layers;
    int64_t kv = c->n_heads > 0 ? C / c->n_heads * c->n_kv_heads : 0;
    int64_t layer = C + C * C + 2 * kv * C + C * C + C + 3 * F * C;
    return V * C + L * layer + C + (c->tied ? 0 : V * C);
}

const char *nb_model_config_json(const nb_model_config *c, char *buf, size_t n) {
    snprintf(buf, n,
             "{\"dim\": %d, \"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, \"hidden_dim\": %d, "
             "\"vocab_size\": %d, \"seq_len\": %d, \"norm_eps\": %g, \"rope_theta\": %g, \"tied\": %s, "
             "\"dropout\": %g}",
             c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim, c->vocab_size, c->seq_len,
             (double)c->norm_eps, (double)c->rope_theta, c->tied ? "true" : "false", (double)c->dropout);
    return buf;
}

/* ---- parameters ---- */

static void spec(nb_param_spec *s, nb_param_kind kind, int64_t d0, int64_t d1, const char *fmt, int layer) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, fmt, layer);
    s->kind = kind;
    s->ndim = d1 ? 2 : 1;
    s->shape[0] = d0;
    s->shape[1] = d1 ? d1 : 1;
}

/* The table in model order; when lp is given, also the per-layer indices. */
static void fill_specs(const nb_model_config *c, nb_param_spec *s, nb_layer_params *lp, int *tok_emb, int *norm,
                       int *classifier) {
    int L = c->n_layers;
    int64_t C = c->dim, F = c->hidden_dim, V = c->vocab_size;
    int64_t KV = C / c->n_heads * c->n_kv_heads;
    int k = 0;
    nb_layer_params dummy;
    *tok_emb = k;
    spec(&s[k++], NB_PARAM_EMBED, V, C, "tok_emb", 0);
    for (int l = 0; l < L; l++) {
        nb_layer_params *p = lp ? &lp[l] : &dummy;
        p->attn_norm = k;
        spec(&s[k++], NB_PARAM_NORM, C, 0, "layers.%d.attn_norm", l);
        p->wq = k;
        spec(&s[k++], NB_PARAM_LINEAR, C, C, "layers.%d.attn.wq", l);
        p->wk = k;
        spec(&s[k++], NB_PARAM_LINEAR, KV, C, "layers.%d.attn.wk", l);
        p->wv = k;
        spec(&s[k++], NB_PARAM_LINEAR, KV, C, "layers.%d.attn.wv", l);
        p->wo = k;
        spec(&s[k++], NB_PARAM_LINEAR, C, C, "layers.%d.attn.wo", l);
        p->ffn_norm = k;
        spec(&s[k++], NB_PARAM_NORM, C, 0, "layers.%d.ffn_norm", l);
        p->w1 = k;
        spec(&s[k++], NB_PARAM_LINEAR, F, C, "layers.%d.ffn.w1", l);
        p->w2 = k;
        spec(&s[k++], NB_PARAM_LINEAR, C, F, "layers.%d.ffn.w2", l);
        p->w3 = k;
        spec(&s[k++], NB_PARAM_LINEAR, F, C, "layers.%d.ffn.w3", l);
    }
    *norm = k;
    spec(&s[k++], NB_PARAM_NORM, C, 0, "norm", 0);
    *classifier = *tok_emb;
    if (!c->tied) {
        *classifier = k;
        spec(&s[k++], NB_PARAM_CLASSIFIER, V, C, "classifier", 0);
    }
}

static int n_specs(const nb_model_config *c) { return 1 + 9 * c->n_layers + 1 + (c->tied ? 0 : 1); }

nb_status nb_model_specs(const nb_model_config *c, int *n, nb_param_spec **specs) {
    *n = 0;
    *specs = NULL;
    NB_TRY(nb_model_config_check(c, "model config"));
    int k = n_specs(c);
    nb_param_spec *s = nb_calloc((size_t)k, sizeof *s);
    if (!s) return nb_fail(NB_ENOMEM, "model: parameter table of %d entries", k);
    int a, b, d;
    fill_specs(c, s, NULL, &a, &b, &d);
    *n = k;
    *specs = s;
    return NB_OK;
}

nb_status nb_model_init(nb_model *m, const nb_model_config *c) {
    memset(m, 0, sizeof *m);
    NB_TRY(nb_model_config_check(c, "model config"));
    m->cfg = *c;
    int n = n_specs(c);
    nb_param_spec *s = nb_calloc((size_t)n, sizeof *s);
    m->layers = nb_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!s || !m->layers) {
        nb_free(s);
        nb_free(m->layers);
        m->layers = NULL;
        return nb_fail(NB_ENOMEM, "model: parameter table of %d entries", n);
    }
    fill_specs(c, s, m->layers, &m->tok_emb, &m->norm, &m->classifier);
    nb_status st = nb_paramset_build(&m->params, n, s);
    nb_free(s);
    if (st != NB_OK) {
        nb_free(m->layers);
        m->layers = NULL;
        return st;
    }
    return NB_OK;
}

void nb_model_free(nb_model *m) {
    if (!m) return;
    nb_paramset_free(&m->params);
    nb_free(m->layers);
    m->layers = NULL;
}

void nb_model_init_random(nb_model *m, float std, uint64_t seed) {
    nb_rng r = nb_rng_make(seed, NB_RNG_STREAM_INIT);
    float resid = std / sqrtf(2.0f * (float)m->cfg.n_layers);
    for (int i = 0; i < m->params.n; i++) {
        nb_param *p = &m->params.p[i];
        float *x = nb_f32(&p->t);
        int64_t n = nb_numel(&p->t);
        if (p->kind == NB_PARAM_NORM) {
            for (int64_t j = 0; j < n; j++) x[j] = 1.0f;
            continue;
        }
        size_t len = strlen(p->name);
        int is_resid = len > 3 && (!strcmp(p->name + len - 3, ".wo") || !strcmp(p->name + len - 3, ".w2"));
        float sd = is_resid ? resid : std;
        for (int64_t j = 0; j < n; j++) x[j] = sd * nb_rng_normal(&r);
    }
}

int64_t nb_model_numel(const nb_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->params.n; i++) n += nb_numel(&m->params.p[i].t);
    return n;
}

/* ---- forward on the tape ---- */

/* x (..., Cin) -> (..., Cout) through weight `idx`, with both QAT hooks. *xq_io (optional) shares
   the activation hook between weights reading the same x: on entry the hooked x of weight
   *prev_io (NULL: none yet), reused when the policy quantizes both inputs the same way; on exit
   this weight's hooked x. */
static nb_tensor *linear_shared(nb_tape *t, nb_model *m, int idx, nb_tensor *x, nb_tensor **xq_io, int *prev_io) {
    nb_tensor *w = nb_qat_weight(t, m->qat, idx, nb_model_param(m, idx));
    nb_tensor *xq = xq_io && *xq_io && nb_qat_act_shared(m->qat, *prev_io, idx) ? *xq_io : nb_qat_act(t, m->qat, idx, x);
    if (xq_io) *xq_io = xq, *prev_io = idx;
    if (m->exact && !t->recording) return nb_exact_linear(t, m->exact, idx, xq);
    return nb_linear(t, xq, w);
}

static nb_tensor *linear(nb_tape *t, nb_model *m, int idx, nb_tensor *x) {
    return linear_shared(t, m, idx, x, NULL, NULL);
}

static nb_status check_ids(const nb_model *m, const nb_tensor *ids, const char *what) {
    char sb[64];
    if (ids->dtype != NB_I32 || ids->ndim != 2 || !nb_is_contiguous(ids))
        return nb_fail(NB_EINVAL, "model forward: %s must be contiguous I32 (B, T), got %s %s", what,
                       nb_dtype_name(ids->dtype), nb_shape_str(ids, sb, sizeof sb));
    if (ids->shape[1] < 1 || ids->shape[1] > m->cfg.seq_len || ids->shape[0] < 1)
        return nb_fail(NB_ESHAPE, "model forward: %s is %s but T must be 1..seq_len %d", what,
                       nb_shape_str(ids, sb, sizeof sb), m->cfg.seq_len);
    return NB_OK;
}

nb_status nb_model_forward(nb_tape *t, nb_model *m, const nb_tensor *ids, const nb_tensor *targets,
                           nb_tensor **logits, nb_tensor **loss) {
    NB_ASSERT(t && m && ids && logits);
    *logits = NULL;
    if (loss) *loss = NULL;
    if (t->status != NB_OK) return nb_tape_status(t);
    const nb_model_config *c = &m->cfg;
    NB_TRY(check_ids(m, ids, "ids"));
    if (targets) {
        NB_TRY(check_ids(m, targets, "targets"));
        if (!nb_same_shape(ids, targets))
            return nb_fail(NB_ESHAPE, "model forward: targets (%lld, %lld) differ from ids (%lld, %lld)",
                           (long long)targets->shape[0], (long long)targets->shape[1], (long long)ids->shape[0],
                           (long long)ids->shape[1]);
    }
    int64_t B = ids->shape[0], T = ids->shape[1], C = c->dim;
    int64_t H = C / c->n_heads;
    int64_t q_shape[4] = {B, T, c->n_heads, H};
    int64_t kv_shape[4] = {B, T, c->n_kv_heads, H};
    int64_t x_shape[3] = {B, T, C};

    /* x = tok_emb[ids]  (B, T, C); the table goes through the weight hook too, so a policy that
       quantizes it (quantize_embeddings, or the tied classifier) is seen by the lookup as well */
    nb_tensor *emb = nb_qat_weight(t, m->qat, m->tok_emb, nb_model_param(m, m->tok_emb));
    nb_tensor *x = nb_embedding(t, emb, (nb_tensor *)ids);
    if (c->dropout > 0.0f) x = nb_dropout(t, x, c->dropout);
    for (int l = 0; l < c->n_layers; l++) {
        const nb_layer_params *lp = &m->layers[l];
        /* attention block: x += wo(attn(rope(wq h), rope(wk h), wv h)), h = rmsnorm(x) */
        nb_tensor *h = nb_rmsnorm(t, x, nb_model_param(m, lp->attn_norm), c->norm_eps);
        nb_tensor *hq = NULL; /* h through the activation hook, shared by wq, wk, wv when possible */
        int hq_of = -1;
        nb_tensor *q = nb_reshape(t, linear_shared(t, m, lp->wq, h, &hq, &hq_of), 4, q_shape);
        nb_tensor *k = nb_reshape(t, linear_shared(t, m, lp->wk, h, &hq, &hq_of), 4, kv_shape);
        nb_tensor *v = nb_reshape(t, linear_shared(t, m, lp->wv, h, &hq, &hq_of), 4, kv_shape);
        q = nb_rope(t, q, c->rope_theta, 0);
        k = nb_rope(t, k, c->rope_theta, 0);
        nb_tensor *a = nb_reshape(t, nb_attention(t, q, k, v), 3, x_shape); /* (B, T, nh, H) -> (B, T, C) */
        nb_tensor *o = linear(t, m, lp->wo, a);
        if (c->dropout > 0.0f) o = nb_dropout(t, o, c->dropout);
        x = nb_add(t, x, o);
        /* FFN block: x += w2(silu(w1 h) * w3 h), h = rmsnorm(x) */
        h = nb_rmsnorm(t, x, nb_model_param(m, lp->ffn_norm), c->norm_eps);
        hq = NULL;
        nb_tensor *g = linear_shared(t, m, lp->w1, h, &hq, &hq_of);
        nb_tensor *u = linear_shared(t, m, lp->w3, h, &hq, &hq_of);
        nb_tensor *f = linear(t, m, lp->w2, nb_swiglu(t, g, u));
        if (c->dropout > 0.0f) f = nb_dropout(t, f, c->dropout);
        x = nb_add(t, x, f);
    }
    x = nb_rmsnorm(t, x, nb_model_param(m, m->norm), c->norm_eps);
    /* tied: the classifier reads tok_emb (V, C) through the hooks with index m->classifier == tok_emb */
    nb_tensor *y = linear(t, m, m->classifier, x); /* (B, T, V) */
    nb_tensor *ls = NULL;
    if (targets) ls = nb_cross_entropy(t, y, (nb_tensor *)targets);
    nb_status s = nb_tape_status(t);
    if (s != NB_OK) return s;
    if (!y || (targets && !ls)) return nb_fail(NB_EINVAL, "model forward: an op returned no result");
    *logits = y;
    if (loss) *loss = ls;
    return NB_OK;
}

/* ---- decode without a tape ---- */

static int is_linear(const nb_param *p) { return p->kind == NB_PARAM_LINEAR || p->kind == NB_PARAM_CLASSIFIER; }

void nb_decoder_free(nb_decoder *d) {
    if (!d) return;
    nb_free(d->key_cache);
    nb_free(d->value_cache);
    nb_free(d->x);
    nb_free(d->w);
    nb_free(d->wq_block);
    if (d->m) {
        nb_tape_free(&d->tape);
        nb_arena_free(&d->arena);
    }
    memset(d, 0, sizeof *d);
}

nb_status nb_decoder_init(nb_decoder *d, nb_model *m, int max_T) {
    memset(d, 0, sizeof *d);
    const nb_model_config *c = &m->cfg;
    if (max_T < 1 || max_T > c->seq_len)
        return nb_fail(NB_EINVAL, "decoder: %d positions, expected 1..seq_len %d", max_T, c->seq_len);
    d->m = m;
    d->max_T = max_T;
    nb_arena_init(&d->arena, 1 << 16);
    nb_tape_init(&d->tape, &d->arena);
    nb_tape_grad(&d->tape, 0);
    d->tape.training = 0;
    int64_t C = c->dim, KV = C / c->n_heads * c->n_kv_heads, F = c->hidden_dim, V = c->vocab_size;
    size_t cache = (size_t)c->n_layers * (size_t)max_T * (size_t)KV;
    d->key_cache = nb_calloc(cache, sizeof(float));
    d->value_cache = nb_calloc(cache, sizeof(float));
    /* one scratch block: x, xb, xb2, q (C each), hb, hb2, hs (F each), att, prob (nh * max_T each),
       logits (V) */
    size_t scratch = 4 * (size_t)C + 3 * (size_t)F + 2 * (size_t)c->n_heads * max_T + (size_t)V;
    d->x = nb_calloc(scratch, sizeof(float));
    d->w = nb_calloc((size_t)m->params.n, sizeof *d->w);
    if (!d->key_cache || !d->value_cache || !d->x || !d->w) {
        nb_decoder_free(d);
        return nb_fail(NB_ENOMEM, "decoder: KV cache of %zu floats for %d positions", 2 * cache, max_T);
    }
    d->xb = d->x + C;
    d->xb2 = d->xb + C;
    d->q = d->xb2 + C;
    d->hb = d->q + C;
    d->hb2 = d->hb + F;
    d->hs = d->hb2 + F;
    d->att = d->hs + F;
    d->prob = d->att + (size_t)c->n_heads * max_T;
    d->logits = d->prob + (size_t)c->n_heads * max_T;
    for (int i = 0; i < m->params.n; i++) d->w[i] = nb_f32(&m->params.p[i].t);
    if (!m->qat) return NB_OK;
    /* fake-quantize each linear weight and the embedding table once (the tied classifier's is
       tok_emb's slot; the lookup reads it too) */
    d->wq_block = nb_malloc((size_t)m->params.numel * sizeof(float));
    if (!d->wq_block) {
        nb_decoder_free(d);
        return nb_fail(NB_ENOMEM, "decoder: fake-quantized weight copy of %lld floats", (long long)m->params.numel);
    }
    for (int i = 0; i < m->params.n; i++) {
        nb_param *p = &m->params.p[i];
        if (!is_linear(p) && i != m->classifier && i != m->tok_emb) continue;
        nb_arena_reset(&d->arena);
        nb_tensor *wq = nb_qat_weight(&d->tape, m->qat, i, &p->t);
        nb_status s = nb_tape_status(&d->tape);
        if (s == NB_OK && (!wq || !nb_same_shape(wq, &p->t) || !nb_is_contiguous(wq)))
            s = nb_fail(NB_EINVAL, "decoder: quantization hook returned a bad tensor for %s", p->name);
        if (s != NB_OK) {
            nb_decoder_free(d);
            return s;
        }
        if (wq != &p->t) {
            float *dst = d->wq_block + p->offset;
            memcpy(dst, wq->data, (size_t)nb_numel(&p->t) * sizeof(float));
            d->w[i] = dst;
        }
    }
    nb_arena_reset(&d->arena);
    return NB_OK;
}

/* y (R) = W (R, K) x (K): one dot product per row with the active SIMD level's kernel */
static void matvec(float *y, const float *W, const float *x, int64_t R, int64_t K) {
    const nb_vec_kernels *vk = nb_vec();
#pragma omp parallel for if (R * K > (1 << 18))
    for (int64_t r = 0; r < R; r++) y[r] = vk->dot(W + r * K, x, K);
}

/* y = W_idx x, with the activation hook applied to x when the model has a policy. */
static nb_status dec_linear(nb_decoder *d, int idx, float *y, const float *x, int64_t R, int64_t K) {
    const float *in = x;
    if (d->m->qat) {
        nb_arena_reset(&d->arena);
        nb_tape_reset(&d->tape);
        nb_tensor xt = nb_tensor_wrap((void *)x, NB_F32, 2, (int64_t[]){1, K});
        nb_tensor *xq = nb_qat_act(&d->tape, d->m->qat, idx, &xt);
        NB_TRY(nb_tape_status(&d->tape));
        if (!xq || nb_numel(xq) != K) return nb_fail(NB_EINVAL, "decoder: activation hook returned a bad tensor");
        in = xq->data;
    }
    matvec(y, d->w[idx], in, R, K);
    return NB_OK;
}

/* o = x / sqrt(mean(x^2) + eps) * w, as run.c (the op's row kernel; o may be x) */
static void rmsnorm(float *o, const float *x, const float *w, int64_t n, float eps) {
    if (o != x) {
        nb_vec()->rmsnorm_fwd(o, x, w, eps, n);
        return;
    }
    float ss = 0.0f;
    for (int64_t j = 0; j < n; j++) ss += x[j] * x[j];
    ss = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t j = 0; j < n; j++) o[j] = w[j] * (ss * x[j]);
}

/* rotate pairs (2i, 2i+1) of each head of v (n floats, heads of H) by pos * theta^(-2i/H) */
static void rope(float *v, int64_t n, int64_t H, int pos, float theta) {
    for (int64_t i = 0; i < n; i += 2) {
        int64_t hd = i % H;
        float freq = 1.0f / powf(theta, (float)hd / (float)H);
        float val = (float)pos * freq;
        float fcr = cosf(val), fci = sinf(val);
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * fcr - v1 * fci;
        v[i + 1] = v0 * fci + v1 * fcr;
    }
}

nb_status nb_model_decode(nb_decoder *d, int token, int pos, const float **logits) {
    nb_model *m = d->m;
    const nb_model_config *c = &m->cfg;
    if (token < 0 || token >= c->vocab_size)
        return nb_fail(NB_ERANGE, "decode: token %d outside the vocabulary 0..%d", token, c->vocab_size - 1);
    if (pos < 0 || pos >= d->max_T)
        return nb_fail(NB_ERANGE, "decode: position %d outside 0..%d", pos, d->max_T - 1);
    int64_t C = c->dim, F = c->hidden_dim, V = c->vocab_size;
    int64_t H = C / c->n_heads, KV = H * c->n_kv_heads;
    int kv_mul = c->n_heads / c->n_kv_heads;
    float *x = d->x;
    memcpy(x, d->w[m->tok_emb] + (int64_t)token * C, (size_t)C * sizeof(float));

    for (int l = 0; l < c->n_layers; l++) {
        const nb_layer_params *lp = &m->layers[l];
        rmsnorm(d->xb, x, nb_f32(nb_model_param(m, lp->attn_norm)), C, c->norm_eps);
        size_t off = ((size_t)l * d->max_T + pos) * KV;
        float *k = d->key_cache + off, *v = d->value_cache + off;
        NB_TRY(dec_linear(d, lp->wq, d->q, d->xb, C, C));
        NB_TRY(dec_linear(d, lp->wk, k, d->xb, KV, C));
        NB_TRY(dec_linear(d, lp->wv, v, d->xb, KV, C));
        rope(d->q, C, H, pos, c->rope_theta);
        rope(k, KV, H, pos, c->rope_theta);
        /* causal attention over positions 0..pos, query head h reads kv head h / kv_mul */
        float scale = 1.0f / sqrtf((float)H);
        const nb_vec_kernels *vk = nb_vec();
#pragma omp parallel for if (c->n_heads * (pos + 1) * H > (1 << 16))
        for (int h = 0; h < c->n_heads; h++) {
            const float *qh = d->q + h * H;
            float *att = d->att + (size_t)h * d->max_T, *prob = d->prob + (size_t)h * d->max_T;
            const float *kc = d->key_cache + (size_t)l * d->max_T * KV + (h / kv_mul) * H;
            const float *vc = d->value_cache + (size_t)l * d->max_T * KV + (h / kv_mul) * H;
            for (int s = 0; s <= pos; s++) att[s] = vk->dot(qh, kc + (size_t)s * KV, H) * scale;
            /* softmax over positions 0..pos, then o = sum_s att[s] v[s] */
            float mx = vk->max(att, pos + 1);
            float inv = 1.0f / vk->expsum(prob, att, mx, pos + 1);
            float *o = d->xb + h * H;
            for (int64_t i = 0; i < H; i++) o[i] = 0.0f;
            for (int s = 0; s <= pos; s++) vk->axpy(o, prob[s] * inv, vc + (size_t)s * KV, H);
        }
        NB_TRY(dec_linear(d, lp->wo, d->xb2, d->xb, C, C));
        for (int64_t i = 0; i < C; i++) x[i] += d->xb2[i];
        /* FFN: x += w2(silu(w1 h) * w3 h) */
        rmsnorm(d->xb, x, nb_f32(nb_model_param(m, lp->ffn_norm)), C, c->norm_eps);
        NB_TRY(dec_linear(d, lp->w1, d->hb, d->xb, F, C));
        NB_TRY(dec_linear(d, lp->w3, d->hb2, d->xb, F, C));
        nb_vec()->swiglu_fwd(d->hs, d->hb, d->hb2, F); /* silu(w1 h) * w3 h */
        NB_TRY(dec_linear(d, lp->w2, d->xb, d->hs, C, F));
        for (int64_t i = 0; i < C; i++) x[i] += d->xb[i];
    }
    rmsnorm(x, x, nb_f32(nb_model_param(m, m->norm)), C, c->norm_eps);
    NB_TRY(dec_linear(d, m->classifier, d->logits, x, V, C));
    *logits = d->logits;
    return NB_OK;
}

/* ---- sampling ---- */

int nb_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

nb_status nb_sampler_init(nb_sampler *s, int vocab, float temperature, float top_p, uint64_t seed) {
    memset(s, 0, sizeof *s);
    if (vocab < 1) return nb_fail(NB_EINVAL, "sampler: vocabulary of %d", vocab);
    if (!(temperature >= 0.0f && temperature < 1e6f))
        return nb_fail(NB_EINVAL, "sampler: temperature %g, expected >= 0", (double)temperature);
    if (!(top_p == top_p)) return nb_fail(NB_EINVAL, "sampler: top_p is NaN");
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_p = top_p;
    s->rng = nb_rng_make(seed, NB_RNG_STREAM_SAMPLE);
    s->probs = nb_malloc((size_t)vocab * sizeof(float));
    s->order = nb_malloc((size_t)vocab * sizeof(int));
    if (!s->probs || !s->order) {
        nb_sampler_free(s);
        return nb_fail(NB_ENOMEM, "sampler: vocabulary of %d", vocab);
    }
    return NB_OK;
}

void nb_sampler_free(nb_sampler *s) {
    if (!s) return;
    nb_free(s->probs);
    nb_free(s->order);
    s->probs = NULL;
    s->order = NULL;
}

/* most likely first; ties by lower id, so the order (and the draw) is deterministic */
static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (p[i] > p[j]) return -1;
    if (p[i] < p[j]) return 1;
    return i - j;
}

int nb_sampler_sample(nb_sampler *s, const float *logits) {
    int V = s->vocab;
    if (s->temperature == 0.0f) return nb_argmax(logits, V);
    /* probs = softmax(logits / temperature) */
    float mx = logits[nb_argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        s->probs[i] = expf((logits[i] - mx) / s->temperature);
        sum += s->probs[i];
    }
    for (int i = 0; i < V; i++) s->probs[i] = (float)(s->probs[i] / sum);
    float coin = nb_rng_uniform(&s->rng);
    if (s->top_p <= 0.0f || s->top_p >= 1.0f) {
        float cdf = 0.0f;
        for (int i = 0; i < V; i++) {
            cdf += s->probs[i];
            if (coin < cdf) return i;
        }
        return V - 1; /* rounding */
    }
    /* nucleus: tokens below (1 - p) / (V - 1) can never be in the set (llama2.c's cut) */
    float cutoff = V > 1 ? (1.0f - s->top_p) / (float)(V - 1) : 0.0f;
    int n = 0;
    for (int i = 0; i < V; i++)
        if (s->probs[i] >= cutoff) s->order[n++] = i;
    qsort_r(s->order, (size_t)n, sizeof(int), by_prob_desc, s->probs);
    float cum = 0.0f;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += s->probs[s->order[i]];
        if (cum > s->top_p) {
            last = i;
            break;
        }
    }
    float r = coin * cum, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += s->probs[s->order[i]];
        if (r < cdf) return s->order[i];
    }
    return s->order[last];
}
