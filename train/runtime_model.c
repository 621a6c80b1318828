/* runtime_model.c: training model (nb_model) -> runtime model (nb_qmodel), fp32. */
#include <string.h>

#include "../data/tokenizer.h"
#include "model.h"
#include "runtime.h"
#include "runtime_io.h"

static nb_status copy_param(nb_qmodel *q, const nb_model *m, int idx, nb_qtensor *t, const char *what) {
    const nb_param *p = &m->params.p[idx];
    int64_t n = nb_numel(&p->t);
    if (n != t->rows * t->cols)
        return nb_fail(NB_ESHAPE, "%s: parameter %s has %lld elements, the runtime expects (%lld, %lld)", what, p->name,
                       (long long)n, (long long)t->rows, (long long)t->cols);
    float *d = nb_qmodel_alloc(q, (size_t)n * sizeof(float));
    if (!d) return NB_ENOMEM;
    memcpy(d, p->t.data, (size_t)n * sizeof(float));
    t->type = NB_QT_F32;
    t->group = 0;
    t->data = d;
    return NB_OK;
}

nb_status nb_qmodel_from_model(const nb_model *m, const nb_tokenizer *tok, nb_qmodel **out) {
    *out = NULL;
    const nb_model_config *c = &m->cfg;
    nb_qconfig qc = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size, c->seq_len, c->tied,
                     c->norm_eps, c->rope_theta};
    nb_qmodel *q;
    NB_TRY(nb_qmodel_new(&qc, &q));
    const char *w = "model";
    nb_status st = copy_param(q, m, m->tok_emb, &q->tok_emb, w);
    if (!st) st = copy_param(q, m, m->norm, &q->norm, w);
    for (int l = 0; !st && l < c->n_layers; l++) {
        const nb_layer_params *P = &m->layers[l];
        nb_qlayer *L = &q->layers[l];
        int idx[9] = {P->attn_norm, P->wq, P->wk, P->wv, P->wo, P->ffn_norm, P->w1, P->w2, P->w3};
        nb_qtensor *ts[9] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        for (int i = 0; !st && i < 9; i++) st = copy_param(q, m, idx[i], ts[i], w);
    }
    if (!st) {
        if (c->tied) q->classifier = q->tok_emb;
        else st = copy_param(q, m, m->classifier, &q->classifier, w);
    }
    if (!st && tok) {
        /* copy through the model's own tokenizer storage: a llama2.c image when it is one */
        nb_tokenizer *cp = NULL;
        int n = nb_tokenizer_vocab(tok);
        if (nb_tokenizer_kind(tok) == NB_TOK_LLAMA2C) {
            size_t size = 4;
            for (int i = 0; i < n; i++) {
                size_t len;
                float sc;
                nb_tokenizer_token(tok, i, &len, &sc);
                size += 8 + len;
            }
            uint8_t *b = nb_malloc(size);
            if (!b) st = NB_ENOMEM;
            else {
                int32_t ml = nb_tokenizer_max_token_len(tok);
                memcpy(b, &ml, 4);
                size_t off = 4;
                for (int i = 0; i < n; i++) {
                    size_t len;
                    float sc;
                    const char *p = nb_tokenizer_token(tok, i, &len, &sc);
                    int32_t l32 = (int32_t)len;
                    memcpy(b + off, &sc, 4);
                    memcpy(b + off + 4, &l32, 4);
                    memcpy(b + off + 8, p, len);
                    off += 8 + len;
                }
                st = nb_tokenizer_llama2c_load_mem(b, size, "tokenizer", n, &cp);
                nb_free(b);
            }
        } else if (nb_tokenizer_kind(tok) == NB_TOK_BYTE) {
            st = nb_tokenizer_byte(&cp);
        } else {
            /* char tokenizer: rebuild from its pieces (sorted distinct characters) */
            size_t total = 0;
            for (int i = 0; i < n; i++) {
                size_t len;
                float sc;
                nb_tokenizer_token(tok, i, &len, &sc);
                total += len;
            }
            char *text = nb_malloc(total + 1);
            if (!text) st = NB_ENOMEM;
            else {
                size_t off = 0;
                for (int i = 0; i < n; i++) {
                    size_t len;
                    float sc;
                    const char *p = nb_tokenizer_token(tok, i, &len, &sc);
                    memcpy(text + off, p, len);
                    off += len;
                }
                st = nb_tokenizer_char_build(text, total, &cp);
                nb_free(text);
            }
        }
        if (!st && !nb_tokenizer_equal(cp, tok)) {
            nb_tokenizer_free(cp);
            st = nb_fail(NB_EINVAL, "could not copy the %s tokenizer", nb_tokenizer_kind_name(nb_tokenizer_kind(tok)));
        } else if (!st) {
            st = nb_qmodel_set_tokenizer(q, cp);
        }
    }
    if (st) {
        nb_qmodel_free(q);
        return st;
    }
    *out = q;
    return NB_OK;
}
