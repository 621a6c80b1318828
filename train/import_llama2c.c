/* import_llama2c.c: reader of llama2.c's legacy .bin checkpoints (header checked, exact size). */
#include "import_llama2c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bytes the file must have for config c (header, weights, skipped freq_cis, untied classifier). */
static int64_t expected_size(const nb_model_config *c) {
    int64_t H = c->dim / c->n_heads;
    int64_t freq = 2 * ((int64_t)c->seq_len * H / 2);
    return 7 * 4 + 4 * (nb_model_config_numel(c) + freq);
}

/* Header -> config, checked against the real size of the input; f positioned after the header. */
static nb_status read_header(FILE *f, int64_t size, const char *path, nb_model_config *c) {
    int32_t h[7];
    if (size < (int64_t)sizeof h || fread(h, sizeof h, 1, f) != 1)
        return nb_fail(NB_EFORMAT, "%s: %lld bytes, too short for a llama2.c header (28 bytes)", path, (long long)size);
    nb_model_config_defaults(c);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab_size = h[5];
    c->seq_len = h[6];
    if (h[5] == 0 || h[5] == INT32_MIN)
        return nb_fail(NB_EFORMAT, "%s: llama2.c header: vocab_size = %d is not valid", path, h[5]);
    c->tied = h[5] > 0;
    c->vocab_size = abs(h[5]);
    char what[1100];
    snprintf(what, sizeof what, "%s: llama2.c header", path);
    NB_TRY(nb_model_config_check(c, what));
    int64_t want = expected_size(c);
    if (size != want)
        return nb_fail(NB_EFORMAT,
                       "%s: %lld bytes, but the llama2.c header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
                       "n_kv_heads %d, vocab_size %d, seq_len %d) needs exactly %lld (%s)",
                       path, (long long)size, h[0], h[1], h[2], h[3], h[4], h[5], h[6], (long long)want,
                       size < want ? "file truncated?" : "trailing data or wrong header");
    return NB_OK;
}

static nb_status file_size(FILE *f, const char *path, int64_t *size) {
    struct stat st;
    if (fstat(fileno(f), &st) != 0) return nb_fail(NB_EIO, "%s: stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return nb_fail(NB_EIO, "%s: not a regular file", path);
    *size = (int64_t)st.st_size;
    return NB_OK;
}

nb_status nb_llama2c_read_config(const char *path, nb_model_config *c) {
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    int64_t size = 0;
    nb_status s = file_size(f, path, &size);
    if (s == NB_OK) s = read_header(f, size, path, c);
    fclose(f);
    return s;
}

/* Reads n floats of the stacked array `what` (layer l of it) into dst. */
static nb_status rd(FILE *f, const char *path, const char *what, float *dst, int64_t n) {
    if (fread(dst, sizeof(float), (size_t)n, f) != (size_t)n)
        return nb_fail(NB_EFORMAT, "%s: read of %s failed (%s)", path, what,
                       ferror(f) ? strerror(errno) : "unexpected end of file");
    return NB_OK;
}

/* Header, then every weight, from a stream of `size` bytes. */
static nb_status load_stream(FILE *f, int64_t size, const char *path, nb_model *m) {
    nb_model_config c;
    nb_status s = read_header(f, size, path, &c);
    if (s == NB_OK) s = nb_model_init(m, &c);
    if (s != NB_OK) return s;
    int L = c.n_layers;
#define P(i) nb_f32(nb_model_param(m, (i)))
#define N(i) nb_numel(nb_model_param(m, (i)))
    /* arrays are stacked over layers in the file: read each kind for all layers in turn */
#define STACKED(field, what)                                                                           \
    for (int l = 0; l < L && s == NB_OK; l++) s = rd(f, path, what, P(m->layers[l].field), N(m->layers[l].field));
    s = rd(f, path, "token_embedding", P(m->tok_emb), N(m->tok_emb));
    STACKED(attn_norm, "rms_att");
    STACKED(wq, "wq");
    STACKED(wk, "wk");
    STACKED(wv, "wv");
    STACKED(wo, "wo");
    STACKED(ffn_norm, "rms_ffn");
    STACKED(w1, "w1");
    STACKED(w2, "w2");
    STACKED(w3, "w3");
    if (s == NB_OK) s = rd(f, path, "rms_final", P(m->norm), N(m->norm));
    if (s == NB_OK && !c.tied) {
        int64_t H = c.dim / c.n_heads;
        if (fseeko(f, (off_t)(2 * ((int64_t)c.seq_len * H / 2) * 4), SEEK_CUR) != 0)
            s = nb_fail(NB_EIO, "%s: seek past freq_cis: %s", path, strerror(errno));
        if (s == NB_OK) s = rd(f, path, "classifier", P(m->classifier), N(m->classifier));
    }
#undef STACKED
#undef P
#undef N
    if (s != NB_OK) nb_model_free(m);
    return s;
}

nb_status nb_llama2c_load(const char *path, nb_model *m) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    int64_t size = 0;
    nb_status s = file_size(f, path, &size);
    if (s == NB_OK) s = load_stream(f, size, path, m);
    fclose(f);
    return s;
}

nb_status nb_llama2c_load_mem(const void *data, size_t size, const char *name, nb_model *m) {
    memset(m, 0, sizeof *m);
    if (size == 0) return nb_fail(NB_EFORMAT, "%s: 0 bytes, too short for a llama2.c header (28 bytes)", name);
    FILE *f = fmemopen((void *)data, size, "rb");
    if (!f) return nb_fail(NB_ENOMEM, "%s: fmemopen: %s", name, strerror(errno));
    nb_status s = load_stream(f, (int64_t)size, name, m);
    fclose(f);
    return s;
}
