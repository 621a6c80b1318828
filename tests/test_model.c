/* test_model.c: the llama model (tape forward, decode, sampler), llama2.c import, checkpoints. */
#include "nbtest.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../train/import_llama2c.h"
#include "../train/model.h"

#define MODEL_BIN NB_TEST_DATA("stories260K/model.bin")
#define REFERENCE NB_TEST_DATA("stories260K/reference.json")

/* ---- helpers ---- */

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    b[n] = 0;
    fclose(f);
    if (len) *len = n;
    return b;
}

static void spit(const char *path, const void *data, long n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

/* Every number of the (possibly nested) JSON array after "key": into out (malloc'ed). */
static long json_numbers(const char *json, const char *key, double **out) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    ck_assert_msg(p != NULL, "reference.json has no %s", key);
    p = strchr(p + strlen(pat), '[');
    long n = 0, cap = 1024;
    double *v = malloc((size_t)cap * sizeof *v);
    int depth = 0;
    do {
        if (*p == '[') depth++, p++;
        else if (*p == ']') depth--, p++;
        else if (*p == ',' || *p == ' ' || *p == '\n') p++;
        else {
            char *end;
            double x = strtod(p, &end);
            ck_assert_msg(end != p, "bad number in %s", key);
            if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            v[n++] = x;
            p = end;
        }
    } while (depth > 0);
    *out = v;
    return n;
}

static void tmp_path(char *buf, size_t n, const char *name) {
    const char *d = getenv("TMPDIR");
    snprintf(buf, n, "%s/nb_test_model_%d_%s", d ? d : "/tmp", (int)getpid(), name);
}

/* ---- llama2.c import + decode against the reference ---- */

START_TEST(test_import_config) {
    nb_model m;
    ck_assert_int_eq(nb_llama2c_load(MODEL_BIN, &m), NB_OK);
    ck_assert_int_eq(m.cfg.dim, 64);
    ck_assert_int_eq(m.cfg.hidden_dim, 172);
    ck_assert_int_eq(m.cfg.n_layers, 5);
    ck_assert_int_eq(m.cfg.n_heads, 8);
    ck_assert_int_eq(m.cfg.n_kv_heads, 4);
    ck_assert_int_eq(m.cfg.vocab_size, 512);
    ck_assert_int_eq(m.cfg.seq_len, 512);
    ck_assert_int_eq(m.cfg.tied, 1);
    ck_assert_int_eq(m.params.n, 1 + 9 * 5 + 1);
    ck_assert_int_eq(nb_model_numel(&m), 264128 - 2 * 512 * 4);
    ck_assert_int_eq(nb_paramset_find(&m.params, "layers.4.ffn.w2"), m.layers[4].w2);
    ck_assert_int_eq(m.params.p[m.layers[0].wk].t.shape[0], 32);
    ck_assert_int_eq(m.params.p[m.layers[0].attn_norm].kind, NB_PARAM_NORM);
    ck_assert(m.params.p[m.tok_emb].wd_mult == 0.0f);
    ck_assert(m.params.p[m.layers[2].w1].wd_mult == 1.0f);
    nb_model_free(&m);
}
END_TEST

START_TEST(test_decode_matches_reference) {
    char *json = slurp(REFERENCE, NULL);
    ck_assert_ptr_nonnull(json);
    double *prompt, *ref;
    long T = json_numbers(json, "prompt_tokens", &prompt);
    long n = json_numbers(json, "logits", &ref);
    ck_assert_int_eq(n, T * 512);
    nb_model m;
    ck_assert_int_eq(nb_llama2c_load(MODEL_BIN, &m), NB_OK);
    nb_decoder d;
    ck_assert_int_eq(nb_decoder_init(&d, &m, 64), NB_OK);
    double maxdiff = 0;
    for (long t = 0; t < T; t++) {
        const float *lg;
        ck_assert_int_eq(nb_model_decode(&d, (int)prompt[t], (int)t, &lg), NB_OK);
        for (int v = 0; v < 512; v++) {
            double e = fabs(lg[v] - ref[t * 512 + v]);
            if (!(e <= maxdiff)) maxdiff = e;
        }
    }
    printf("decode vs reference.json logits: max abs diff %.3g over %ld x 512\n", maxdiff, T);
    ck_assert_msg(maxdiff < 1e-3, "max abs logit diff %g", maxdiff);
    nb_decoder_free(&d);
    nb_model_free(&m);
    free(prompt);
    free(ref);
    free(json);
}
END_TEST

START_TEST(test_greedy_matches_reference) {
    char *json = slurp(REFERENCE, NULL);
    double *prompt, *want;
    long P = json_numbers(json, "greedy_prompt_tokens", &prompt);
    long G = json_numbers(json, "greedy_tokens", &want);
    nb_model m;
    ck_assert_int_eq(nb_llama2c_load(MODEL_BIN, &m), NB_OK);
    nb_decoder d;
    ck_assert_int_eq(nb_decoder_init(&d, &m, (int)(P + G)), NB_OK);
    nb_sampler s;
    ck_assert_int_eq(nb_sampler_init(&s, 512, 0.0f, 0.9f, 1), NB_OK);
    const float *lg = NULL;
    int tok = 0;
    for (long i = 0; i < P + G - 1; i++) {
        int in = i < P ? (int)prompt[i] : tok;
        ck_assert_int_eq(nb_model_decode(&d, in, (int)i, &lg), NB_OK);
        if (i >= P - 1) {
            tok = nb_sampler_sample(&s, lg);
            ck_assert_msg(tok == (int)want[i - P + 1], "greedy token %ld: got %d, want %d", i - P + 1, tok,
                          (int)want[i - P + 1]);
        }
    }
    nb_sampler_free(&s);
    nb_decoder_free(&d);
    nb_model_free(&m);
    free(prompt);
    free(want);
    free(json);
}
END_TEST

START_TEST(test_sampler) {
    float logits[5] = {0.1f, 2.0f, 2.0f, -1.0f, 0.5f};
    nb_sampler s;
    ck_assert_int_eq(nb_sampler_init(&s, 5, 0.0f, 1.0f, 7), NB_OK);
    ck_assert_int_eq(nb_sampler_sample(&s, logits), 1); /* first of the tie */
    nb_sampler_free(&s);
    /* same seed -> same draws; top-p 0.5 keeps only the two best tokens */
    int a[50], b[50], counts[5] = {0};
    for (int rep = 0; rep < 2; rep++) {
        ck_assert_int_eq(nb_sampler_init(&s, 5, 1.0f, 0.5f, 42), NB_OK);
        for (int i = 0; i < 50; i++) (rep ? b : a)[i] = nb_sampler_sample(&s, logits);
        nb_sampler_free(&s);
    }
    for (int i = 0; i < 50; i++) {
        ck_assert_int_eq(a[i], b[i]);
        ck_assert(a[i] == 1 || a[i] == 2);
    }
    /* plain sampling at temperature 1 visits the other tokens too */
    ck_assert_int_eq(nb_sampler_init(&s, 5, 1.0f, 1.0f, 3), NB_OK);
    for (int i = 0; i < 2000; i++) counts[nb_sampler_sample(&s, logits)]++;
    nb_sampler_free(&s);
    for (int v = 0; v < 5; v++) ck_assert_int_gt(counts[v], 0);
    ck_assert_int_gt(counts[1], counts[4]);
    ck_assert_int_gt(counts[4], counts[3]);
    ck_assert_int_ne(nb_sampler_init(&s, 5, -1.0f, 1.0f, 3), NB_OK);
}
END_TEST

/* ---- llama2.c loader refuses bad files ---- */

static void expect_import_error(const char *path, const char *needle) {
    nb_model m;
    nb_status s = nb_llama2c_load(path, &m);
    ck_assert_int_ne(s, NB_OK);
    ck_assert_msg(strstr(nb_errmsg(), needle) != NULL, "message '%s' lacks '%s'", nb_errmsg(), needle);
    ck_assert_msg(strstr(nb_errmsg(), path) != NULL, "message '%s' does not name the file", nb_errmsg());
}

START_TEST(test_import_refuses_bad_files) {
    long n = 0;
    char *bin = slurp(MODEL_BIN, &n);
    char path[512];
    tmp_path(path, sizeof path, "bad.bin");
    /* truncated */
    spit(path, bin, n - 100);
    expect_import_error(path, "truncated");
    /* shorter than a header */
    spit(path, bin, 10);
    expect_import_error(path, "too short");
    /* vocab -5 (untied, 5 tokens): the size no longer fits */
    int32_t *h = (int32_t *)bin;
    h[5] = -5;
    spit(path, bin, n);
    expect_import_error(path, "vocab_size -5");
    h[5] = 512;
    /* absurd sizes are refused from the header alone */
    h[0] = 1 << 30;
    spit(path, bin, n);
    expect_import_error(path, "dim");
    h[0] = 64;
    h[3] = 7; /* heads do not divide dim */
    spit(path, bin, n);
    expect_import_error(path, "n_heads = 7 does not divide dim");
    h[3] = 8;
    h[4] = 3;
    spit(path, bin, n);
    expect_import_error(path, "n_kv_heads");
    h[4] = 4;
    h[2] = -1;
    spit(path, bin, n);
    expect_import_error(path, "n_layers");
    h[2] = 5;
    /* missing file */
    unlink(path);
    nb_model m;
    ck_assert_int_eq(nb_llama2c_load(path, &m), NB_EIO);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), path));
    free(bin);
}
END_TEST

NB_SUITE("model") {
    tcase_add_test(tc, test_import_config);
    tcase_add_test(tc, test_decode_matches_reference);
    tcase_add_test(tc, test_greedy_matches_reference);
    tcase_add_test(tc, test_sampler);
    tcase_add_test(tc, test_import_refuses_bad_files);
}
