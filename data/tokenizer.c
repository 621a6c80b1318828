/* tokenizer.c: byte, char and llama2.c BPE tokenizers; llama2.c tokenizer.bin and HDF5 storage. */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "h5io.h"

/* Largest vocabulary we accept from any file (llama 3 has 128k; this leaves room). */
#define MAX_VOCAB (1 << 24)

struct nb_tokenizer {
    nb_tok_kind kind;
    int V;          /* vocabulary size */
    int bos, eos;   /* -1 when absent */
    int max_len;    /* longest piece in bytes */
    char *blob;     /* pieces, each followed by a NUL (so they print as C strings) */
    int64_t *off;   /* (V + 1) piece i = blob[off[i] .. off[i+1] - 2], NUL at off[i+1] - 1 */
    float *scores;  /* (V) merge scores (llama2c), 0 otherwise */
    int32_t *sorted;/* (V) ids sorted by piece bytes, ties by id: the lookup index */
    int16_t *byte_of; /* (V) value of a <0xHH> piece (llama2c byte fallback), else -1 */
};

static const unsigned char byte_table[256] = {
#define R16(b) b, b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7, b + 8, b + 9, b + 10, b + 11, b + 12, b + 13, b + 14, b + 15
    R16(0), R16(16), R16(32), R16(48), R16(64), R16(80), R16(96), R16(112),
    R16(128), R16(144), R16(160), R16(176), R16(192), R16(208), R16(224), R16(240)
#undef R16
};

static inline size_t plen(const nb_tokenizer *t, int id) { return (size_t)(t->off[id + 1] - t->off[id] - 1); }
static inline const char *pstr(const nb_tokenizer *t, int id) { return t->blob + t->off[id]; }

/* Byte order, a prefix before its extensions (strcmp's order for NUL-free strings). */
static int bytes_cmp(const char *a, size_t la, const char *b, size_t lb) {
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

static int sort_cmp(const void *pa, const void *pb, void *ctx) {
    const nb_tokenizer *t = ctx;
    int a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    int c = bytes_cmp(pstr(t, a), plen(t, a), pstr(t, b), plen(t, b));
    return c ? c : (a > b) - (a < b);
}

/* Id of the piece equal to s[0..n), the lowest id if several are equal; -1 if none. */
static int lookup(const nb_tokenizer *t, const char *s, size_t n) {
    int lo = 0, hi = t->V; /* lower bound */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int id = t->sorted[mid];
        if (bytes_cmp(pstr(t, id), plen(t, id), s, n) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < t->V) {
        int id = t->sorted[lo];
        if (plen(t, id) == n && memcmp(pstr(t, id), s, n) == 0) return id;
    }
    return -1;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

void nb_tokenizer_free(nb_tokenizer *t) {
    if (!t) return;
    nb_free(t->blob);
    nb_free(t->off);
    nb_free(t->scores);
    nb_free(t->sorted);
    nb_free(t->byte_of);
    nb_free(t);
}

/* Builds a tokenizer from V pieces given compactly (piece i = data[off[i] .. off[i+1])). Copies
   everything; scores may be NULL (all 0). */
static nb_status tok_new(nb_tok_kind kind, int V, const char *data, const int64_t *off, const float *scores, int bos,
                         int eos, nb_tokenizer **out) {
    *out = NULL;
    NB_ASSERT(V > 0 && V <= MAX_VOCAB && off[0] == 0);
    nb_tokenizer *t = nb_calloc(1, sizeof *t);
    if (!t) return nb_fail(NB_ENOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->V = V;
    t->bos = bos;
    t->eos = eos;
    t->blob = nb_malloc((size_t)off[V] + (size_t)V);
    t->off = nb_malloc(sizeof(int64_t) * ((size_t)V + 1));
    t->scores = nb_calloc((size_t)V, sizeof(float));
    t->sorted = nb_malloc(sizeof(int32_t) * (size_t)V);
    t->byte_of = nb_malloc(sizeof(int16_t) * (size_t)V);
    if (!t->blob || !t->off || !t->scores || !t->sorted || !t->byte_of) {
        nb_tokenizer_free(t);
        return nb_fail(NB_ENOMEM, "tokenizer: out of memory for %d pieces", V);
    }
    int64_t pos = 0;
    for (int i = 0; i < V; i++) {
        int64_t n = off[i + 1] - off[i];
        t->off[i] = pos;
        memcpy(t->blob + pos, data + off[i], (size_t)n);
        t->blob[pos + n] = 0;
        pos += n + 1;
        if (n > t->max_len) t->max_len = (int)n;
        if (scores) t->scores[i] = scores[i];
        t->sorted[i] = i;
        /* llama2.c byte fallback pieces look like <0x0A> (run.c's sscanf "<0x%02hhX>") */
        const char *p = data + off[i];
        int hi = n == 6 ? hexval(p[3]) : -1, lo = n == 6 ? hexval(p[4]) : -1;
        t->byte_of[i] = (kind == NB_TOK_LLAMA2C && n == 6 && !memcmp(p, "<0x", 3) && p[5] == '>' && hi >= 0 && lo >= 0)
                            ? (int16_t)(hi * 16 + lo)
                            : -1;
    }
    t->off[V] = pos;
    qsort_r(t->sorted, (size_t)V, sizeof(int32_t), sort_cmp, t);
    *out = t;
    return NB_OK;
}

/* ---- byte ---- */

nb_status nb_tokenizer_byte(nb_tokenizer **out) {
    char data[256 + 7];
    int64_t off[259];
    for (int i = 0; i < 256; i++) {
        data[i] = (char)i;
        off[i] = i;
    }
    memcpy(data + 256, "<s></s>", 7);
    off[256] = 256;
    off[257] = 259;
    off[258] = 263;
    return tok_new(NB_TOK_BYTE, 258, data, off, NULL, 256, 257, out);
}

/* ---- char ---- */

/* Length of the UTF-8 character at s (n bytes left): a well-formed sequence, else 1 (a stray
   byte is a character of its own). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t k = s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3 : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 1;
    if (k > n) return 1;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return k;
}

/* A character as a sortable key: bytes big-endian in the top 32 bits, length in the low byte.
   Key order equals byte order with prefixes first. */
static uint64_t char_key(const unsigned char *s, size_t k) {
    uint64_t v = 0;
    for (size_t i = 0; i < 4; i++) v = (v << 8) | (i < k ? s[i] : 0);
    return (v << 8) | k;
}

static int u64_cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

nb_status nb_tokenizer_char_build(const char *text, size_t len, nb_tokenizer **out) {
    *out = NULL;
    if (!text || len == 0) return nb_fail(NB_EINVAL, "char tokenizer: the corpus is empty");
    const unsigned char *s = (const unsigned char *)text;
    unsigned char single[256] = {0};
    uint64_t *multi = NULL;
    size_t n_multi = 0, cap = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_len(s + i, len - i);
        if (k == 1) {
            single[s[i]] = 1;
        } else {
            if (n_multi == cap) {
                cap = cap ? cap * 2 : 256;
                uint64_t *m = nb_realloc(multi, cap * sizeof *m);
                if (!m) {
                    nb_free(multi);
                    return nb_fail(NB_ENOMEM, "char tokenizer: out of memory");
                }
                multi = m;
            }
            multi[n_multi++] = char_key(s + i, k);
            /* keep the list short: drop exact repeats of recent characters */
            if (n_multi >= 2 && multi[n_multi - 2] == multi[n_multi - 1]) n_multi--;
        }
        i += k;
    }
    uint64_t *keys = nb_malloc((n_multi + 256) * sizeof *keys);
    if (!keys) {
        nb_free(multi);
        return nb_fail(NB_ENOMEM, "char tokenizer: out of memory");
    }
    size_t nk = 0;
    for (int b = 0; b < 256; b++)
        if (single[b]) keys[nk++] = char_key((const unsigned char *)&byte_table[b], 1);
    if (n_multi) memcpy(keys + nk, multi, n_multi * sizeof *keys);
    nk += n_multi;
    nb_free(multi);
    qsort(keys, nk, sizeof *keys, u64_cmp);
    size_t V = 0;
    for (size_t i = 0; i < nk; i++)
        if (V == 0 || keys[i] != keys[V - 1]) keys[V++] = keys[i];
    /* pieces from keys, in key (= code point) order */
    char *data = nb_malloc(V * 4);
    int64_t *off = nb_malloc((V + 1) * sizeof *off);
    nb_status st = NB_OK;
    if (!data || !off) {
        st = nb_fail(NB_ENOMEM, "char tokenizer: out of memory");
    } else {
        off[0] = 0;
        for (size_t i = 0; i < V; i++) {
            size_t k = keys[i] & 0xff;
            for (size_t j = 0; j < k; j++) data[off[i] + j] = (char)(keys[i] >> (32 - 8 * j));
            off[i + 1] = off[i] + (int64_t)k;
        }
        st = tok_new(NB_TOK_CHAR, (int)V, data, off, NULL, -1, -1, out);
    }
    nb_free(keys);
    nb_free(data);
    nb_free(off);
    return st;
}

/* ---- llama2.c ---- */

static int32_t rd_i32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, 4);
    return r;
}

nb_status nb_tokenizer_llama2c_load_mem(const void *data, size_t size, const char *name, int vocab_size,
                                        nb_tokenizer **out) {
    *out = NULL;
    const unsigned char *b = data;
    if (vocab_size < 0 || vocab_size > MAX_VOCAB)
        return nb_fail(NB_EINVAL, "%s: vocab size %d is out of range (0..%d)", name, vocab_size, MAX_VOCAB);
    if (size < 4)
        return nb_fail(NB_EFORMAT, "%s: %zu bytes, too short for a llama2.c tokenizer (needs a 4-byte header)", name,
                       size);
    int32_t max_len = rd_i32(b);
    if (max_len <= 0 || (size_t)max_len > size)
        return nb_fail(NB_EFORMAT, "%s: max_token_length %d is out of range (the file has %zu bytes)", name, max_len,
                       size);
    /* pass 1: count records, checking each length against what is left of the file */
    size_t pos = 4;
    int64_t V = 0;
    while (vocab_size ? V < vocab_size : pos < size) {
        if (size - pos < 8)
            return nb_fail(NB_EFORMAT, "%s: record %lld: truncated at byte %zu (needs 8 bytes of score and length, %zu left)",
                           name, (long long)V, pos, size - pos);
        int32_t len = rd_i32(b + pos + 4);
        if (len < 0 || (size_t)len > size - pos - 8)
            return nb_fail(NB_EFORMAT, "%s: record %lld: length %d is out of range (%zu bytes left in the file)", name,
                           (long long)V, len, size - pos - 8);
        pos += 8 + (size_t)len;
        if (++V > MAX_VOCAB) return nb_fail(NB_EFORMAT, "%s: more than %d records", name, MAX_VOCAB);
    }
    if (V == 0) return nb_fail(NB_EFORMAT, "%s: no tokens after the header", name);
    /* pass 2: gather pieces and scores */
    char *pieces = nb_malloc(size);
    int64_t *off = nb_malloc(sizeof(int64_t) * (size_t)(V + 1));
    float *scores = nb_malloc(sizeof(float) * (size_t)V);
    nb_status st = NB_OK;
    if (!pieces || !off || !scores) {
        st = nb_fail(NB_ENOMEM, "%s: out of memory for %lld tokens", name, (long long)V);
        goto done;
    }
    pos = 4;
    off[0] = 0;
    for (int64_t i = 0; i < V; i++) {
        memcpy(&scores[i], b + pos, 4);
        int32_t len = rd_i32(b + pos + 4);
        memcpy(pieces + off[i], b + pos + 8, (size_t)len);
        off[i + 1] = off[i] + len;
        pos += 8 + (size_t)len;
    }
    st = tok_new(NB_TOK_LLAMA2C, (int)V, pieces, off, scores, V > 1 ? 1 : -1, V > 2 ? 2 : -1, out);
done:
    nb_free(pieces);
    nb_free(off);
    nb_free(scores);
    return st;
}

nb_status nb_tokenizer_llama2c_load(const char *path, int vocab_size, nb_tokenizer **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return nb_fail(NB_EIO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size > ((size_t)1 << 30)) {
        fclose(f);
        return nb_fail(NB_EFORMAT, "%s: %zu bytes is too large for a tokenizer file", path, size);
    }
    unsigned char *buf = nb_malloc(size);
    if (!buf) {
        fclose(f);
        return nb_fail(NB_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, size, f);
    fclose(f);
    nb_status st = got == size ? nb_tokenizer_llama2c_load_mem(buf, size, path, vocab_size, out)
                               : nb_fail(NB_EIO, "read %s: short read", path);
    nb_free(buf);
    return st;
}

nb_status nb_tokenizer_from_spec(const char *spec, const char *corpus, size_t corpus_len, nb_tokenizer **out) {
    *out = NULL;
    if (!spec) spec = "";
    if (!strcmp(spec, "byte")) return nb_tokenizer_byte(out);
    if (!strcmp(spec, "char")) {
        if (!corpus || corpus_len == 0)
            return nb_fail(NB_EINVAL, "tokenizer 'char' builds its vocabulary from the text, which is empty");
        return nb_tokenizer_char_build(corpus, corpus_len, out);
    }
    if (!strncmp(spec, "llama2c:", 8)) {
        if (!spec[8]) return nb_fail(NB_EINVAL, "tokenizer 'llama2c:' needs a path (llama2c:PATH/tokenizer.bin)");
        return nb_tokenizer_llama2c_load(spec + 8, 0, out);
    }
    return nb_fail(NB_EINVAL, "unknown tokenizer '%s' (expected byte, char or llama2c:PATH)", spec);
}

nb_tok_kind nb_tokenizer_kind(const nb_tokenizer *t) { return t->kind; }
int nb_tokenizer_vocab(const nb_tokenizer *t) { return t->V; }
int nb_tokenizer_bos(const nb_tokenizer *t) { return t->bos; }
int nb_tokenizer_eos(const nb_tokenizer *t) { return t->eos; }
int nb_tokenizer_max_token_len(const nb_tokenizer *t) { return t->max_len; }

const char *nb_tokenizer_kind_name(nb_tok_kind k) {
    return k == NB_TOK_BYTE ? "byte" : k == NB_TOK_CHAR ? "char" : k == NB_TOK_LLAMA2C ? "llama2c" : "unknown";
}

const char *nb_tokenizer_token(const nb_tokenizer *t, int id, size_t *len, float *score) {
    if (id < 0 || id >= t->V) {
        if (len) *len = 0;
        if (score) *score = 0;
        return "";
    }
    if (len) *len = plen(t, id);
    if (score) *score = t->scores[id];
    return pstr(t, id);
}

int nb_tokenizer_equal(const nb_tokenizer *a, const nb_tokenizer *b) {
    if (a->kind != b->kind || a->V != b->V || a->bos != b->bos || a->eos != b->eos) return 0;
    if (memcmp(a->off, b->off, sizeof(int64_t) * ((size_t)a->V + 1))) return 0;
    if (memcmp(a->blob, b->blob, (size_t)a->off[a->V])) return 0;
    return memcmp(a->scores, b->scores, sizeof(float) * (size_t)a->V) == 0;
}

/* ---- encode ---- */

/* Output buffer with room for `cap` ids. */
typedef struct idbuf {
    int32_t *ids;
    int64_t n;
} idbuf;

static nb_status encode_byte(const nb_tokenizer *t, const unsigned char *s, size_t len, idbuf *o) {
    for (size_t i = 0; i < len; i++) o->ids[o->n++] = s[i];
    return NB_OK;
}

static nb_status encode_char(const nb_tokenizer *t, const unsigned char *s, size_t len, idbuf *o) {
    for (size_t i = 0; i < len;) {
        size_t k = utf8_len(s + i, len - i);
        int id = lookup(t, (const char *)s + i, k);
        if (id < 0) {
            char shown[16];
            if (k == 1 && (s[i] < 0x20 || s[i] >= 0x7f)) snprintf(shown, sizeof shown, "byte 0x%02X", s[i]);
            else snprintf(shown, sizeof shown, "'%.*s'", (int)k, (const char *)s + i);
            return nb_fail(NB_EINVAL, "character %s at byte %zu is not in the char tokenizer's vocabulary", shown, i);
        }
        o->ids[o->n++] = id;
        i += k;
    }
    return NB_OK;
}

/* A candidate merge of the adjacent nodes (left, right) into token id. Ordered by score (higher
   first), then by position (leftmost first) -- exactly run.c's choice of the best pair. */
typedef struct pair {
    float score;
    int32_t left, right, id;
    uint32_t lver, rver; /* node versions when pushed: stale entries are skipped */
} pair;

typedef struct heap {
    pair *a;
    size_t n, cap;
} heap;

static inline int pair_before(const pair *x, const pair *y) {
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static int heap_push(heap *h, pair p) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        pair *a = nb_realloc(h->a, cap * sizeof *a);
        if (!a) return 0;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &h->a[up])) break;
        h->a[i] = h->a[up];
        i = up;
    }
    h->a[i] = p;
    return 1;
}

static pair heap_pop(heap *h) {
    pair top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && pair_before(&h->a[c + 1], &h->a[c])) c++;
        if (!pair_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct merger {
    const nb_tokenizer *t;
    int32_t *tok, *next, *prev; /* (n) token of each node and its live neighbours (-1 at the ends) */
    uint32_t *ver;              /* (n) bumped when the node's token changes */
    char *buf;                  /* (2 * max_len) concatenation of two pieces */
    heap h;
} merger;

/* Pushes the merge of node l with node r if their concatenation is a piece. run.c only merges
   pairs with score > -1e10 (its starting best score), so neither do we. */
static int consider(merger *m, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 1;
    const nb_tokenizer *t = m->t;
    size_t la = plen(t, m->tok[l]), lb = plen(t, m->tok[r]);
    if (la + lb > (size_t)t->max_len) return 1;
    memcpy(m->buf, pstr(t, m->tok[l]), la);
    memcpy(m->buf + la, pstr(t, m->tok[r]), lb);
    int id = lookup(t, m->buf, la + lb);
    if (id < 0 || !(t->scores[id] > -1e10f)) return 1;
    pair p = {t->scores[id], l, r, id, m->ver[l], m->ver[r]};
    return heap_push(&m->h, p);
}

/* run.c's merge loop: while some adjacent pair concatenates to a piece, merge the pair with the
   best score (leftmost on ties). A heap of candidate pairs over a linked list gives the same
   result in O(n log n) instead of run.c's O(n^2) rescans. */
static nb_status bpe_merge(const nb_tokenizer *t, int32_t *ids, int64_t *n_io) {
    int64_t n = *n_io;
    if (n < 2) return NB_OK;
    merger m = {t, 0};
    m.tok = nb_malloc(sizeof(int32_t) * (size_t)n);
    m.next = nb_malloc(sizeof(int32_t) * (size_t)n);
    m.prev = nb_malloc(sizeof(int32_t) * (size_t)n);
    m.ver = nb_calloc((size_t)n, sizeof(uint32_t));
    m.buf = nb_malloc(2 * (size_t)t->max_len + 1);
    nb_status st = NB_OK;
    if (!m.tok || !m.next || !m.prev || !m.ver || !m.buf) goto oom;
    for (int64_t i = 0; i < n; i++) {
        m.tok[i] = ids[i];
        m.prev[i] = (int32_t)i - 1;
        m.next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (int64_t i = 0; i + 1 < n; i++)
        if (!consider(&m, (int32_t)i, (int32_t)i + 1)) goto oom;
    while (m.h.n) {
        pair p = heap_pop(&m.h);
        if (m.ver[p.left] != p.lver || m.ver[p.right] != p.rver || m.next[p.left] != p.right) continue;
        /* merge right into left */
        int32_t l = p.left, r = p.right;
        m.tok[l] = p.id;
        m.ver[l]++;
        m.ver[r]++; /* r is gone: every pair that names it is stale */
        m.next[l] = m.next[r];
        if (m.next[r] >= 0) m.prev[m.next[r]] = l;
        m.next[r] = -2;
        if (!consider(&m, m.prev[l], l) || !consider(&m, l, m.next[l])) goto oom;
    }
    int64_t k = 0;
    for (int32_t i = 0; i >= 0; i = m.next[i]) ids[k++] = m.tok[i];
    *n_io = k;
    goto done;
oom:
    st = nb_fail(NB_ENOMEM, "tokenizer: out of memory while merging %lld tokens", (long long)n);
done:
    nb_free(m.tok);
    nb_free(m.next);
    nb_free(m.prev);
    nb_free(m.ver);
    nb_free(m.buf);
    nb_free(m.h.a);
    return st;
}

/* The byte-fallback id of byte c (run.c: c + 3), refused when the vocabulary has no such id. */
static nb_status fallback(const nb_tokenizer *t, unsigned char c, size_t at, idbuf *o) {
    if ((int)c + 3 >= t->V)
        return nb_fail(NB_EINVAL, "byte 0x%02X at byte %zu has no token (vocabulary of %d has no byte fallback)", c, at,
                       t->V);
    o->ids[o->n++] = (int32_t)c + 3;
    return NB_OK;
}

/* run.c's encode without BOS/EOS: dummy prefix " ", one token per UTF-8 character (up to 4
   bytes) found in the vocabulary, else one <0xXX> token per byte; merges come after. */
static nb_status encode_llama2c(const nb_tokenizer *t, const unsigned char *s, size_t len, idbuf *o) {
    if (len == 0) return NB_OK;
    int sp = lookup(t, " ", 1);
    if (sp >= 0) o->ids[o->n++] = sp;
    else NB_TRY(fallback(t, ' ', 0, o));
    unsigned char buf[4];
    size_t blen = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if ((c & 0xC0) != 0x80) blen = 0; /* a new character starts */
        buf[blen++] = c;
        unsigned char next = i + 1 < len ? s[i + 1] : 0;
        if ((next & 0xC0) == 0x80 && blen < 4) continue; /* continuation bytes follow */
        int id = lookup(t, (const char *)buf, blen);
        if (id >= 0) {
            o->ids[o->n++] = id;
        } else {
            for (size_t j = 0; j < blen; j++) NB_TRY(fallback(t, buf[j], i + 1 - blen + j, o));
        }
        blen = 0;
    }
    return NB_OK;
}

nb_status nb_tokenizer_encode(const nb_tokenizer *t, const char *text, size_t len, int bos, int eos, int32_t **ids,
                              int64_t *n) {
    *ids = NULL;
    *n = 0;
    if (!text && len) return nb_fail(NB_EINVAL, "tokenizer: NULL text");
    /* every kind makes at most one token per byte, plus BOS, dummy prefix and EOS */
    if (len > (size_t)INT32_MAX - 8) return nb_fail(NB_EINVAL, "tokenizer: text of %zu bytes is too long", len);
    idbuf o = {nb_malloc(sizeof(int32_t) * (len + 3)), 0};
    if (!o.ids) return nb_fail(NB_ENOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    if (bos && t->bos >= 0) o.ids[o.n++] = t->bos;
    const unsigned char *s = (const unsigned char *)text;
    nb_status st = t->kind == NB_TOK_BYTE ? encode_byte(t, s, len, &o)
                   : t->kind == NB_TOK_CHAR ? encode_char(t, s, len, &o)
                                            : encode_llama2c(t, s, len, &o);
    /* run.c merges across the whole buffer, BOS included */
    if (st == NB_OK && t->kind == NB_TOK_LLAMA2C) st = bpe_merge(t, o.ids, &o.n);
    if (st != NB_OK) {
        nb_free(o.ids);
        return st;
    }
    if (eos && t->eos >= 0) o.ids[o.n++] = t->eos;
    *ids = o.ids;
    *n = o.n;
    return NB_OK;
}

/* ---- decode ---- */

const char *nb_tokenizer_piece(const nb_tokenizer *t, int prev, int id, size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->V || id == t->bos || id == t->eos) return ""; /* control tokens print nothing */
    if (t->kind == NB_TOK_BYTE) {
        *len = 1;
        return (const char *)&byte_table[id];
    }
    const char *p = pstr(t, id);
    size_t n = plen(t, id);
    if (t->kind == NB_TOK_LLAMA2C) {
        if (t->byte_of[id] >= 0) {
            *len = 1;
            return (const char *)&byte_table[t->byte_of[id]];
        }
        /* sentencepiece strips the leading space of the first piece after BOS */
        if (prev == t->bos && n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
    }
    *len = n;
    return p;
}

nb_status nb_tokenizer_decode(const nb_tokenizer *t, const int32_t *ids, int64_t n, char **text) {
    *text = NULL;
    size_t total = 1;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->V)
            return nb_fail(NB_EINVAL, "decode: token %d at position %lld is outside the vocabulary (0..%d)", ids[i],
                           (long long)i, t->V - 1);
        total += plen(t, ids[i]) > 1 ? plen(t, ids[i]) : 1;
    }
    char *s = nb_malloc(total);
    if (!s) return nb_fail(NB_ENOMEM, "decode: out of memory for %lld tokens", (long long)n);
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t len;
        const char *p = nb_tokenizer_piece(t, i > 0 ? ids[i - 1] : -1, ids[i], &len);
        memcpy(s + k, p, len);
        k += len;
    }
    s[k] = 0;
    *text = s;
    return NB_OK;
}

/* ---- HDF5 ---- */

nb_status nb_tokenizer_save_h5(const nb_tokenizer *t, hid_t g) {
    /* pieces as one compact byte blob + offsets (V + 1) */
    int64_t *off = nb_malloc(sizeof(int64_t) * ((size_t)t->V + 1));
    char *blob = nb_malloc((size_t)t->off[t->V] + 1);
    if (!off || !blob) {
        nb_free(off);
        nb_free(blob);
        return nb_fail(NB_ENOMEM, "tokenizer: out of memory while saving");
    }
    off[0] = 0;
    for (int i = 0; i < t->V; i++) {
        memcpy(blob + off[i], pstr(t, i), plen(t, i));
        off[i + 1] = off[i] + (int64_t)plen(t, i);
    }
    nb_status st = nb_h5io_put_str(g, "kind", nb_tokenizer_kind_name(t->kind));
    if (!st) st = nb_h5io_put_i64(g, "kind_id", t->kind);
    if (!st) st = nb_h5io_put_i64(g, "vocab_size", t->V);
    if (!st) st = nb_h5io_put_i64(g, "bos", t->bos);
    if (!st) st = nb_h5io_put_i64(g, "eos", t->eos);
    if (!st) st = nb_h5io_put_i64(g, "max_token_length", t->max_len);
    if (!st) st = nb_h5io_write_1d(g, "pieces", H5T_STD_U8LE, H5T_NATIVE_UCHAR, blob, off[t->V]);
    if (!st) st = nb_h5io_write_1d(g, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, off, (int64_t)t->V + 1);
    if (!st) st = nb_h5io_write_1d(g, "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->scores, t->V);
    nb_free(off);
    nb_free(blob);
    return st ? nb_fail_prefix(st, "saving tokenizer") : NB_OK;
}

nb_status nb_tokenizer_load_h5(hid_t g, nb_tokenizer **out) {
    *out = NULL;
    const char *what = "tokenizer group";
    int64_t kind, V, bos, eos, nblob;
    NB_TRY(nb_h5io_get_i64(g, what, "kind_id", &kind));
    NB_TRY(nb_h5io_get_i64(g, what, "vocab_size", &V));
    NB_TRY(nb_h5io_get_i64(g, what, "bos", &bos));
    NB_TRY(nb_h5io_get_i64(g, what, "eos", &eos));
    if (kind < NB_TOK_BYTE || kind > NB_TOK_LLAMA2C)
        return nb_fail(NB_EFORMAT, "%s: unknown tokenizer kind %lld", what, (long long)kind);
    if (V < 1 || V > MAX_VOCAB)
        return nb_fail(NB_EFORMAT, "%s: vocab_size %lld is out of range (1..%d)", what, (long long)V, MAX_VOCAB);
    if (kind == NB_TOK_BYTE && V != 258)
        return nb_fail(NB_EFORMAT, "%s: a byte tokenizer has 258 ids, not %lld", what, (long long)V);
    if (bos < -1 || bos >= V || eos < -1 || eos >= V)
        return nb_fail(NB_EFORMAT, "%s: bos %lld / eos %lld outside the vocabulary of %lld", what, (long long)bos,
                       (long long)eos, (long long)V);
    NB_TRY(nb_h5io_len_1d(g, what, "pieces", &nblob));
    if (nblob > (int64_t)1 << 30)
        return nb_fail(NB_EFORMAT, "%s: %lld bytes of pieces is absurd", what, (long long)nblob);
    int64_t *off = nb_malloc(sizeof(int64_t) * (size_t)(V + 1));
    char *blob = nb_malloc((size_t)nblob + 1);
    float *scores = nb_malloc(sizeof(float) * (size_t)V);
    nb_status st = NB_OK;
    if (!off || !blob || !scores) {
        st = nb_fail(NB_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    st = nb_h5io_read_1d(g, what, "offsets", H5T_NATIVE_INT64, off, V + 1);
    if (!st) st = nb_h5io_read_1d(g, what, "pieces", H5T_NATIVE_UCHAR, blob, nblob);
    if (!st) st = nb_h5io_read_1d(g, what, "scores", H5T_NATIVE_FLOAT, scores, V);
    if (st) goto done;
    if (off[0] != 0 || off[V] != nblob) {
        st = nb_fail(NB_EFORMAT, "%s: offsets run from %lld to %lld, expected 0 to %lld", what, (long long)off[0],
                     (long long)off[V], (long long)nblob);
        goto done;
    }
    for (int64_t i = 0; i < V; i++) {
        if (off[i + 1] < off[i] || off[i + 1] > nblob) {
            st = nb_fail(NB_EFORMAT, "%s: offsets[%lld] = %lld is out of order or past the end", what,
                         (long long)(i + 1), (long long)off[i + 1]);
            goto done;
        }
        if (kind == NB_TOK_BYTE && i < 256 && (off[i + 1] - off[i] != 1 || (unsigned char)blob[off[i]] != i)) {
            st = nb_fail(NB_EFORMAT, "%s: byte tokenizer piece %lld is not the byte itself", what, (long long)i);
            goto done;
        }
    }
    st = tok_new((nb_tok_kind)kind, (int)V, blob, off, scores, (int)bos, (int)eos, out);
done:
    nb_free(off);
    nb_free(blob);
    nb_free(scores);
    return st;
}

nb_status nb_tokenizer_append_piece(const nb_tokenizer *t, int prev, int id, char **buf, size_t *len, size_t *cap) {
    size_t n = 0;
    const char *p = nb_tokenizer_piece(t, prev, id, &n);
    if (!p) return NB_OK;
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        while (c < *len + n + 1) c *= 2;
        char *b = nb_realloc(*buf, c);
        if (!b) return nb_fail(NB_ENOMEM, "generate: text of %zu bytes", c);
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
    return NB_OK;
}
