/* rt_util.h: helpers for the runtime and format tests: stories260K paths, reference.json arrays,
   random small models. */
#ifndef NB_RT_UTIL_H
#define NB_RT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/runtime.h"
#include "../train/runtime_io.h"
#include "nbtest.h"

#define RT_MODEL NB_TEST_DATA("stories260K/model.bin")
#define RT_TOK NB_TEST_DATA("stories260K/tok512.bin")
#define RT_REF NB_TEST_DATA("stories260K/reference.json")

static inline char *rt_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

/* All numbers of the JSON value after "key": (nested arrays flattened) into a malloc'ed array. */
static inline double *rt_json_numbers(const char *json, const char *key, int *n) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    *n = 0;
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\n') p++;
    int depth = 0, cap = 1024;
    double *v = malloc(sizeof(double) * (size_t)cap);
    do {
        if (*p == '[') depth++, p++;
        else if (*p == ']') depth--, p++;
        else if (*p == ',' || *p == ' ' || *p == '\n') p++;
        else {
            char *e;
            double x = strtod(p, &e);
            if (e == p) break;
            if (*n == cap) v = realloc(v, sizeof(double) * (size_t)(cap *= 2));
            v[(*n)++] = x;
            p = e;
        }
    } while (depth > 0 && *p);
    return v;
}

static inline int32_t *rt_json_ints(const char *json, const char *key, int *n) {
    double *d = rt_json_numbers(json, key, n);
    int32_t *r = malloc(sizeof(int32_t) * (size_t)(*n + 1));
    for (int i = 0; i < *n; i++) r[i] = (int32_t)d[i];
    free(d);
    return r;
}

/* A random F32 model (weights ~ N(0, 0.5/sqrt(cols)), norms ~ 1) with a fake vocabulary. */
static inline nb_qmodel *rt_random_model(int dim, int hidden, int layers, int heads, int kv_heads, int vocab, int seq_len,
                                  int tied, unsigned long long seed) {
    nb_qconfig c = {dim, hidden, layers, heads, kv_heads, vocab, seq_len, tied, 1e-5f, 10000.0f};
    nb_qmodel *m;
    if (nb_qmodel_new(&c, &m)) return NULL;
    nb_rng r = nb_rng_make(seed, 3);
    nb_qtensor *all[4096];
    int n = 0;
    all[n++] = &m->tok_emb;
    all[n++] = &m->norm;
    if (!tied) all[n++] = &m->classifier;
    for (int l = 0; l < layers; l++) {
        nb_qlayer *L = &m->layers[l];
        nb_qtensor *ts[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 9; i++) all[n++] = ts[i];
    }
    for (int i = 0; i < n; i++) {
        nb_qtensor *t = all[i];
        int64_t k = t->rows * t->cols;
        float *d = nb_qmodel_alloc(m, (size_t)k * 4);
        float sd = t->rows == 1 ? 0.1f : (t == &m->tok_emb ? 1.0f : 0.5f / sqrtf((float)t->cols));
        for (int64_t j = 0; j < k; j++) d[j] = (t->rows == 1 ? 1.0f : 0.0f) + sd * nb_rng_normal(&r);
        t->data = d;
    }
    if (tied) m->classifier = m->tok_emb;
    nb_rt_vocab_init(m, vocab);
    for (int i = 0; i < vocab; i++) {
        char p[16];
        if (i >= 3 && i < 3 + 256) snprintf(p, sizeof p, "<0x%02X>", i - 3);
        else snprintf(p, sizeof p, i < 3 ? "" : " t%d", i);
        nb_rt_vocab_set(m, i, p, strlen(p), -(float)i, nb_rt_piece_type(i, p));
    }
    return m;
}

/* Logits (T, V) of a token sequence. */
static inline float *rt_logits(const nb_qmodel *m, const int32_t *tok, int T, int batch) {
    nb_qstate s;
    if (nb_qstate_init(&s, m, batch)) return NULL;
    float *lg = malloc(sizeof(float) * (size_t)T * m->cfg.vocab);
    nb_status st = nb_qmodel_forward(m, &s, tok, T, 0, lg, 1);
    nb_qstate_free(&s);
    if (st) {
        free(lg);
        return NULL;
    }
    return lg;
}

static inline int rt_argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

#endif
