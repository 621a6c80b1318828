/* dataset.c: text -> documents -> tokens -> HDF5 splits, and windows over a split. */
#include "dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/rng.h"
#include "h5io.h"

#define FORMAT_NAME "nibble-tokens"

void nb_tokens_free(nb_tokens *t) {
    if (!t) return;
    nb_free(t->ids);
    memset(t, 0, sizeof *t);
}

/* ---- text files and documents ---- */

/* Whole file into memory (NUL-terminated). */
static nb_status read_text(const char *path, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return nb_fail(NB_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    char *b = nb_malloc(n + 1);
    if (!b) {
        fclose(f);
        return nb_fail(NB_ENOMEM, "%s: out of memory for %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, f);
    fclose(f);
    if (got != n) {
        nb_free(b);
        return nb_fail(NB_EIO, "read %s: short read", path);
    }
    b[n] = 0;
    *out = b;
    *len = n;
    return NB_OK;
}

typedef struct span {
    size_t at, len;
} span;

typedef struct doclist {
    span *d;
    int64_t n, cap;
} doclist;

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static nb_status doc_push(doclist *l, size_t at, size_t len) {
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        span *d = nb_realloc(l->d, sizeof(span) * (size_t)cap);
        if (!d) return nb_fail(NB_ENOMEM, "out of memory for %lld documents", (long long)cap);
        l->d = d;
        l->cap = cap;
    }
    l->d[l->n].at = at;
    l->d[l->n].len = len;
    l->n++;
    return NB_OK;
}

/* Is text[a..b) the separator line (surrounding blanks and a \r tolerated)? */
static int is_separator(const char *s, size_t a, size_t b) {
    while (a < b && is_space(s[a])) a++;
    while (b > a && is_space(s[b - 1])) b--;
    return b - a == sizeof NB_DOC_SEPARATOR - 1 && !memcmp(s + a, NB_DOC_SEPARATOR, b - a);
}

/* Splits text into documents (see nb_text_tokenize). */
static nb_status split_docs(const char *s, size_t len, doclist *l) {
    l->n = 0;
    int has_sep = 0;
    size_t start = 0;
    for (size_t ls = 0; ls < len;) {
        const char *nl = memchr(s + ls, '\n', len - ls);
        size_t le = nl ? (size_t)(nl - s) : len;
        if (le - ls < 64 && is_separator(s, ls, le)) {
            has_sep = 1;
            NB_TRY(doc_push(l, start, ls - start));
            start = le < len ? le + 1 : len;
        }
        ls = le + 1;
    }
    if (!has_sep) return len ? doc_push(l, 0, len) : NB_OK;
    NB_TRY(doc_push(l, start, len - start));
    /* strip and drop empty documents */
    int64_t k = 0;
    for (int64_t i = 0; i < l->n; i++) {
        size_t a = l->d[i].at, b = a + l->d[i].len;
        while (a < b && is_space(s[a])) a++;
        while (b > a && is_space(s[b - 1])) b--;
        if (b > a) l->d[k++] = (span){a, b - a};
    }
    l->n = k;
    return NB_OK;
}

/* Growable token array with the start of each document. */
typedef struct tokbuf {
    int32_t *ids;
    int64_t n, cap;
    int64_t *starts; /* (n_docs) */
    int64_t n_docs, cap_docs;
} tokbuf;

static void tokbuf_free(tokbuf *b) {
    nb_free(b->ids);
    nb_free(b->starts);
    memset(b, 0, sizeof *b);
}

static nb_status tokbuf_add_doc(tokbuf *b, const nb_tokenizer *tok, const char *text, size_t len) {
    int32_t *ids;
    int64_t n;
    NB_TRY(nb_tokenizer_encode(tok, text, len, 1, 0, &ids, &n));
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        int32_t *p = nb_realloc(b->ids, sizeof(int32_t) * (size_t)cap);
        if (!p) {
            nb_free(ids);
            return nb_fail(NB_ENOMEM, "out of memory for %lld tokens", (long long)cap);
        }
        b->ids = p;
        b->cap = cap;
    }
    if (b->n_docs == b->cap_docs) {
        int64_t cap = b->cap_docs ? b->cap_docs * 2 : 256;
        int64_t *p = nb_realloc(b->starts, sizeof(int64_t) * (size_t)cap);
        if (!p) {
            nb_free(ids);
            return nb_fail(NB_ENOMEM, "out of memory for %lld documents", (long long)cap);
        }
        b->starts = p;
        b->cap_docs = cap;
    }
    b->starts[b->n_docs++] = b->n;
    memcpy(b->ids + b->n, ids, sizeof(int32_t) * (size_t)n);
    b->n += n;
    nb_free(ids);
    return NB_OK;
}

static nb_status tokenize_docs(const nb_tokenizer *tok, const char *s, const doclist *l, tokbuf *b) {
    for (int64_t i = 0; i < l->n; i++) {
        nb_status st = tokbuf_add_doc(b, tok, s + l->d[i].at, l->d[i].len);
        if (st) return nb_fail_prefix(st, "document %lld", (long long)i + 1);
    }
    return NB_OK;
}

nb_status nb_text_tokenize(const nb_tokenizer *tok, const char *text, size_t len, nb_tokens *out) {
    memset(out, 0, sizeof *out);
    doclist l = {0};
    tokbuf b = {0};
    nb_status st = split_docs(text, len, &l);
    if (!st) st = tokenize_docs(tok, text, &l, &b);
    if (!st && b.n == 0) st = nb_fail(NB_EINVAL, "the text is empty (no documents)");
    nb_free(l.d);
    if (st) {
        tokbuf_free(&b);
        return st;
    }
    out->ids = b.ids;
    out->n = b.n;
    out->n_docs = b.n_docs;
    nb_free(b.starts);
    return NB_OK;
}

nb_status nb_text_tokenize_file(const nb_tokenizer *tok, const char *path, nb_tokens *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    NB_TRY(read_text(path, &text, &len));
    nb_status st = nb_text_tokenize(tok, text, len, out);
    nb_free(text);
    return st ? nb_fail_prefix(st, "%s", path) : NB_OK;
}

/* ---- prepare ---- */

typedef struct source {
    const char *path;
    char *text;
    size_t len;
    doclist docs;
} source;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Writes tokens [a, b) as a split dataset with its n_tokens / n_documents attributes. */
static nb_status write_split(hid_t f, const char *name, const int32_t *ids, int64_t n, int64_t n_docs, int vocab) {
    nb_status st;
    if (vocab <= 65536) {
        uint16_t *u = nb_malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
        if (!u) return nb_fail(NB_ENOMEM, "out of memory for %lld tokens", (long long)n);
        for (int64_t i = 0; i < n; i++) u[i] = (uint16_t)ids[i];
        st = nb_h5io_write_1d(f, name, H5T_STD_U16LE, H5T_NATIVE_UINT16, u, n);
        nb_free(u);
    } else {
        st = nb_h5io_write_1d(f, name, H5T_STD_I32LE, H5T_NATIVE_INT32, ids, n);
    }
    if (st) return st;
    hid_t d;
    H5E_BEGIN_TRY { d = H5Dopen2(f, name, H5P_DEFAULT); }
    H5E_END_TRY;
    if (d < 0) return nb_fail(NB_EIO, "reopening dataset '%s' failed", name);
    st = nb_h5io_put_i64(d, "n_tokens", n);
    if (!st) st = nb_h5io_put_i64(d, "n_documents", n_docs);
    H5Dclose(d);
    return st;
}

/* What a dataset was made from: options, and size + mtime of every input file (and of a
   llama2c tokenizer file). Equal keys mean a cached dataset can be reused. */
static char *prepare_key(const nb_prepare_opts *o) {
    size_t cap = 256, n = 0;
    for (int i = 0; i <= o->n_train; i++) {
        const char *p = i < o->n_train ? o->train[i] : o->val;
        if (p) cap += strlen(p) + 64;
    }
    if (o->tokenizer) cap += 2 * strlen(o->tokenizer) + 64;
    char *k = nb_malloc(cap);
    if (!k) return NULL;
    int has_val = o->val && o->val[0];
    n += (size_t)snprintf(k + n, cap - n, "v%d tok=%s frac=%.17g", NB_DATASET_VERSION,
                          o->tok ? "(given)" : o->tokenizer ? o->tokenizer : "", has_val ? 0.0 : o->val_fraction);
    for (int i = 0; i <= o->n_train + 1; i++) {
        const char *p = i < o->n_train ? o->train[i] : i == o->n_train ? (has_val ? o->val : NULL)
                        : (!o->tok && o->tokenizer && !strncmp(o->tokenizer, "llama2c:", 8) ? o->tokenizer + 8 : NULL);
        if (!p) continue;
        struct stat sb;
        long long size = -1, mt = -1;
        if (stat(p, &sb) == 0) {
            size = (long long)sb.st_size;
            mt = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
        }
        n += (size_t)snprintf(k + n, cap - n, "\n%s %s %lld %lld", i < o->n_train ? "train" : i == o->n_train ? "val" : "tok",
                              p, size, mt);
    }
    return k;
}

/* What a token dataset file says about where its tokens came from (root attributes). */
typedef struct file_meta {
    const char *tokenizer_spec, *key, *val_source;
    const char *const *sources;
    int n_sources;
    double val_fraction;
} file_meta;

/* The one writer of a token dataset: attributes, the two splits, the tokenizer group. */
static nb_status write_file(const char *path, const file_meta *m, const nb_tokenizer *tok, const int32_t *tr,
                            int64_t n_tr, int64_t d_tr, const int32_t *va, int64_t n_va, int64_t d_va) {
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT); }
    H5E_END_TRY;
    if (f < 0) return nb_fail(NB_EIO, "cannot create %s (does the folder exist and is it writable?)", path);
    int V = nb_tokenizer_vocab(tok);
    nb_status st = nb_h5io_put_str(f, "format", FORMAT_NAME);
    if (!st) st = nb_h5io_put_i64(f, "format_version", NB_DATASET_VERSION);
    if (!st) st = nb_h5io_put_str(f, "tokenizer", nb_tokenizer_kind_name(nb_tokenizer_kind(tok)));
    if (!st) st = nb_h5io_put_str(f, "tokenizer_spec", m->tokenizer_spec);
    if (!st) st = nb_h5io_put_str(f, "prepare_key", m->key);
    if (!st) st = nb_h5io_put_i64(f, "vocab_size", V);
    if (!st) st = nb_h5io_put_i64(f, "bos", nb_tokenizer_bos(tok));
    if (!st) st = nb_h5io_put_strs(f, "sources", m->sources, m->n_sources);
    if (!st) st = nb_h5io_put_str(f, "val_source", m->val_source);
    if (!st) st = nb_h5io_put_f64(f, "val_fraction", m->val_fraction);
    if (!st) st = write_split(f, "train", tr, n_tr, d_tr, V);
    if (!st) st = write_split(f, "val", va, n_va, d_va, V);
    if (!st) {
        hid_t g;
        H5E_BEGIN_TRY { g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT); }
        H5E_END_TRY;
        if (g < 0) st = nb_fail(NB_EIO, "creating group /tokenizer failed");
        else {
            st = nb_tokenizer_save_h5(tok, g);
            H5Gclose(g);
        }
    }
    herr_t r;
    H5E_BEGIN_TRY { r = H5Fclose(f); }
    H5E_END_TRY;
    if (!st && r < 0) st = nb_fail(NB_EIO, "closing %s failed (disk full?)", path);
    return st;
}

nb_status nb_dataset_prepare(const nb_prepare_opts *o, const char *out_path, nb_prepare_stats *stats) {
    double t0 = now_s();
    if (stats) memset(stats, 0, sizeof *stats);
    if (o->n_train < 1) return nb_fail(NB_EINVAL, "prepare: no training text given");
    int has_val = o->val && o->val[0];
    double frac = has_val ? 0.0 : o->val_fraction;
    if (!(frac >= 0.0 && frac <= 0.9))
        return nb_fail(NB_EINVAL, "val_fraction %g is out of range (0 .. 0.9)", o->val_fraction);
    if (!o->tok && (!o->tokenizer || !o->tokenizer[0])) return nb_fail(NB_EINVAL, "prepare: no tokenizer given");
    int n_src = o->n_train + has_val;
    source *src = nb_calloc((size_t)n_src, sizeof *src);
    if (!src) return nb_fail(NB_ENOMEM, "prepare: out of memory");
    nb_tokenizer *own = NULL;
    char *corpus = NULL;
    tokbuf tr = {0}, va = {0};
    nb_status st = NB_OK;

    /* read and split every file first: errors about files come before any tokenizing */
    for (int i = 0; i < n_src && !st; i++) {
        src[i].path = i < o->n_train ? o->train[i] : o->val;
        st = read_text(src[i].path, &src[i].text, &src[i].len);
        if (!st) st = split_docs(src[i].text, src[i].len, &src[i].docs);
        if (!st && src[i].docs.n == 0) st = nb_fail(NB_EINVAL, "%s: empty text (no documents)", src[i].path);
    }
    if (st) goto done;

    const nb_tokenizer *tok = o->tok;
    if (!tok) {
        /* char needs the corpus: every document of every file */
        size_t total = 0;
        int is_char = !strcmp(o->tokenizer, "char");
        if (is_char) {
            for (int i = 0; i < n_src; i++)
                for (int64_t k = 0; k < src[i].docs.n; k++) total += src[i].docs.d[k].len;
            corpus = nb_malloc(total + 1);
            if (!corpus) {
                st = nb_fail(NB_ENOMEM, "prepare: out of memory");
                goto done;
            }
            total = 0;
            for (int i = 0; i < n_src; i++)
                for (int64_t k = 0; k < src[i].docs.n; k++) {
                    memcpy(corpus + total, src[i].text + src[i].docs.d[k].at, src[i].docs.d[k].len);
                    total += src[i].docs.d[k].len;
                }
        }
        st = nb_tokenizer_from_spec(o->tokenizer, corpus, total, &own);
        if (st) goto done;
        tok = own;
    }

    for (int i = 0; i < n_src && !st; i++) {
        st = tokenize_docs(tok, src[i].text, &src[i].docs, i < o->n_train ? &tr : &va);
        if (st) st = nb_fail_prefix(st, "%s", src[i].path);
    }
    if (st) goto done;

    /* the split: a separate file, or the tail of train cut at a document boundary */
    int64_t n_train = tr.n, n_val = 0, d_train = tr.n_docs, d_val = 0;
    if (has_val) {
        n_val = va.n;
        d_val = va.n_docs;
    } else if (frac > 0) {
        /* nanoGPT's cut: train = floor((1 - f) n) tokens */
        int64_t target = tr.n - (int64_t)((1.0 - frac) * (double)tr.n);
        if (tr.n_docs > 1) {
            int64_t best = 1;
            for (int64_t k = 1; k < tr.n_docs; k++) {
                int64_t dv = tr.n - tr.starts[k], db = tr.n - tr.starts[best];
                if (llabs(dv - target) < llabs(db - target)) best = k;
            }
            n_train = tr.starts[best];
            d_train = best;
            d_val = tr.n_docs - best;
        } else {
            n_train = tr.n - target;
            d_val = target > 0;
        }
        n_val = tr.n - n_train;
    }
    /* write to a temp file, then rename: a half-written dataset is never left under out_path */
    char tmp_path[4096];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp%ld", out_path, (long)getpid());
    char *key = prepare_key(o);
    if (!key) st = nb_fail(NB_ENOMEM, "out of memory");
    else {
        file_meta m = {o->tok ? "(given)" : o->tokenizer, key, o->val && o->val[0] ? o->val : "",
                       (const char *const *)o->train, o->n_train, frac};
        const int32_t *val_ids = has_val ? va.ids : tr.ids + n_train; /* a separate file, or train's tail */
        st = write_file(tmp_path, &m, tok, tr.ids, n_train, d_train, val_ids, n_val, d_val);
        nb_free(key);
    }
    if (!st && rename(tmp_path, out_path) != 0) st = nb_fail(NB_EIO, "rename to %s: %s", out_path, strerror(errno));
    if (st) {
        unlink(tmp_path);
        st = nb_fail_prefix(st, "writing %s", out_path);
    }
    if (!st && stats) {
        stats->train_tokens = n_train;
        stats->val_tokens = n_val;
        stats->train_docs = d_train;
        stats->val_docs = d_val;
        stats->vocab = nb_tokenizer_vocab(tok);
        stats->seconds = now_s() - t0;
    }
done:
    for (int i = 0; i < n_src; i++) {
        nb_free(src[i].text);
        nb_free(src[i].docs.d);
    }
    nb_free(src);
    nb_free(corpus);
    nb_tokenizer_free(own);
    tokbuf_free(&tr);
    tokbuf_free(&va);
    return st;
}

static nb_status open_dataset(const char *path, hid_t *out);

/* ---- tokens from memory (teacher-generated text) ---- */

nb_status nb_dataset_write_tokens(const char *path, const nb_tokenizer *tok, const nb_tokens *train,
                                  const nb_tokens *val, const char *source, const char *key) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid());
    static const nb_tokens none = {0};
    if (!val) val = &none;
    file_meta m = {"(given)", key ? key : "", "", &source, 1, 0.0};
    nb_status st = write_file(tmp, &m, tok, train->ids, train->n, train->n_docs, val->ids, val->n, val->n_docs);
    if (!st && rename(tmp, path) != 0) st = nb_fail(NB_EIO, "rename to %s: %s", path, strerror(errno));
    if (st) {
        unlink(tmp);
        return nb_fail_prefix(st, "writing %s", path);
    }
    return NB_OK;
}

nb_status nb_dataset_key(const char *path, char **key) {
    *key = NULL;
    hid_t f;
    NB_TRY(open_dataset(path, &f));
    enum { CAP = 1 << 16 };
    char *k = nb_malloc(CAP);
    nb_status st = k ? nb_h5io_get_str(f, path, "prepare_key", k, CAP) : nb_fail(NB_ENOMEM, "out of memory");
    H5Fclose(f);
    if (st) {
        nb_free(k);
        return st;
    }
    *key = k;
    return NB_OK;
}

/* ---- reading ---- */

static nb_status open_dataset(const char *path, hid_t *out) {
    struct stat sb;
    if (stat(path, &sb) != 0) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    if (f < 0) return nb_fail(NB_EFORMAT, "%s: not an HDF5 file (or it is corrupted)", path);
    char fmt[64] = "";
    if (nb_h5io_get_str(f, path, "format", fmt, sizeof fmt) != NB_OK || strcmp(fmt, FORMAT_NAME)) {
        H5Fclose(f);
        return nb_fail(NB_EFORMAT, "%s: not a nibble token dataset (no format = \"%s\" attribute)", path, FORMAT_NAME);
    }
    int64_t ver;
    nb_status st = nb_h5io_get_i64(f, path, "format_version", &ver);
    if (!st && ver != NB_DATASET_VERSION)
        st = nb_fail(NB_EFORMAT, "%s: dataset format version %lld, this build reads %d", path, (long long)ver,
                     NB_DATASET_VERSION);
    if (st) {
        H5Fclose(f);
        return st;
    }
    *out = f;
    return NB_OK;
}

nb_status nb_dataset_open_split(const char *path, const char *split, nb_tokens *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(split, "train") && strcmp(split, "val"))
        return nb_fail(NB_EINVAL, "%s: unknown split '%s' (train or val)", path, split);
    hid_t f;
    NB_TRY(open_dataset(path, &f));
    int64_t V, n, n_attr, docs = 0;
    char what[4200];
    snprintf(what, sizeof what, "%s: /%s", path, split);
    nb_status st = nb_h5io_get_i64(f, path, "vocab_size", &V);
    if (!st && (V < 1 || V > (1 << 24))) st = nb_fail(NB_EFORMAT, "%s: vocab_size %lld is out of range", path, (long long)V);
    if (!st) st = nb_h5io_len_1d(f, path, split, &n);
    hid_t d = -1;
    if (!st) {
        H5E_BEGIN_TRY { d = H5Dopen2(f, split, H5P_DEFAULT); }
        H5E_END_TRY;
        st = nb_h5io_get_i64(d, what, "n_tokens", &n_attr);
        if (!st && nb_h5io_has_attr(d, "n_documents")) st = nb_h5io_get_i64(d, what, "n_documents", &docs);
        if (d >= 0) H5Dclose(d);
    }
    if (!st && n_attr != n)
        st = nb_fail(NB_EFORMAT, "%s holds %lld tokens but its n_tokens attribute says %lld (truncated or edited file)",
                     what, (long long)n, (long long)n_attr);
    if (!st) {
        out->ids = nb_malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
        if (!out->ids) st = nb_fail(NB_ENOMEM, "%s: out of memory for %lld tokens", what, (long long)n);
    }
    if (!st) st = nb_h5io_read_1d(f, path, split, H5T_NATIVE_INT32, out->ids, n);
    for (int64_t i = 0; !st && i < n; i++)
        if (out->ids[i] < 0 || out->ids[i] >= V)
            st = nb_fail(NB_EFORMAT, "%s: token %lld is %d, outside the vocabulary of %lld", what, (long long)i,
                         out->ids[i], (long long)V);
    H5Fclose(f);
    if (st) {
        nb_tokens_free(out);
        return st;
    }
    out->n = n;
    out->n_docs = docs;
    return NB_OK;
}

nb_status nb_dataset_tokenizer(const char *path, nb_tokenizer **out) {
    *out = NULL;
    hid_t f;
    NB_TRY(open_dataset(path, &f));
    int64_t V;
    nb_status st = nb_h5io_get_i64(f, path, "vocab_size", &V);
    hid_t g = -1;
    if (!st) {
        if (!nb_h5io_has_link(f, "tokenizer")) st = nb_fail(NB_EFORMAT, "%s: missing group /tokenizer", path);
        else {
            H5E_BEGIN_TRY { g = H5Gopen2(f, "tokenizer", H5P_DEFAULT); }
            H5E_END_TRY;
            st = g < 0 ? nb_fail(NB_EFORMAT, "%s: /tokenizer is not a group", path) : nb_tokenizer_load_h5(g, out);
            if (g >= 0) H5Gclose(g);
            if (st) nb_fail_prefix(st, "%s", path);
        }
    }
    if (!st && nb_tokenizer_vocab(*out) != V) {
        st = nb_fail(NB_EFORMAT, "%s: vocab_size %lld but the tokenizer has %d tokens", path, (long long)V,
                     nb_tokenizer_vocab(*out));
        nb_tokenizer_free(*out);
        *out = NULL;
    }
    H5Fclose(f);
    return st;
}

int nb_dataset_is_current(const char *path, const nb_prepare_opts *o) {
    hid_t f;
    if (access(path, R_OK) != 0 || open_dataset(path, &f) != NB_OK) return 0;
    char *want = prepare_key(o);
    size_t cap = want ? strlen(want) + 2 : 1;
    char *have = nb_malloc(cap);
    int same = want && have && nb_h5io_get_str(f, path, "prepare_key", have, cap) == NB_OK && !strcmp(have, want);
    H5Fclose(f);
    nb_free(want);
    nb_free(have);
    if (same && o->tok) {
        nb_tokenizer *t;
        if (nb_dataset_tokenizer(path, &t) != NB_OK) return 0;
        same = nb_tokenizer_equal(t, o->tok);
        nb_tokenizer_free(t);
    }
    nb_clear_error();
    return same;
}

nb_status nb_tokens_load(const char *path, const nb_tokenizer *tok, const char *split, nb_tokens *out) {
    memset(out, 0, sizeof *out);
    htri_t is_h5;
    H5E_BEGIN_TRY { is_h5 = H5Fis_hdf5(path); }
    H5E_END_TRY;
    if (is_h5 > 0) {
        if (tok) {
            nb_tokenizer *dt;
            NB_TRY(nb_dataset_tokenizer(path, &dt));
            int same = nb_tokenizer_equal(dt, tok);
            nb_tokenizer_free(dt);
            if (!same)
                return nb_fail(NB_EINVAL, "%s was prepared with a different tokenizer than the model's", path);
        }
        return nb_dataset_open_split(path, split ? split : "val", out);
    }
    if (!tok) return nb_fail(NB_EINVAL, "%s: a text file needs a tokenizer", path);
    return nb_text_tokenize_file(tok, path, out);
}

/* ---- windows ---- */

nb_status nb_tokens_batch(const nb_tokens *t, uint64_t seed, int64_t batch_index, int B, int T, int32_t *x,
                          int32_t *y) {
    if (B < 1 || T < 1) return nb_fail(NB_EINVAL, "batch: B = %d and T = %d must be positive", B, T);
    if (t->n < (int64_t)T + 1)
        return nb_fail(NB_EINVAL, "the split has %lld tokens; a training window needs T + 1 = %d", (long long)t->n,
                       T + 1);
    uint64_t starts = (uint64_t)(t->n - T); /* window start in [0, n - T - 1] */
    for (int b = 0; b < B; b++) {
        uint64_t h = nb_rng_hash(seed, NB_DATA_RNG_STREAM, (uint64_t)batch_index * (uint64_t)B + (uint64_t)b);
        /* multiply-shift maps the 64-bit draw onto [0, starts) with one draw (bias < starts / 2^64) */
        int64_t s = (int64_t)(((unsigned __int128)h * starts) >> 64);
        memcpy(x + (size_t)b * T, t->ids + s, sizeof(int32_t) * (size_t)T);
        memcpy(y + (size_t)b * T, t->ids + s + 1, sizeof(int32_t) * (size_t)T);
    }
    return NB_OK;
}

int64_t nb_tokens_eval_count(const nb_tokens *t, int T) {
    if (T < 1 || t->n < 2) return 0;
    return (t->n - 1 + T - 1) / T;
}

int nb_tokens_eval_window(const nb_tokens *t, int T, int64_t i, const int32_t **x, const int32_t **y) {
    if (i < 0 || i >= nb_tokens_eval_count(t, T)) return 0;
    int64_t at = i * T, len = t->n - 1 - at;
    *x = t->ids + at;
    *y = t->ids + at + 1;
    return (int)(len < T ? len : T);
}
