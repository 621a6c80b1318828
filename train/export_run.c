/* export_run.c: exported files in `nibble eval`, `generate`, `info` and `verify` (integer runtime). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../data/dataset.h"
#include "../data/tokenizer.h"
#include "export.h"
#include "linear_exact.h"
#include "model.h"
#include "qat_ckpt.h"
#include "runtime.h"
#include "runtime_io.h"

int nb_export_is_file(const char *path) {
    /* a sealed nibble checkpoint is never handed to HDF5 before its seal is checked */
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, fp);
    fclose(fp);
    if (got == sizeof magic && !memcmp(magic, "NBCKPT\x01\n", 8)) return 0;
    nb_model_format f = nb_runtime_detect(path);
    nb_clear_error();
    return f == NB_FMT_GGUF || f == NB_FMT_LLAMA2C_Q80 || f == NB_FMT_NIBBLE_EXPORT;
}

/* "byte", "llama2c:PATH" or a bare PATH (a llama2.c tokenizer.bin), as evaluate.c reads --tokenizer */
static nb_status tokenizer_open(const char *arg, int vocab, nb_tokenizer **tok) {
    if (!strcmp(arg, "byte") || !strncmp(arg, "llama2c:", 8)) return nb_tokenizer_from_spec(arg, NULL, 0, tok);
    return nb_tokenizer_llama2c_load(arg, vocab, tok);
}

/* The export and its tokenizer (owned by the model). */
static nb_status open_export(const char *path, const char *tok_path, nb_qmodel **out, nb_tokenizer **tok) {
    *out = NULL;
    *tok = NULL;
    nb_qmodel *m;
    NB_TRY(nb_qmodel_open(path, NULL, &m));
    nb_status s = NB_OK;
    if (tok_path) {
        nb_tokenizer *t = NULL;
        s = tokenizer_open(tok_path, m->cfg.vocab, &t);
        if (!s) s = nb_qmodel_set_tokenizer(m, t);
        else nb_tokenizer_free(t);
    }
    if (!s) {
        s = nb_qmodel_tokenizer(m, tok);
        if (s && !tok_path)
            s = nb_fail(NB_EINVAL, "%s carries no vocabulary (llama2.c files keep it apart): give --tokenizer tokenizer.bin",
                        path);
    }
    if (s) {
        nb_fail_prefix(s, "%s", path);
        nb_qmodel_free(m);
        return s;
    }
    *out = m;
    return NB_OK;
}

/* ---- windows (nb_eval_tokens's) ---- */

typedef struct windows {
    int64_t nw, count, tail;
    int all, T;
} windows;

static nb_status windows_init(windows *w, int64_t n, int T, int64_t max_windows, int seq_len, int V, const int32_t *tok) {
    if (n < 2) return nb_fail(NB_EINVAL, "eval: %lld tokens, need at least 2", (long long)n);
    if (T < 1 || T > seq_len) return nb_fail(NB_EINVAL, "eval: window %d (seq_len %d)", T, seq_len);
    for (int64_t i = 0; i < n; i++)
        if (tok[i] < 0 || tok[i] >= V)
            return nb_fail(NB_EINVAL, "eval: token %lld is %d, outside the model's vocabulary 0..%d", (long long)i, tok[i],
                           V - 1);
    w->T = T;
    w->nw = (n - 1) / T;
    w->tail = (n - 1) % T;
    w->all = max_windows <= 0 || max_windows >= w->nw;
    w->count = w->all ? w->nw : max_windows;
    return NB_OK;
}

/* window i (0 .. count, the last being the tail when all): start and length (targets) */
static int window_at(const windows *w, int64_t i, int64_t *start, int *len) {
    if (i < w->count) {
        *start = (w->all ? i : i * w->nw / w->count) * w->T;
        *len = w->T;
        return 1;
    }
    if (i == w->count && w->all && w->tail > 0) {
        *start = w->nw * w->T;
        *len = (int)w->tail;
        return 1;
    }
    return 0;
}

/* cross-entropy of logits (V) against target, and argmax */
static double xent(const float *z, int V, int target, int *amax) {
    float mx = z[0];
    int a = 0;
    for (int j = 1; j < V; j++)
        if (z[j] > mx) mx = z[j], a = j;
    double s = 0.0;
    for (int j = 0; j < V; j++) s += exp((double)z[j] - mx);
    *amax = a;
    return log(s) + mx - z[target];
}

nb_status nb_export_eval(const char *path, const char *data, const char *split, const char *tok_path, int T,
                         int64_t max_windows, double *loss, int64_t *tokens) {
    *loss = NAN;
    *tokens = 0;
    nb_qmodel *m;
    nb_tokenizer *tok;
    NB_TRY(open_export(path, tok_path, &m, &tok));
    nb_tokens toks;
    memset(&toks, 0, sizeof toks);
    nb_qstate s;
    memset(&s, 0, sizeof s);
    float *logits = NULL;
    const int V = m->cfg.vocab;
    if (T <= 0 || T > m->cfg.seq_len) T = m->cfg.seq_len;
    windows w;
    nb_status st = nb_tokens_load(data, tok, split, &toks);
    if (!st) st = windows_init(&w, toks.n, T, max_windows, m->cfg.seq_len, V, toks.ids);
    if (!st) st = nb_qstate_init(&s, m, 64);
    if (!st && !(logits = nb_malloc((size_t)T * (size_t)V * sizeof(float)))) st = nb_fail(NB_ENOMEM, "eval: logits");
    double sum = 0.0;
    int64_t n = 0, start;
    int len;
    for (int64_t i = 0; !st && window_at(&w, i, &start, &len); i++) {
        st = nb_qmodel_forward(m, &s, toks.ids + start, len, 0, logits, 1);
        for (int t = 0; !st && t < len; t++) {
            int a;
            sum += xent(logits + (size_t)t * V, V, toks.ids[start + t + 1], &a);
        }
        n += len;
    }
    if (!st && !isfinite(sum)) st = nb_fail(NB_ENAN, "eval: loss is not finite");
    if (!st) {
        *loss = sum / (double)n;
        *tokens = n;
    }
    nb_free(logits);
    nb_qstate_free(&s);
    nb_tokens_free(&toks);
    nb_qmodel_free(m);
    return st;
}

/* ---- generation ---- */


nb_status nb_export_generate(const char *path, const char *tok_path, const char *prompt, const nb_export_gen *g,
                             int32_t **out, int *n_out, char **text) {
    if (out) *out = NULL;
    if (n_out) *n_out = 0;
    if (text) *text = NULL;
    if (g->n_tokens < 0) return nb_fail(NB_EINVAL, "generate: %d tokens", g->n_tokens);
    nb_qmodel *m;
    nb_tokenizer *tok;
    NB_TRY(open_export(path, tok_path, &m, &tok));
    int32_t *pids = NULL, *seq = NULL;
    int64_t np = 0;
    char *buf = NULL;
    size_t blen = 0, bcap = 0;
    nb_qstate s;
    nb_sampler smp;
    memset(&s, 0, sizeof s);
    memset(&smp, 0, sizeof smp);
    float *logits = nb_malloc((size_t)m->cfg.vocab * sizeof(float));
    nb_status st = logits ? NB_OK : nb_fail(NB_ENOMEM, "generate: logits");
    const char *pr = prompt ? prompt : "";
    if (!pr[0] && nb_tokenizer_bos(tok) < 0) pr = "\n";
    if (!st) st = nb_tokenizer_encode(tok, pr, strlen(pr), 1, 0, &pids, &np);
    if (!st && np == 0) {
        nb_free(pids);
        pids = nb_malloc(sizeof(int32_t));
        if (!pids) st = nb_fail(NB_ENOMEM, "generate: prompt");
        else pids[0] = 0, np = 1;
    }
    const int T = m->cfg.seq_len;
    int64_t total = np + g->n_tokens;
    if (!st && !(seq = nb_malloc((size_t)total * sizeof *seq))) st = nb_fail(NB_ENOMEM, "generate: %lld tokens", (long long)total);
    if (!st) {
        memcpy(seq, pids, (size_t)np * sizeof *seq);
        for (int64_t i = 0; i < np; i++)
            if (seq[i] < 0 || seq[i] >= m->cfg.vocab) st = nb_fail(NB_EINVAL, "generate: prompt token %d outside the vocabulary", seq[i]);
    }
    if (!st) st = nb_qstate_init(&s, m, 64);
    if (!st) st = nb_sampler_init(&smp, m->cfg.vocab, g->temperature, g->top_p, g->seed);
    int64_t len = np, ctx0 = 0, fed = 0;
    const int bos = nb_tokenizer_bos(tok), eos = nb_tokenizer_eos(tok);
    while (!st && len < total) {
        if (len - ctx0 > T) { /* context full: keep the last T/2 tokens and prefill them again */
            ctx0 = len - (T / 2 > 0 ? T / 2 : 1);
            fed = 0;
        }
        int k = (int)(len - (ctx0 + fed));
        if ((st = nb_qmodel_forward(m, &s, seq + ctx0 + fed, k, (int)fed, logits, 0))) break;
        fed += k;
        int next = nb_sampler_sample(&smp, logits);
        if (g->stop_at_eos && (next == bos || next == eos) && next >= 0) break;
        seq[len] = next;
        if ((st = nb_tokenizer_append_piece(tok, seq[len - 1], next, &buf, &blen, &bcap))) break;
        len++;
    }
    if (!st && out) {
        *out = nb_malloc((size_t)(len - np > 0 ? len - np : 1) * sizeof **out);
        if (!*out) st = nb_fail(NB_ENOMEM, "generate: output");
        else memcpy(*out, seq + np, (size_t)(len - np) * sizeof **out);
    }
    if (!st && n_out) *n_out = (int)(len - np);
    if (!st && text) {
        if (!buf) buf = nb_strdup("");
        *text = buf;
        buf = NULL;
    }
    nb_free(buf);
    nb_free(seq);
    nb_free(pids);
    nb_free(logits);
    nb_sampler_free(&smp);
    nb_qstate_free(&s);
    nb_qmodel_free(m);
    return st;
}

/* ---- info ---- */

nb_status nb_export_info(FILE *f, const char *path, int json) {
    nb_qmodel *m;
    NB_TRY(nb_qmodel_open(path, NULL, &m));
    char *text = NULL;
    nb_status st = nb_runtime_info(m, json, &text);
    if (!st) {
        fputs(text, f);
        size_t n = strlen(text);
        if (n && text[n - 1] != '\n') fputc('\n', f);
        if (!json && m->policy && m->policy[0]) fprintf(f, "policy:\n%s", m->policy);
    }
    nb_free(text);
    nb_qmodel_free(m);
    return st;
}

/* ---- verify ---- */

typedef struct wcmp {
    nb_model *m;
    nb_decoder *d;
    double max_abs;
    float *row;
} wcmp;

static nb_status cmp_weights(void *ctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    wcmp *c = ctx;
    int idx = nb_paramset_find(&c->m->params, name);
    if (idx < 0) return nb_fail(NB_EINVAL, "verify: the checkpoint has no tensor %s", name);
    const float *w = c->d->w[idx];
    if (nb_numel(&c->m->params.p[idx].t) != t->rows * t->cols)
        return nb_fail(NB_ESHAPE, "verify: %s is (%lld, %lld) in the export but has %lld elements in the checkpoint", name,
                       (long long)t->rows, (long long)t->cols, (long long)nb_numel(&c->m->params.p[idx].t));
    for (int64_t r = 0; r < t->rows; r++) {
        nb_qtensor_dequant_row(t, r, c->row);
        for (int64_t k = 0; k < t->cols; k++) {
            double d = fabs((double)c->row[k] - (double)w[r * t->cols + k]);
            if (!(d <= c->max_abs)) c->max_abs = d;
        }
    }
    return NB_OK;
}

nb_status nb_export_verify(const char *ckpt, const char *exported, const char *data, const char *tok_path, int T,
                           int64_t max_windows, int flags, nb_verify_result *r) {
    memset(r, 0, sizeof *r);
    nb_model m;
    nb_tokenizer *tok = NULL;
    nb_qat *q = NULL;
    nb_qmodel *x = NULL;
    nb_tokens toks;
    memset(&toks, 0, sizeof toks);
    nb_qstate s;
    memset(&s, 0, sizeof s);
    nb_decoder d;
    memset(&d, 0, sizeof d);
    nb_exact *ex = NULL;
    float *lx = NULL, *row = NULL;
    nb_arena a;
    nb_tape tape;
    nb_arena_init(&a, (size_t)1 << 20);
    nb_tape_init(&tape, &a);
    nb_tape_grad(&tape, 0);
    tape.training = 0;
    nb_status st = nb_export_open_model(ckpt, tok_path, &m, &tok);
    if (st) goto out_tape;
    st = nb_qat_load_file(ckpt, &m, &q); /* sets m.qat: the model as trained */
    r->quantized = q != NULL;
    if (!st) {
        st = nb_qmodel_open(exported, NULL, &x);
        if (st) nb_fail_prefix(st, "%s", exported);
    }
    const nb_model_config *c = &m.cfg;
    if (!st && (x->cfg.dim != c->dim || x->cfg.hidden_dim != c->hidden_dim || x->cfg.n_layers != c->n_layers ||
                x->cfg.n_heads != c->n_heads || x->cfg.n_kv_heads != c->n_kv_heads || x->cfg.vocab != c->vocab_size ||
                x->cfg.tied != c->tied))
        st = nb_fail(NB_EINVAL,
                     "verify: %s (dim %d, hidden %d, layers %d, heads %d/%d, vocab %d) is not an export of %s (dim %d, "
                     "hidden %d, layers %d, heads %d/%d, vocab %d)",
                     exported, x->cfg.dim, x->cfg.hidden_dim, x->cfg.n_layers, x->cfg.n_heads, x->cfg.n_kv_heads,
                     x->cfg.vocab, ckpt, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size);
    /* weights: dequantized export vs the fake-quant weights the model reads */
    if (!st) st = nb_decoder_init(&d, &m, 1);
    if (!st && !(row = nb_malloc((size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim) * sizeof(float))))
        st = nb_fail(NB_ENOMEM, "verify: row");
    if (!st) {
        wcmp wc = {&m, &d, 0.0, row};
        st = nb_rt_visit(x, cmp_weights, &wc);
        r->max_abs_weight_diff = wc.max_abs;
    }
    nb_decoder_free(&d);
    /* the checkpoint's linears summed as the integer kernels sum them (unless --gemm) */
    if (!st && !(flags & NB_VERIFY_GEMM)) st = nb_exact_new(&m, q, &ex);
    m.exact = ex;
    if (T <= 0 || T > c->seq_len) T = c->seq_len;
    if (T > x->cfg.seq_len) T = x->cfg.seq_len;
    windows w;
    const int V = c->vocab_size;
    if (!st) st = nb_tokens_load(data, tok, NULL, &toks);
    if (!st) st = windows_init(&w, toks.n, T, max_windows, T, V, toks.ids);
    if (!st) st = nb_qstate_init(&s, x, 64);
    if (!st && !(lx = nb_malloc((size_t)T * (size_t)V * sizeof(float)))) st = nb_fail(NB_ENOMEM, "verify: logits");
    double sum_m = 0.0, sum_x = 0.0;
    int64_t agree = 0, n = 0, start;
    int len;
    for (int64_t i = 0; !st && window_at(&w, i, &start, &len); i++) {
        nb_arena_reset(&a);
        nb_tape_reset(&tape);
        nb_tensor *ids = nb_tensor_new(&a, NB_I32, 2, (int64_t[]){1, len});
        if (!ids) {
            st = nb_fail(NB_ENOMEM, "verify: window");
            break;
        }
        memcpy(ids->data, toks.ids + start, (size_t)len * sizeof(int32_t));
        nb_tensor *lm = NULL;
        if ((st = nb_model_forward(&tape, &m, ids, NULL, &lm, NULL))) break;
        if ((st = nb_qmodel_forward(x, &s, toks.ids + start, len, 0, lx, 1))) break;
        const float *pm = lm->data;
        for (int t = 0; t < len; t++) {
            int tgt = toks.ids[start + t + 1], am, ax;
            sum_m += xent(pm + (size_t)t * V, V, tgt, &am);
            sum_x += xent(lx + (size_t)t * V, V, tgt, &ax);
            agree += am == ax;
            for (int j = 0; j < V; j++) {
                double dd = fabs((double)pm[(size_t)t * V + j] - (double)lx[(size_t)t * V + j]);
                if (!(dd <= r->max_abs_logit_diff)) r->max_abs_logit_diff = dd;
            }
        }
        n += len;
        r->windows++;
    }
    if (!st) {
        r->positions = n;
        r->loss_model = sum_m / (double)n;
        r->loss_export = sum_x / (double)n;
        r->top1_agreement = (double)agree / (double)n;
    }
    nb_free(lx);
    nb_free(row);
    nb_qstate_free(&s);
    nb_tokens_free(&toks);
    nb_qmodel_free(x);
    nb_tokenizer_free(tok);
    m.exact = NULL;
    nb_exact_free(ex);
    m.qat = NULL;
    nb_model_free(&m);
    nb_qat_free(q);
out_tape:
    nb_tape_free(&tape);
    nb_arena_free(&a);
    return st;
}
