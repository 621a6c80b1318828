/* test_data.c: tokenizers (byte, char, llama2.c BPE against reference.json), their file and HDF5
   loaders, token datasets (prepare, open, training batches, evaluation windows). */
#include "nbtest.h"

#include <stdio.h>
#include <unistd.h>

#include "../data/dataset.h"
#include "../data/tokenizer.h"

#define TOK512 NB_TEST_DATA("stories260K/tok512.bin")
#define REFJSON NB_TEST_DATA("stories260K/reference.json")

/* ---- helpers ---- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    ck_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    b[n] = 0;
    if (len) *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static char tmpdir_path[256];
static void rm_tmpdir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir_path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir_path);
}
/* A path in a fresh temporary folder (removed at exit). */
static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    if (!tmpdir_path[0]) {
        snprintf(tmpdir_path, sizeof tmpdir_path, "/tmp/nb_test_data_XXXXXX");
        ck_assert(mkdtemp(tmpdir_path) != NULL);
        atexit(rm_tmpdir);
    }
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir_path, name);
    return buf[k];
}

/* A minimal JSON reader for reference.json: strings (with \uXXXX), integer arrays. */
static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

static void put_utf8(char **o, unsigned cp) {
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80) *u++ = cp;
    else if (cp < 0x800) *u++ = 0xC0 | cp >> 6, *u++ = 0x80 | (cp & 63);
    else if (cp < 0x10000) *u++ = 0xE0 | cp >> 12, *u++ = 0x80 | (cp >> 6 & 63), *u++ = 0x80 | (cp & 63);
    else *u++ = 0xF0 | cp >> 18, *u++ = 0x80 | (cp >> 12 & 63), *u++ = 0x80 | (cp >> 6 & 63), *u++ = 0x80 | (cp & 63);
    *o = (char *)u;
}

static const char *json_str(const char *p, char *out) {
    p = ws(p);
    ck_assert(*p == '"');
    p++;
    while (*p != '"') {
        if (*p != '\\') {
            *out++ = *p++;
            continue;
        }
        p++;
        char e = *p++;
        if (e == 'n') *out++ = '\n';
        else if (e == 't') *out++ = '\t';
        else if (e == 'r') *out++ = '\r';
        else if (e == 'u') {
            unsigned cp = (unsigned)strtoul((char[]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                unsigned lo = (unsigned)strtoul((char[]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            put_utf8(&out, cp);
        } else *out++ = e;
    }
    *out = 0;
    return p + 1;
}

static const char *json_ints(const char *p, int32_t *v, int *n) {
    p = ws(p);
    ck_assert(*p == '[');
    p++;
    *n = 0;
    for (;;) {
        p = ws(p);
        if (*p == ']') return p + 1;
        char *end;
        v[(*n)++] = (int32_t)strtol(p, &end, 10);
        p = ws(end);
        if (*p == ',') p++;
    }
}

static const char *json_key(const char *json, const char *key) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    ck_assert_msg(p != NULL, "reference.json has no %s", key);
    p = ws(p + strlen(pat));
    ck_assert(*p == ':');
    return p + 1;
}

static nb_tokenizer *tok512(void) {
    nb_tokenizer *t = NULL;
    nb_status s = nb_tokenizer_llama2c_load(TOK512, 512, &t);
    ck_assert_msg(s == NB_OK, "%s", nb_errmsg());
    return t;
}

static void roundtrip(const nb_tokenizer *t, const char *text, int bos) {
    int32_t *ids;
    int64_t n;
    ck_assert_msg(nb_tokenizer_encode(t, text, strlen(text), bos, 0, &ids, &n) == NB_OK, "%s", nb_errmsg());
    char *back;
    ck_assert(nb_tokenizer_decode(t, ids, n, &back) == NB_OK);
    ck_assert_str_eq(back, text);
    nb_free(back);
    nb_free(ids);
}

/* ---- tokenizers ---- */

START_TEST(test_byte_roundtrip) {
    nb_tokenizer *t;
    ck_assert(nb_tokenizer_byte(&t) == NB_OK);
    ck_assert_int_eq(nb_tokenizer_vocab(t), 258);
    ck_assert_int_eq(nb_tokenizer_bos(t), 256);
    const char *s = "h\xc3\xa9llo \xe2\x80\x94 \xf0\x9f\x99\x82\x01\xff";
    int32_t *ids;
    int64_t n;
    ck_assert(nb_tokenizer_encode(t, s, strlen(s), 1, 1, &ids, &n) == NB_OK);
    ck_assert_int_eq(n, (int64_t)strlen(s) + 2);
    ck_assert_int_eq(ids[0], 256);
    ck_assert_int_eq(ids[2], 0xc3);
    ck_assert_int_eq(ids[n - 1], 257);
    char *back;
    ck_assert(nb_tokenizer_decode(t, ids, n, &back) == NB_OK);
    ck_assert_str_eq(back, s);
    nb_free(back);
    nb_free(ids);
    nb_tokenizer_free(t);
}
END_TEST

START_TEST(test_char_vocab_and_roundtrip) {
    const char *corpus = "ba\xc3\xa9\xe2\x80\x94 a\xf0\x9f\x99\x82 b\xc3\xa9";
    nb_tokenizer *t;
    ck_assert(nb_tokenizer_char_build(corpus, strlen(corpus), &t) == NB_OK);
    /* distinct: ' ', 'a', 'b', e-acute, em dash, emoji -> sorted by code point */
    ck_assert_int_eq(nb_tokenizer_vocab(t), 6);
    ck_assert_int_eq(nb_tokenizer_bos(t), -1);
    const char *want[] = {" ", "a", "b", "\xc3\xa9", "\xe2\x80\x94", "\xf0\x9f\x99\x82"};
    for (int i = 0; i < 6; i++) {
        size_t len;
        const char *p = nb_tokenizer_token(t, i, &len, NULL);
        ck_assert_uint_eq(len, strlen(want[i]));
        ck_assert(!memcmp(p, want[i], len));
    }
    roundtrip(t, corpus, 1);
    int32_t *ids;
    int64_t n;
    ck_assert(nb_tokenizer_encode(t, "ab\xc3\xa9", 4, 0, 0, &ids, &n) == NB_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(ids[2], 3);
    nb_free(ids);
    /* a character outside the vocabulary is an error naming it */
    ck_assert_int_eq(nb_tokenizer_encode(t, "abz", 3, 0, 0, &ids, &n), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "'z' at byte 2"));
    nb_tokenizer_free(t);
    /* invalid UTF-8 bytes are characters of their own */
    ck_assert(nb_tokenizer_char_build("a\xff\xc3", 3, &t) == NB_OK);
    ck_assert_int_eq(nb_tokenizer_vocab(t), 3);
    roundtrip(t, "\xc3\xff" "a", 0);
    nb_tokenizer_free(t);
    ck_assert_int_eq(nb_tokenizer_char_build("", 0, &t), NB_EINVAL);
}
END_TEST

START_TEST(test_llama2c_reference_encodings) {
    nb_tokenizer *t = tok512();
    ck_assert_int_eq(nb_tokenizer_vocab(t), 512);
    ck_assert_int_eq(nb_tokenizer_bos(t), 1);
    ck_assert_int_eq(nb_tokenizer_eos(t), 2);
    ck_assert_int_eq(nb_tokenizer_max_token_len(t), 7);
    char *json = slurp(REFJSON, NULL);
    const char *p = ws(json_key(json, "encodings"));
    ck_assert(*p == '{');
    p++;
    int checked = 0;
    char key[1024];
    int32_t want[1024];
    for (;;) {
        p = ws(p);
        if (*p == ',') p = ws(p + 1);
        if (*p == '}') break;
        int nw;
        p = json_str(p, key);
        p = ws(p);
        ck_assert(*p == ':');
        p = json_ints(p + 1, want, &nw);
        int32_t *ids;
        int64_t n;
        ck_assert(nb_tokenizer_encode(t, key, strlen(key), 1, 0, &ids, &n) == NB_OK);
        ck_assert_msg(n == nw, "'%s': %lld tokens, reference has %d", key, (long long)n, nw);
        for (int i = 0; i < nw; i++) ck_assert_msg(ids[i] == want[i], "'%s': token %d is %d, want %d", key, i, ids[i], want[i]);
        /* decode gives the text back (the dummy-prefix space is dropped after BOS) */
        char *back;
        ck_assert(nb_tokenizer_decode(t, ids, n, &back) == NB_OK);
        ck_assert_str_eq(back, key);
        nb_free(back);
        nb_free(ids);
        checked++;
    }
    ck_assert_int_eq(checked, 8);
    /* decoding BOS + prompt + the reference's greedy tokens gives greedy_text */
    int32_t seq[512];
    int np, ng;
    json_ints(json_key(json, "greedy_prompt_tokens"), seq, &np);
    json_ints(json_key(json, "greedy_tokens"), seq + np, &ng);
    ck_assert_int_eq(np, 5);
    ck_assert_int_eq(ng, 36);
    json_str(json_key(json, "greedy_text"), key);
    char *text;
    ck_assert(nb_tokenizer_decode(t, seq, np + ng, &text) == NB_OK);
    ck_assert_str_eq(text, key);
    nb_free(text);
    free(json);
    nb_tokenizer_free(t);
}
END_TEST

START_TEST(test_llama2c_edge_cases) {
    nb_tokenizer *t = tok512();
    int32_t *ids;
    int64_t n;
    /* empty text: no dummy prefix, only BOS/EOS */
    ck_assert(nb_tokenizer_encode(t, "", 0, 1, 1, &ids, &n) == NB_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], 2);
    nb_free(ids);
    /* byte fallback: a character missing from the vocabulary becomes <0xXX> ids = byte + 3 */
    const char *s = "\xf0\x9f\x99\x82";
    ck_assert(nb_tokenizer_encode(t, s, 4, 0, 0, &ids, &n) == NB_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(ids[0], 410); /* dummy prefix " " */
    for (int i = 0; i < 4; i++) ck_assert_int_eq(ids[1 + i], (unsigned char)s[i] + 3);
    nb_free(ids);
    roundtrip(t, " x\xf0\x9f\x99\x82 \xe4\xb8\xad\xe6\x96\x87 caf\xc3\xa9\n\ttab\x01", 1);
    roundtrip(t, "Once upon a time", 1);
    /* without BOS the dummy prefix stays */
    ck_assert(nb_tokenizer_encode(t, "Once", 4, 0, 0, &ids, &n) == NB_OK);
    char *back;
    ck_assert(nb_tokenizer_decode(t, ids, n, &back) == NB_OK);
    ck_assert_str_eq(back, " Once");
    nb_free(back);
    nb_free(ids);
    /* stray continuation bytes and a NUL byte go through byte fallback too */
    const char raw[] = {'a', (char)0x80, (char)0x80, 0, 'b', (char)0xc3};
    ck_assert(nb_tokenizer_encode(t, raw, sizeof raw, 0, 0, &ids, &n) == NB_OK);
    ck_assert(nb_tokenizer_decode(t, ids, n, &back) == NB_OK);
    ck_assert(!memcmp(back, " ", 1) && !memcmp(back + 1, raw, 3));
    nb_free(back);
    nb_free(ids);
    /* pieces: leading space stripped only right after BOS; <0x41> prints as 'A' */
    size_t len;
    const char *p = nb_tokenizer_piece(t, 1, 403, &len);
    ck_assert_int_eq((int)len, 4);
    ck_assert(!memcmp(p, "Once", 4));
    p = nb_tokenizer_piece(t, 5, 403, &len);
    ck_assert(len == 5 && !memcmp(p, " Once", 5));
    p = nb_tokenizer_piece(t, 5, 'A' + 3, &len);
    ck_assert(len == 1 && p[0] == 'A');
    nb_tokenizer_piece(t, 5, 1, &len);
    ck_assert_int_eq((int)len, 0);
    ids = (int32_t[]){1, 600};
    ck_assert_int_eq(nb_tokenizer_decode(t, ids, 2, &back), NB_EINVAL);
    nb_tokenizer_free(t);
}
END_TEST

/* The heap-based merge must equal run.c's quadratic loop: compare on random text. */
static void naive_merge(const nb_tokenizer *t, int32_t *ids, int64_t *n) {
    char buf[64];
    for (;;) {
        float best = -1e10f;
        int bi = -1, bid = -1;
        for (int64_t i = 0; i + 1 < *n; i++) {
            size_t la, lb;
            const char *a = nb_tokenizer_token(t, ids[i], &la, NULL);
            const char *b = nb_tokenizer_token(t, ids[i + 1], &lb, NULL);
            if (la + lb >= sizeof buf) continue;
            memcpy(buf, a, la);
            memcpy(buf + la, b, lb);
            for (int id = 0; id < nb_tokenizer_vocab(t); id++) {
                size_t l;
                float sc;
                const char *p = nb_tokenizer_token(t, id, &l, &sc);
                if (l == la + lb && !memcmp(p, buf, l)) {
                    if (sc > best) best = sc, bi = (int)i, bid = id;
                    break;
                }
            }
        }
        if (bi < 0) return;
        ids[bi] = bid;
        memmove(ids + bi + 1, ids + bi + 2, sizeof(int32_t) * (size_t)(*n - bi - 2));
        (*n)--;
    }
}

START_TEST(test_llama2c_merge_matches_naive) {
    nb_tokenizer *t = tok512();
    size_t len;
    char *text = slurp(NB_TEST_DATA("tinystories/train_sample_heldout.txt"), &len);
    nb_rng r = nb_rng_make(7, 1);
    for (int trial = 0; trial < 40; trial++) {
        size_t at = nb_rng_below(&r, len - 200), n = 1 + nb_rng_below(&r, 150);
        int32_t *ids, *raw = malloc(sizeof(int32_t) * (n + 2));
        int64_t k, nraw = 0;
        ck_assert(nb_tokenizer_encode(t, text + at, n, 1, 0, &ids, &k) == NB_OK);
        /* unmerged sequence: BOS, " ", then one token per byte/character as run.c starts */
        raw[nraw++] = 1;
        raw[nraw++] = 410;
        for (size_t i = 0; i < n;) {
            size_t cl = 1;
            while (i + cl < n && ((unsigned char)text[at + i + cl] & 0xC0) == 0x80 && cl < 4) cl++;
            int found = -1;
            for (int id = 0; id < 512 && found < 0; id++) {
                size_t l;
                const char *p = nb_tokenizer_token(t, id, &l, NULL);
                if (l == cl && !memcmp(p, text + at + i, cl)) found = id;
            }
            if (found >= 0) raw[nraw++] = found;
            else
                for (size_t j = 0; j < cl; j++) raw[nraw++] = (unsigned char)text[at + i + j] + 3;
            i += cl;
        }
        naive_merge(t, raw, &nraw);
        ck_assert_int_eq(k, nraw);
        for (int64_t i = 0; i < k; i++) ck_assert_int_eq(ids[i], raw[i]);
        nb_free(ids);
        free(raw);
    }
    free(text);
    nb_tokenizer_free(t);
}
END_TEST

START_TEST(test_llama2c_bad_files) {
    size_t len;
    char *good = slurp(TOK512, &len);
    nb_tokenizer *t = NULL;
    const char *path = tmp("bad.bin");
    /* truncated in the middle of a record */
    spit(path, good, 3000);
    ck_assert_int_eq(nb_tokenizer_llama2c_load(path, 0, &t), NB_EFORMAT);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(nb_errmsg(), path) && strstr(nb_errmsg(), "record"), "%s", nb_errmsg());
    /* asking for more records than the file holds */
    ck_assert_int_eq(nb_tokenizer_llama2c_load(TOK512, 513, &t), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "record 512"));
    /* vocab of -5 */
    ck_assert_int_eq(nb_tokenizer_llama2c_load(TOK512, -5, &t), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "-5"));
    /* a length of 10^9 in record 3 */
    char *bad = malloc(len);
    memcpy(bad, good, len);
    size_t pos = 4;
    for (int i = 0; i < 3; i++) {
        int32_t l;
        memcpy(&l, bad + pos + 4, 4);
        pos += 8 + (size_t)l;
    }
    int32_t huge = 1000000000, neg = -5;
    memcpy(bad + pos + 4, &huge, 4);
    spit(path, bad, len);
    ck_assert_int_eq(nb_tokenizer_llama2c_load(path, 0, &t), NB_EFORMAT);
    ck_assert_msg(strstr(nb_errmsg(), "record 3") && strstr(nb_errmsg(), "1000000000"), "%s", nb_errmsg());
    memcpy(bad + pos + 4, &neg, 4);
    ck_assert_int_eq(nb_tokenizer_llama2c_load_mem(bad, len, "mem", 0, &t), NB_EFORMAT);
    /* absurd header, tiny files, missing file */
    memcpy(bad, good, len);
    memcpy(bad, &huge, 4);
    ck_assert_int_eq(nb_tokenizer_llama2c_load_mem(bad, len, "mem", 0, &t), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "max_token_length"));
    ck_assert_int_eq(nb_tokenizer_llama2c_load_mem(good, 2, "mem", 0, &t), NB_EFORMAT);
    ck_assert_int_eq(nb_tokenizer_llama2c_load_mem(good, 4, "mem", 0, &t), NB_EFORMAT);
    ck_assert_int_eq(nb_tokenizer_llama2c_load("/nonexistent/tok.bin", 0, &t), NB_EIO);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "/nonexistent/tok.bin"));
    /* every truncation fails cleanly or (at a record boundary) loads fewer tokens */
    for (size_t cut = 0; cut < len; cut += 37) {
        nb_status s = nb_tokenizer_llama2c_load_mem(good, cut, "cut", 0, &t);
        if (s == NB_OK) {
            ck_assert_int_lt(nb_tokenizer_vocab(t), 512);
            nb_tokenizer_free(t);
        } else {
            ck_assert_int_eq(s, NB_EFORMAT);
        }
    }
    ck_assert_int_eq(nb_tokenizer_from_spec("bpe", NULL, 0, &t), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "unknown tokenizer 'bpe'"));
    ck_assert_int_eq(nb_tokenizer_from_spec("char", NULL, 0, &t), NB_EINVAL);
    free(bad);
    free(good);
}
END_TEST

/* A hand-made vocabulary: merges by score, and no byte fallback ids (V = 10). */
START_TEST(test_llama2c_tiny_vocab) {
    struct { const char *p; float s; } recs[] = {{"<unk>", 0}, {"<s>", 0}, {"</s>", 0}, {" ", -1}, {"a", -2},
                                                 {"b", -3}, {"ab", 5}, {"c", -4}, {"abc", 7}, {" ab", 6}};
    unsigned char buf[256];
    size_t n = 0;
    int32_t maxlen = 3;
    memcpy(buf, &maxlen, 4);
    n = 4;
    for (int i = 0; i < 10; i++) {
        int32_t len = (int32_t)strlen(recs[i].p);
        memcpy(buf + n, &recs[i].s, 4);
        memcpy(buf + n + 4, &len, 4);
        memcpy(buf + n + 8, recs[i].p, (size_t)len);
        n += 8 + (size_t)len;
    }
    nb_tokenizer *t;
    ck_assert(nb_tokenizer_llama2c_load_mem(buf, n, "tiny", 0, &t) == NB_OK);
    ck_assert_int_eq(nb_tokenizer_vocab(t), 10);
    ck_assert_int_eq(nb_tokenizer_max_token_len(t), 5); /* the real longest piece, not the header's 3 */
    int32_t *ids;
    int64_t k;
    /* " " a b c -> ab (5) -> then abc (7) beats " ab" (6) */
    ck_assert(nb_tokenizer_encode(t, "abc", 3, 1, 0, &ids, &k) == NB_OK);
    ck_assert_int_eq(k, 3);
    ck_assert(ids[0] == 1 && ids[1] == 3 && ids[2] == 8);
    nb_free(ids);
    /* " " a b -> ab -> " ab" */
    ck_assert(nb_tokenizer_encode(t, "ab", 2, 0, 0, &ids, &k) == NB_OK);
    ck_assert(k == 1 && ids[0] == 9);
    nb_free(ids);
    /* no <0xXX> ids in a vocabulary of 10: an unknown character is an error, not a wild id */
    ck_assert_int_eq(nb_tokenizer_encode(t, "abz", 3, 0, 0, &ids, &k), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "0x7A") && strstr(nb_errmsg(), "byte fallback"), "%s", nb_errmsg());
    nb_tokenizer_free(t);
}
END_TEST

/* Every allocation failing in turn: a clean NB_ENOMEM, never a crash or a leak (ASan run). */
START_TEST(test_tokenizer_alloc_failures) {
    size_t len;
    char *bin = slurp(TOK512, &len);
    const char *text = "Once upon a time, na\xc3\xafve \xf0\x9f\x99\x82.\n<|endoftext|>\nThe end.";
    int ok = 0;
    for (long k = 0; k < 60; k++) {
        nb_alloc_fail_after(k);
        nb_tokenizer *t = NULL;
        nb_tokens toks = {0};
        nb_status s = nb_tokenizer_llama2c_load_mem(bin, len, "tok", 0, &t);
        if (s == NB_OK) s = nb_text_tokenize(t, text, strlen(text), &toks);
        char *back = NULL;
        if (s == NB_OK) s = nb_tokenizer_decode(t, toks.ids, toks.n, &back);
        nb_alloc_fail_after(-1);
        ck_assert_msg(s == NB_OK || s == NB_ENOMEM, "k=%ld: %s", k, nb_errmsg());
        ok += s == NB_OK;
        nb_free(back);
        nb_tokens_free(&toks);
        nb_tokenizer_free(t);
    }
    ck_assert_int_gt(ok, 0);
    free(bin);
}
END_TEST

START_TEST(test_tokenizer_h5_roundtrip) {
    nb_tokenizer *toks[3];
    ck_assert(nb_tokenizer_byte(&toks[0]) == NB_OK);
    ck_assert(nb_tokenizer_char_build("hello w\xc3\xb6rld", 12, &toks[1]) == NB_OK);
    toks[2] = tok512();
    const char *path = tmp("tok.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(f >= 0);
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert_msg(nb_tokenizer_save_h5(toks[i], g) == NB_OK, "%s", nb_errmsg());
        H5Gclose(g);
    }
    H5Fclose(f);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i);
        hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
        nb_tokenizer *back;
        ck_assert_msg(nb_tokenizer_load_h5(g, &back) == NB_OK, "%s", nb_errmsg());
        ck_assert(nb_tokenizer_equal(back, toks[i]));
        ck_assert(i == 0 || !nb_tokenizer_equal(back, toks[0]));
        nb_tokenizer_free(back);
        H5Gclose(g);
    }
    for (int i = 0; i < 3; i++) nb_tokenizer_free(toks[i]);
    H5Fclose(f);
    /* a corrupted group: offsets past the end */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "t1", H5P_DEFAULT);
    hid_t d = H5Dopen2(g, "offsets", H5P_DEFAULT);
    int64_t off[11];
    H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
    off[3] = 1000;
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off);
    H5Dclose(d);
    nb_tokenizer *back = NULL;
    ck_assert_int_eq(nb_tokenizer_load_h5(g, &back), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "offsets"));
    H5Gclose(g);
    H5Fclose(f);
}
END_TEST


/* ---- datasets ---- */

START_TEST(test_document_rules) {
    nb_tokenizer *t;
    ck_assert(nb_tokenizer_byte(&t) == NB_OK);
    nb_tokens k;
    const char *s = "ab\n<|endoftext|>\n\n  c \n<|endoftext|>\r\n<|endoftext|>\nd\n<|endoftext|>\n";
    ck_assert(nb_text_tokenize(t, s, strlen(s), &k) == NB_OK);
    int32_t want[] = {256, 'a', 'b', 256, 'c', 256, 'd'};
    ck_assert_int_eq(k.n, 7);
    ck_assert_int_eq(k.n_docs, 3);
    for (int i = 0; i < 7; i++) ck_assert_int_eq(k.ids[i], want[i]);
    nb_tokens_free(&k);
    /* no separator: one document, kept as is (whitespace included) */
    ck_assert(nb_text_tokenize(t, " x\n", 3, &k) == NB_OK);
    ck_assert_int_eq(k.n, 4);
    ck_assert_int_eq(k.ids[1], ' ');
    ck_assert_int_eq(k.ids[3], '\n');
    nb_tokens_free(&k);
    /* a separator inside a line is text */
    ck_assert(nb_text_tokenize(t, "a <|endoftext|>", 15, &k) == NB_OK);
    ck_assert_int_eq(k.n, 16);
    nb_tokens_free(&k);
    ck_assert_int_eq(nb_text_tokenize(t, "", 0, &k), NB_EINVAL);
    ck_assert_int_eq(nb_text_tokenize(t, "<|endoftext|>\n", 14, &k), NB_EINVAL);
    nb_tokenizer_free(t);
}
END_TEST

/* TinyStories heldout with the stories260K tokenizer: one BOS per story, each story encoded on
   its own exactly as nb_tokenizer_encode does. */
START_TEST(test_tinystories_documents) {
    nb_tokenizer *t = tok512();
    nb_tokens k;
    ck_assert(nb_text_tokenize_file(t, NB_TEST_DATA("tinystories/train_sample_heldout.txt"), &k) == NB_OK);
    ck_assert_int_eq(k.n_docs, 231);
    int64_t bos = 0;
    for (int64_t i = 0; i < k.n; i++) bos += k.ids[i] == 1;
    ck_assert_int_eq(bos, 231);
    ck_assert_int_eq(k.n, 104114); /* measured; a change here means the tokenization changed */
    size_t len;
    char *text = slurp(NB_TEST_DATA("tinystories/train_sample_heldout.txt"), &len);
    char *end = strstr(text, "\n<|endoftext|>\n");
    int32_t *ids;
    int64_t n;
    ck_assert(nb_tokenizer_encode(t, text, (size_t)(end - text), 1, 0, &ids, &n) == NB_OK);
    for (int64_t i = 0; i < n; i++) ck_assert_int_eq(k.ids[i], ids[i]);
    ck_assert_int_eq(k.ids[n], 1);
    nb_free(ids);
    free(text);
    nb_tokens_free(&k);
    nb_tokenizer_free(t);
}
END_TEST

static void write_stories(const char *path, int first, int count) {
    FILE *f = fopen(path, "w");
    for (int i = first; i < first + count; i++) {
        fprintf(f, "Story %d:", i);
        for (int j = 0; j < 5 + i % 7; j++) fprintf(f, " w%d", (i * 31 + j) % 97);
        fprintf(f, "\n<|endoftext|>\n");
    }
    fclose(f);
}

START_TEST(test_prepare_open_windows) {
    const char *a = tmp("a.txt"), *b = tmp("b.txt");
    write_stories(a, 0, 30);
    write_stories(b, 30, 20);
    char out[512];
    snprintf(out, sizeof out, "%s", tmp("ds.h5"));
    const char *train[] = {a, b};
    nb_prepare_opts o = {.train = train, .n_train = 2, .val_fraction = 0.25, .tokenizer = "char"};
    nb_prepare_stats st;
    ck_assert_msg(nb_dataset_prepare(&o, out, &st) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(st.train_docs + st.val_docs, 50); /* documents, though char has no BOS to mark them */
    nb_tokens tr, va;
    ck_assert_msg(nb_dataset_open_split(out, "train", &tr) == NB_OK, "%s", nb_errmsg());
    ck_assert(nb_dataset_open_split(out, "val", &va) == NB_OK);
    ck_assert_int_eq(tr.n, st.train_tokens);
    ck_assert_int_eq(va.n, st.val_tokens);
    nb_tokenizer *t;
    ck_assert(nb_dataset_tokenizer(out, &t) == NB_OK);
    ck_assert_int_eq(nb_tokenizer_kind(t), NB_TOK_CHAR);
    ck_assert_int_eq(nb_tokenizer_vocab(t), st.vocab);
    char *txt;
    ck_assert(nb_tokenizer_decode(t, tr.ids, 8, &txt) == NB_OK);
    ck_assert_str_eq(txt, "Story 0:");
    nb_free(txt);
    nb_tokenizer_free(t);
    nb_tokens_free(&tr);
    nb_tokens_free(&va);

    /* byte tokenizer (has BOS): the val split starts at a document boundary, near 25% */
    o.tokenizer = "byte";
    ck_assert(nb_dataset_prepare(&o, out, &st) == NB_OK);
    ck_assert_int_eq(st.train_docs + st.val_docs, 50);
    ck_assert(nb_dataset_open_split(out, "train", &tr) == NB_OK);
    ck_assert(nb_dataset_open_split(out, "val", &va) == NB_OK);
    ck_assert_int_eq(va.ids[0], 256);
    ck_assert_int_eq(tr.ids[0], 256);
    double f = (double)va.n / (double)(va.n + tr.n);
    ck_assert_msg(f > 0.2 && f < 0.3, "val fraction %f", f);
    ck_assert_int_eq(va.n_docs, st.val_docs);

    /* training batches: a pure function of (seed, index), y is x shifted by one */
    enum { B = 4, T = 16 };
    int32_t x1[B * T], y1[B * T], x2[B * T], y2[B * T];
    ck_assert(nb_tokens_batch(&tr, 42, 7, B, T, x1, y1) == NB_OK);
    ck_assert(nb_tokens_batch(&tr, 42, 3, B, T, x2, y2) == NB_OK); /* another index in between */
    ck_assert(nb_tokens_batch(&tr, 42, 7, B, T, x2, y2) == NB_OK);
    ck_assert(!memcmp(x1, x2, sizeof x1) && !memcmp(y1, y2, sizeof y1));
    ck_assert(nb_tokens_batch(&tr, 43, 7, B, T, x2, y2) == NB_OK);
    ck_assert(memcmp(x1, x2, sizeof x1) != 0);
    ck_assert(nb_tokens_batch(&tr, 42, 8, B, T, x2, y2) == NB_OK);
    ck_assert(memcmp(x1, x2, sizeof x1) != 0);
    for (int bb = 0; bb < B; bb++) {
        /* find the window in the split and check it is contiguous */
        int found = 0;
        for (int64_t s = 0; s + T < tr.n && !found; s++)
            found = !memcmp(tr.ids + s, x1 + bb * T, sizeof(int32_t) * T) &&
                    !memcmp(tr.ids + s + 1, y1 + bb * T, sizeof(int32_t) * T);
        ck_assert(found);
    }
    /* every start position is reachable and starts stay in range (tiny split: n = T + 3) */
    nb_tokens tiny = {tr.ids, T + 3, 0};
    int seen[3] = {0};
    for (int64_t i = 0; i < 200; i++) {
        ck_assert(nb_tokens_batch(&tiny, 1, i, 1, T, x2, y2) == NB_OK);
        for (int s = 0; s < 3; s++) seen[s] |= !memcmp(x2, tr.ids + s, sizeof(int32_t) * T) && y2[T - 1] == tr.ids[s + T];
    }
    ck_assert(seen[0] && seen[1] && seen[2]);
    tiny.n = T;
    ck_assert_int_eq(nb_tokens_batch(&tiny, 1, 0, 1, T, x2, y2), NB_EINVAL);

    /* evaluation windows predict every token but the first exactly once */
    for (int TT = 1; TT <= 40; TT += 13) {
        int64_t nw = nb_tokens_eval_count(&va, TT);
        unsigned char *hit = calloc((size_t)va.n, 1);
        for (int64_t i = 0; i < nw; i++) {
            const int32_t *x, *y;
            int len = nb_tokens_eval_window(&va, TT, i, &x, &y);
            ck_assert(len >= 1 && len <= TT);
            ck_assert(y == x + 1);
            for (int j = 0; j < len; j++) hit[(y - va.ids) + j]++;
        }
        ck_assert_int_eq(hit[0], 0);
        for (int64_t i = 1; i < va.n; i++) ck_assert_int_eq(hit[i], 1);
        const int32_t *x, *y;
        ck_assert_int_eq(nb_tokens_eval_window(&va, TT, nw, &x, &y), 0);
        free(hit);
    }
    nb_tokens_free(&tr);
    nb_tokens_free(&va);

    /* a separate val file; eval loading checks the tokenizer */
    o.n_train = 1;
    o.val = b;
    ck_assert(nb_dataset_prepare(&o, out, &st) == NB_OK);
    ck_assert_int_eq(st.val_docs, 20);
    ck_assert_int_eq(st.train_docs, 30);
    nb_tokenizer *byte, *l2 = tok512();
    ck_assert(nb_tokenizer_byte(&byte) == NB_OK);
    nb_tokens k;
    ck_assert(nb_tokens_load(out, byte, NULL, &k) == NB_OK);
    ck_assert_int_eq(k.n, st.val_tokens);
    nb_tokens_free(&k);
    ck_assert_int_eq(nb_tokens_load(out, l2, NULL, &k), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "different tokenizer"));
    ck_assert(nb_tokens_load(b, byte, NULL, &k) == NB_OK);
    ck_assert_int_eq(k.n, st.val_tokens);
    nb_tokens_free(&k);
    nb_tokenizer_free(byte);
    nb_tokenizer_free(l2);

    /* bad inputs */
    o.val = NULL;
    train[0] = "/nonexistent.txt";
    ck_assert_int_eq(nb_dataset_prepare(&o, out, &st), NB_EIO);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "/nonexistent.txt"));
    const char *e = tmp("empty.txt");
    spit(e, "", 0);
    train[0] = e;
    ck_assert_int_eq(nb_dataset_prepare(&o, out, &st), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "empty"));
    train[0] = a;
    o.tokenizer = "sentencepiece";
    ck_assert_int_eq(nb_dataset_prepare(&o, out, &st), NB_EINVAL);
    o.tokenizer = "byte";
    o.val_fraction = 1.5;
    ck_assert_int_eq(nb_dataset_prepare(&o, out, &st), NB_EINVAL);
}
END_TEST

START_TEST(test_dataset_cache_check) {
    const char *a = tmp("d.txt");
    write_stories(a, 0, 10);
    char out[512];
    snprintf(out, sizeof out, "%s", tmp("cache.h5"));
    const char *train[] = {a};
    nb_prepare_opts o = {.train = train, .n_train = 1, .val_fraction = 0.2, .tokenizer = "byte"};
    ck_assert(!nb_dataset_is_current(out, &o));
    ck_assert(nb_dataset_prepare(&o, out, NULL) == NB_OK);
    ck_assert(nb_dataset_is_current(out, &o));
    o.val_fraction = 0.3;
    ck_assert(!nb_dataset_is_current(out, &o));
    o.val_fraction = 0.2;
    o.tokenizer = "char";
    ck_assert(!nb_dataset_is_current(out, &o));
    o.tokenizer = NULL;
    nb_tokenizer *byte;
    ck_assert(nb_tokenizer_byte(&byte) == NB_OK);
    o.tok = byte;
    ck_assert(!nb_dataset_is_current(out, &o)); /* prepared from a spec, not a given tokenizer */
    ck_assert(nb_dataset_prepare(&o, out, NULL) == NB_OK);
    ck_assert(nb_dataset_is_current(out, &o));
    nb_tokenizer *l2 = tok512();
    o.tok = l2;
    ck_assert(!nb_dataset_is_current(out, &o));
    o.tok = byte;
    write_stories(a, 0, 11); /* the source changed */
    ck_assert(!nb_dataset_is_current(out, &o));
    nb_tokenizer_free(byte);
    nb_tokenizer_free(l2);
}
END_TEST

START_TEST(test_dataset_refuses_bad_files) {
    const char *a = tmp("c.txt");
    write_stories(a, 0, 10);
    char out[512];
    snprintf(out, sizeof out, "%s", tmp("bad.h5"));
    const char *train[] = {a};
    nb_prepare_opts o = {.train = train, .n_train = 1, .val_fraction = 0.2, .tokenizer = "byte"};
    ck_assert(nb_dataset_prepare(&o, out, NULL) == NB_OK);
    nb_tokens k;
    /* the stored length disagrees with the dataset */
    hid_t f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "train", H5P_DEFAULT);
    hid_t at = H5Aopen(d, "n_tokens", H5P_DEFAULT);
    int64_t n;
    H5Aread(at, H5T_NATIVE_INT64, &n);
    int64_t lie = n + 100;
    H5Awrite(at, H5T_NATIVE_INT64, &lie);
    H5Aclose(at);
    H5Dclose(d);
    H5Fclose(f);
    nb_status bs = nb_dataset_open_split(out, "train", &k);
    ck_assert_msg(bs == NB_EFORMAT, "%d %s", bs, nb_errmsg());
    ck_assert_msg(strstr(nb_errmsg(), out) && strstr(nb_errmsg(), "n_tokens"), "%s", nb_errmsg());
    ck_assert_ptr_null(k.ids);
    ck_assert(nb_dataset_open_split(out, "val", &k) == NB_OK);
    nb_tokens_free(&k);
    ck_assert_int_eq(nb_dataset_open_split(out, "test", &k), NB_EINVAL);
    /* out-of-vocabulary token */
    f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(1, (hsize_t[]){1}, NULL);
    hid_t dv = H5Dopen2(f, "val", H5P_DEFAULT);
    hid_t fs = H5Dget_space(dv);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, (hsize_t[]){2}, NULL, (hsize_t[]){1}, NULL);
    uint16_t v = 9999;
    H5Dwrite(dv, H5T_NATIVE_UINT16, sp, fs, H5P_DEFAULT, &v);
    H5Sclose(fs);
    H5Sclose(sp);
    H5Dclose(dv);
    H5Fclose(f);
    ck_assert_int_eq(nb_dataset_open_split(out, "val", &k), NB_EFORMAT);
    ck_assert_msg(strstr(nb_errmsg(), "token 2 is 9999"), "%s", nb_errmsg());
    /* not HDF5 at all / truncated / a foreign HDF5 file */
    ck_assert_int_eq(nb_dataset_open_split(a, "train", &k), NB_EFORMAT);
    size_t len;
    char *bytes = slurp(out, &len);
    const char *cut = tmp("cut.h5");
    spit(cut, bytes, len / 2);
    ck_assert_int_eq(nb_dataset_open_split(cut, "val", &k), NB_EFORMAT);
    free(bytes);
    f = H5Fcreate(cut, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    ck_assert_int_eq(nb_dataset_open_split(cut, "train", &k), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "not a nibble token dataset"));
    ck_assert_int_eq(nb_dataset_open_split("/nonexistent.h5", "train", &k), NB_EIO);
}
END_TEST

NB_SUITE("data") {
    tcase_add_test(tc, test_byte_roundtrip);
    tcase_add_test(tc, test_char_vocab_and_roundtrip);
    tcase_add_test(tc, test_llama2c_reference_encodings);
    tcase_add_test(tc, test_llama2c_edge_cases);
    tcase_add_test(tc, test_llama2c_merge_matches_naive);
    tcase_add_test(tc, test_llama2c_bad_files);
    tcase_add_test(tc, test_llama2c_tiny_vocab);
    tcase_add_test(tc, test_tokenizer_alloc_failures);
    tcase_add_test(tc, test_tokenizer_h5_roundtrip);
    tcase_add_test(tc, test_document_rules);
    tcase_add_test(tc, test_tinystories_documents);
    tcase_add_test(tc, test_prepare_open_windows);
    tcase_add_test(tc, test_dataset_cache_check);
    tcase_add_test(tc, test_dataset_refuses_bad_files);
}
