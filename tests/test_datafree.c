/* test_datafree.c: data-free distillation: teacher-generated text (deterministic, independent of
   the thread count, greedy prefix = argmax, random starts), the cached dataset (reuse, settings
   change), and the recipe keys' validation messages (file:line). */
#include "nbtest.h"

#include <stdio.h>
#include <unistd.h>

#include "../core/simd.h"
#include "../data/dataset.h"
#include "../train/datafree.h"
#include "../train/import_llama2c.h"
#include "../train/model.h"
#include "../train/recipe.h"

#define MODEL_BIN NB_TEST_DATA("stories260K/model.bin")
#define TOK_BIN NB_TEST_DATA("stories260K/tok512.bin")

typedef struct fixture {
    nb_model m;
    nb_tokenizer *tok;
} fixture;

static void fx_init(fixture *f) {
    memset(f, 0, sizeof *f);
    ck_assert_int_eq(nb_llama2c_load(MODEL_BIN, &f->m), NB_OK);
    ck_assert_int_eq(nb_tokenizer_llama2c_load(TOK_BIN, 0, &f->tok), NB_OK);
}

static void fx_free(fixture *f) {
    nb_model_free(&f->m);
    nb_tokenizer_free(f->tok);
}

static nb_datafree_opts opts(int n_seq, int len) {
    nb_datafree_opts o;
    memset(&o, 0, sizeof o);
    o.n_seq = n_seq;
    o.len = len;
    o.temperature = 1.0f;
    o.top_p = 1.0f;
    o.seed = 5;
    o.threads = 1;
    return o;
}

static int32_t *gen(fixture *f, const nb_datafree_opts *o) {
    int32_t *ids = nb_malloc((size_t)o->n_seq * o->len * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    nb_status s = nb_datafree_generate(&f->m, f->tok, o, ids);
    ck_assert_msg(s == NB_OK, "%s", nb_errmsg());
    return ids;
}

static int same(const int32_t *a, const int32_t *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

/* the same seed gives the same set for 1, 2 and 3 threads; another seed another set */
START_TEST(test_generate_deterministic) {
    fixture f;
    fx_init(&f);
    int N = 7, L = 20;
    nb_datafree_opts o = opts(N, L);
    int32_t *a = gen(&f, &o);
    o.threads = 3;
    int32_t *b = gen(&f, &o);
    o.threads = 2;
    int32_t *c = gen(&f, &o);
    ck_assert(same(a, b, (size_t)N * L));
    ck_assert(same(a, c, (size_t)N * L));
    /* every sequence starts with BOS, sequences differ (sampled), ids in range */
    int bos = nb_tokenizer_bos(f.tok);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(a[i * L], bos);
        for (int p = 0; p < L; p++) ck_assert(a[i * L + p] >= 0 && a[i * L + p] < 512);
    }
    ck_assert(!same(a, a + L, (size_t)L));
    o.seed = 6;
    int32_t *d = gen(&f, &o);
    ck_assert(!same(a, d, (size_t)N * L));
    /* a prefix of the set is the set with fewer sequences (sequence i depends on i only) */
    o.seed = 5;
    o.n_seq = 3;
    int32_t *e = gen(&f, &o);
    ck_assert(same(a, e, (size_t)3 * L));
    nb_free(a);
    nb_free(b);
    nb_free(c);
    nb_free(d);
    nb_free(e);
    fx_free(&f);
}
END_TEST

/* the K tokens after the start are the teacher's argmax; the start is BOS + an ordinary token */
START_TEST(test_generate_greedy_prefix) {
    fixture f;
    fx_init(&f);
    int N = 5, L = 16, K = 4;
    nb_datafree_opts o = opts(N, L);
    o.random_start = 1;
    o.greedy = K;
    o.threads = 2;
    int32_t *a = gen(&f, &o);
    nb_decoder d;
    ck_assert_int_eq(nb_decoder_init(&d, &f.m, L), NB_OK);
    int bos = nb_tokenizer_bos(f.tok), eos = nb_tokenizer_eos(f.tok), sampled_not_argmax = 0, starts_differ = 0;
    for (int i = 0; i < N; i++) {
        const int32_t *s = a + i * L;
        ck_assert_int_eq(s[0], bos);
        ck_assert(s[1] != bos && s[1] != eos);
        size_t n;
        float sc;
        const char *piece = nb_tokenizer_token(f.tok, s[1], &n, &sc);
        ck_assert_msg(!(n >= 3 && piece[0] == '<' && piece[n - 1] == '>'), "start token %d is special", s[1]);
        if (i && s[1] != a[1]) starts_differ = 1;
        for (int p = 0; p < L - 1; p++) {
            const float *logits;
            ck_assert_int_eq(nb_model_decode(&d, s[p], p, &logits), NB_OK);
            int am = nb_argmax(logits, 512);
            if (p + 1 >= 2 && p + 1 < 2 + K) ck_assert_int_eq(s[p + 1], am);
            if (p + 1 >= 2 + K && s[p + 1] != am) sampled_not_argmax = 1;
        }
    }
    ck_assert(starts_differ);
    ck_assert(sampled_not_argmax); /* temperature 1: sampling did happen after the greedy part */
    nb_decoder_free(&d);
    nb_free(a);
    fx_free(&f);
}
END_TEST

START_TEST(test_generate_errors) {
    fixture f;
    fx_init(&f);
    int32_t ids[4096];
    nb_datafree_opts o = opts(2, 600); /* longer than seq_len 512 */
    ck_assert_int_eq(nb_datafree_generate(&f.m, f.tok, &o, ids), NB_EINVAL);
    ck_assert(strstr(nb_errmsg(), "seq_len 512") != NULL);
    o = opts(0, 8);
    ck_assert_int_eq(nb_datafree_generate(&f.m, f.tok, &o, ids), NB_EINVAL);
    /* stop flag: interrupted, nothing generated */
    volatile sig_atomic_t stop = 1;
    o = opts(2, 8);
    o.stop = &stop;
    ck_assert_int_eq(nb_datafree_generate(&f.m, f.tok, &o, ids), NB_EINTR);
    fx_free(&f);
}
END_TEST

/* the cached set: written once, reused while settings and teacher match, remade otherwise */
START_TEST(test_prepare_reuse) {
    fixture f;
    fx_init(&f);
    char dir[] = "/tmp/nb_datafree_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, NB_DATAFREE_FILE);
    nb_datafree_opts o = opts(4, 12);
    nb_tokens a, b, c, d;
    int reused = -1;
    ck_assert_msg(nb_datafree_prepare(path, &f.m, f.tok, &o, &a, &reused) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(reused, 0);
    ck_assert_int_eq(a.n, 48);
    ck_assert_int_eq(a.n_docs, 4);
    ck_assert_int_eq(nb_datafree_prepare(path, &f.m, f.tok, &o, &b, &reused), NB_OK);
    ck_assert_int_eq(reused, 1);
    ck_assert_int_eq(b.n, a.n);
    ck_assert(same(a.ids, b.ids, (size_t)a.n));
    /* it is an ordinary token dataset: tokenizer inside, an empty val split */
    nb_tokenizer *t = NULL;
    ck_assert_int_eq(nb_dataset_tokenizer(path, &t), NB_OK);
    ck_assert(nb_tokenizer_equal(t, f.tok));
    nb_tokenizer_free(t);
    nb_tokens v;
    ck_assert_int_eq(nb_dataset_open_split(path, "val", &v), NB_OK);
    ck_assert_int_eq(v.n, 0);
    nb_tokens_free(&v);
    /* another temperature: made again */
    o.temperature = 0.7f;
    ck_assert_int_eq(nb_datafree_prepare(path, &f.m, f.tok, &o, &c, &reused), NB_OK);
    ck_assert_int_eq(reused, 0);
    ck_assert(!same(a.ids, c.ids, (size_t)a.n));
    /* another teacher (one weight changed): made again */
    f.m.params.data[100] += 0.5f;
    ck_assert_int_eq(nb_datafree_prepare(path, &f.m, f.tok, &o, &d, &reused), NB_OK);
    ck_assert_int_eq(reused, 0);
    /* no temp file left behind */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", dir);
    ck_assert_int_ne(system(cmd), 0);
    nb_tokens_free(&a);
    nb_tokens_free(&b);
    nb_tokens_free(&c);
    nb_tokens_free(&d);
    unlink(path);
    rmdir(dir);
    fx_free(&f);
}
END_TEST

/* ---- recipe keys ---- */

#define BASE                                                                                     \
    "out_dir: /tmp/nb_df_unused\n"                                                               \
    "model:\n"                                                                                   \
    "  init: llama2c:" MODEL_BIN "\n"                                                            \
    "  seq_len: 32\n"                                                                            \
    "data:\n"                                                                                    \
    "  tokenizer: llama2c:" TOK_BIN "\n"

static const char *bad(const char *yaml, int n, char **ovs) {
    nb_recipe r;
    nb_status s = nb_recipe_parse("x.yaml", yaml, n, ovs, &r);
    ck_assert_msg(s == NB_EINVAL, "expected NB_EINVAL for <<%s>>, got %d (%s)", yaml, s, nb_errmsg());
    nb_recipe_free(&r);
    return nb_errmsg();
}

#define HAS(msg, needle) ck_assert_msg(strstr((msg), (needle)) != NULL, "'%s' not in: %s", (needle), (msg))

START_TEST(test_recipe_keys) {
    nb_recipe r;
    const char *ok = BASE "distill:\n  enabled: true\n  data_free: true\n  gen_sequences: 8\n  gen_length: 20\n"
                          "  gen_temperature: 0.8\n  gen_top_p: 0.95\n  gen_greedy_tokens: 3\n  gen_start: random\n";
    ck_assert_msg(nb_recipe_parse("ok.yaml", ok, 0, NULL, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(r.distill.gen_sequences, 8);
    ck_assert_int_eq(r.distill.gen_length, 20);
    ck_assert_float_eq(r.distill.gen_temperature, 0.8f);
    ck_assert_float_eq(r.distill.gen_top_p, 0.95f);
    ck_assert_int_eq(r.distill.gen_greedy_tokens, 3);
    ck_assert_str_eq(r.distill.gen_start, "random");
    nb_recipe_free(&r);
    /* defaults */
    nb_recipe_defaults(&r);
    ck_assert_int_eq(r.distill.gen_sequences, 256);
    ck_assert_int_eq(r.distill.gen_length, 0);
    ck_assert_float_eq(r.distill.gen_temperature, 1.0f);
    ck_assert_str_eq(r.distill.gen_start, "bos");

    const char *m;
    m = bad(BASE "distill:\n  data_free: true\n", 0, NULL);
    HAS(m, "x.yaml:");
    HAS(m, "distill.data_free: needs distill.enabled: true");
    m = bad(BASE "  train: " MODEL_BIN "\ndistill: {enabled: true, data_free: true}\n", 0, NULL);
    HAS(m, "x.yaml:7:");
    HAS(m, "data.train: not read with distill.data_free");
    char *ov_random[] = {"model.init=random"};
    m = bad(BASE "distill: {enabled: true, data_free: true}\n", 1, ov_random);
    HAS(m, "distill.data_free: the teacher would be the randomly initialised");
    char *ov_char[] = {"data.tokenizer=char"};
    m = bad(BASE "distill: {enabled: true, data_free: true}\n", 1, ov_char);
    HAS(m, "data.tokenizer=char");
    HAS(m, "data.tokenizer: char builds its vocabulary from data.train");
    m = bad(BASE "distill:\n  enabled: true\n  data_free: true\n  gen_temperature: 0\n", 0, NULL);
    HAS(m, "x.yaml:10:");
    HAS(m, "distill.gen_temperature: 0 (greedy) with distill.gen_start: bos");
    m = bad(BASE "distill:\n  enabled: true\n  data_free: true\n  gen_length: 8\n  gen_greedy_tokens: 7\n", 0, NULL);
    HAS(m, "x.yaml:11:");
    HAS(m, "distill.gen_greedy_tokens: 7 greedy tokens leave none to sample in sequences of 8 tokens");
    m = bad(BASE "distill:\n  gen_start: middle\n", 0, NULL);
    HAS(m, "distill.gen_start");
    HAS(m, "middle");
    m = bad(BASE "distill:\n  gen_length: 1\n", 0, NULL);
    HAS(m, "distill.gen_length");
    m = bad(BASE "distill:\n  gen_sequences: 0\n", 0, NULL);
    HAS(m, "distill.gen_sequences");
    m = bad(BASE "distill:\n  gen_top_p: 0\n", 0, NULL);
    HAS(m, "distill.gen_top_p");
    m = bad(BASE "distill:\n  gen_sequnces: 5\n", 0, NULL);
    HAS(m, "gen_sequences"); /* did you mean */
    /* the keys do nothing without data_free: a plain recipe with them set is fine */
    ck_assert_msg(nb_recipe_parse("plain.yaml", BASE "distill:\n  gen_temperature: 0\n", 0, NULL, &r) == NB_OK, "%s",
                  nb_errmsg());
    nb_recipe_free(&r);
}
END_TEST

NB_SUITE("datafree") {
    tcase_add_test(tc, test_generate_deterministic);
    tcase_add_test(tc, test_generate_greedy_prefix);
    tcase_add_test(tc, test_generate_errors);
    tcase_add_test(tc, test_prepare_reuse);
    tcase_add_test(tc, test_recipe_keys);
}
