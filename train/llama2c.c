/* llama2c.c: llama2.c version-2 int8 export: writer and bounds-checked reader. */
#include "llama2c.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime_io.h"

/* The eight weight families in file order; layer < 0 means the single (V, C) tensor. */
static nb_qtensor *family_tensor(nb_qmodel *m, int fam, int l) {
    nb_qlayer *L = &m->layers[l];
    switch (fam) {
    case 1: return &L->wq;
    case 2: return &L->wk;
    case 3: return &L->wv;
    case 4: return &L->wo;
    case 5: return &L->w1;
    case 6: return &L->w2;
    case 7: return &L->w3;
    }
    return NULL;
}

static int choose_gs(const nb_qconfig *c, int group) {
    int gs = group > 0 ? group : 64;
    while (gs > 1 && (c->dim % gs || c->hidden_dim % gs)) gs /= 2;
    return gs;
}

/* Quantize (or copy) one tensor's rows into codes/scales (numel, numel/gs). */
static nb_status q80_tensor(const nb_qtensor *t, int gs, int8_t *codes, float *scales) {
    int64_t K = t->cols;
    if (t->type == NB_QT_I8 && t->group == gs && !t->zeros) {
        memcpy(codes, t->data, (size_t)(t->rows * K));
        memcpy(scales, t->scales, (size_t)(t->rows * (K / gs)) * sizeof(float));
        return NB_OK;
    }
    float *row = nb_malloc((size_t)K * sizeof(float));
    if (!row) return NB_ENOMEM;
    for (int64_t r = 0; r < t->rows; r++) {
        nb_qtensor_dequant_row(t, r, row);
        for (int64_t g = 0; g < K / gs; g++) {
            const float *x = row + g * gs;
            float amax = 0.0f;
            for (int j = 0; j < gs; j++) amax = fmaxf(amax, fabsf(x[j]));
            float s = amax / 127.0f;
            scales[r * (K / gs) + g] = s;
            for (int j = 0; j < gs; j++) codes[r * K + g * gs + j] = s != 0.0f ? (int8_t)nearbyintf(x[j] / s) : 0;
        }
    }
    nb_free(row);
    return NB_OK;
}

nb_status nb_llama2c_write_v2(const nb_qmodel *m, const char *path, int group, int *gs_out) {
    const nb_qconfig *c = &m->cfg;
    int gs = choose_gs(c, group);
    if (gs_out) *gs_out = gs;
    FILE *f = fopen(path, "wb");
    if (!f) return nb_fail(NB_EIO, "create %s: %s", path, strerror(errno));
    uint8_t hdr[256] = {0};
    uint32_t magic = NB_LLAMA2C_MAGIC;
    int32_t h[9] = {2, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab, c->seq_len, 0};
    memcpy(hdr, &magic, 4);
    memcpy(hdr + 4, h, 32);
    hdr[36] = (uint8_t)(c->tied ? 1 : 0);
    memcpy(hdr + 37, &gs, 4);
    int err = fwrite(hdr, 1, 256, f) != 256;
    for (int l = 0; l < c->n_layers; l++) err |= fwrite(m->layers[l].attn_norm.data, 4, (size_t)c->dim, f) != (size_t)c->dim;
    for (int l = 0; l < c->n_layers; l++) err |= fwrite(m->layers[l].ffn_norm.data, 4, (size_t)c->dim, f) != (size_t)c->dim;
    err |= fwrite(m->norm.data, 4, (size_t)c->dim, f) != (size_t)c->dim;
    nb_status st = NB_OK;
    int nfam = c->tied ? 8 : 9;
    /* export.py quantizes each layer's matrix on its own: codes then scales, layer after layer */
    for (int fam = 0; fam < nfam && !st && !err; fam++) {
        int nl = fam == 0 || fam == 8 ? 1 : c->n_layers;
        for (int l = 0; l < nl && !st && !err; l++) {
            const nb_qtensor *t = fam == 0 ? &m->tok_emb : fam == 8 ? &m->classifier : family_tensor((nb_qmodel *)m, fam, l);
            int64_t numel = t->rows * t->cols;
            int8_t *codes = nb_malloc((size_t)numel);
            float *scales = nb_malloc((size_t)(numel / gs) * sizeof(float));
            st = codes && scales ? q80_tensor(t, gs, codes, scales) : NB_ENOMEM;
            if (!st) {
                err |= fwrite(codes, 1, (size_t)numel, f) != (size_t)numel;
                err |= fwrite(scales, 4, (size_t)(numel / gs), f) != (size_t)(numel / gs);
            }
            nb_free(codes);
            nb_free(scales);
        }
    }
    err |= fclose(f) != 0;
    if (st) return st;
    if (err) return nb_fail(NB_EIO, "write %s: %s", path, strerror(errno));
    return NB_OK;
}

nb_status nb_llama2c_read_v2(const char *path, nb_qmodel **out) {
    *out = NULL;
    nb_qmodel *m = nb_calloc(1, sizeof *m), *mm = NULL;
    if (!m) return NB_ENOMEM;
    uint8_t *buf;
    size_t len;
    nb_status st = nb_rt_read_file(m, path, &buf, &len);
    if (st) goto fail;
    if (len < 256) {
        st = nb_fail(NB_EFORMAT, "%s: %zu bytes is shorter than the 256-byte llama2.c header", path, len);
        goto fail;
    }
    uint32_t magic;
    int32_t h[8], gs;
    memcpy(&magic, buf, 4);
    memcpy(h, buf + 4, 32);
    memcpy(&gs, buf + 37, 4);
    if (magic != NB_LLAMA2C_MAGIC) {
        st = nb_fail(NB_EFORMAT, "%s: not a llama2.c export (magic %08x)", path, magic);
        goto fail;
    }
    if (h[0] != 2) {
        st = nb_fail(NB_EUNSUPPORTED, "%s: llama2.c export version %d (nibble reads version 2, the int8 export)", path, h[0]);
        goto fail;
    }
    nb_qconfig c = {h[1], h[2], h[3], h[4], h[5], h[6], h[7], buf[36] != 0, 1e-5f, 10000.0f};
    if ((st = nb_qconfig_check(&c, path))) goto fail;
    if (gs <= 0 || c.dim % gs || c.hidden_dim % gs) {
        st = nb_fail(NB_EFORMAT, "%s: group size %d does not divide dim %d and hidden_dim %d", path, gs, c.dim,
                     c.hidden_dim);
        goto fail;
    }
    int64_t C = c.dim, H = c.hidden_dim, L = c.n_layers, V = c.vocab, kv = C / c.n_heads * c.n_kv_heads;
    uint64_t need = 256 + 4 * (uint64_t)(2 * L * C + C);
    int64_t fam_numel[9] = {V * C, L * C * C, L * kv * C, L * kv * C, L * C * C, L * H * C, L * C * H, L * H * C, V * C};
    int nfam = c.tied ? 8 : 9;
    for (int i = 0; i < nfam; i++) need += (uint64_t)fam_numel[i] + 4 * (uint64_t)(fam_numel[i] / gs);
    if (need != len) {
        st = nb_fail(NB_EFORMAT, "%s: llama2.c v2 export with dim %d, hidden %d, %d layers, vocab %d, group %d should be "
                     "%llu bytes, file has %zu", path, c.dim, c.hidden_dim, c.n_layers, c.vocab, gs,
                     (unsigned long long)need, len);
        goto fail;
    }
    if ((st = nb_qmodel_new(&c, &mm))) goto fail;
    /* move the file block over */
    for (int i = 0; i < m->n_allocs; i++) {
        if (!nb_qmodel_alloc(mm, 0)) {
            st = NB_ENOMEM;
            goto fail;
        }
        nb_free(mm->allocs[mm->n_allocs - 1]);
        mm->allocs[mm->n_allocs - 1] = m->allocs[i];
        m->allocs[i] = NULL;
    }
    size_t off = 256;
    float *fp = (float *)(buf + off);
    if (!nb_rt_all_finite(fp, 2 * L * C + C)) {
        st = nb_fail(NB_EFORMAT, "%s: norms contain NaN or Inf", path);
        goto fail;
    }
    for (int l = 0; l < L; l++) mm->layers[l].attn_norm.data = fp + l * C;
    for (int l = 0; l < L; l++) mm->layers[l].ffn_norm.data = fp + (L + l) * C;
    mm->norm.data = fp + 2 * L * C;
    off += 4 * (size_t)(2 * L * C + C);
    for (int fam = 0; fam < nfam; fam++) {
        int nl = fam == 0 || fam == 8 ? 1 : (int)L;
        for (int l = 0; l < nl; l++) {
            nb_qtensor *t = fam == 0 ? &mm->tok_emb : fam == 8 ? &mm->classifier : family_tensor(mm, fam, l);
            int64_t numel = t->rows * t->cols;
            int8_t *codes = (int8_t *)(buf + off);
            off += (size_t)numel;
            /* scales are 4-byte values at an arbitrary offset: copy them to aligned memory */
            float *sc = nb_qmodel_alloc(mm, (size_t)(numel / gs) * 4);
            if (!sc) {
                st = NB_ENOMEM;
                goto fail;
            }
            memcpy(sc, buf + off, (size_t)(numel / gs) * 4);
            off += 4 * (size_t)(numel / gs);
            if (!nb_rt_all_finite(sc, numel / gs)) {
                st = nb_fail(NB_EFORMAT, "%s: scales of weight family %d (layer %d) contain NaN or Inf", path, fam, l);
                goto fail;
            }
            t->type = NB_QT_I8;
            t->group = gs;
            t->data = codes;
            t->scales = sc;
            t->zeros = NULL;
        }
    }
    if (c.tied) mm->classifier = mm->tok_emb;
    mm->source = nb_qmodel_alloc(mm, strlen(path) + 1);
    if (mm->source) strcpy(mm->source, path);
    nb_qmodel_free(m);
    *out = mm;
    return NB_OK;
fail:
    nb_qmodel_free(m);
    nb_qmodel_free(mm);
    return st;
}
