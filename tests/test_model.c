/* test_model.c: the llama model (tape forward, decode, sampler), llama2.c import, checkpoints. */
#include "nbtest.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>
#include <sys/resource.h>

#include "../data/dataset.h"
#include "../train/checkpoint.h"
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

START_TEST(test_config_from_recipe) {
    nb_recipe_model rm = {0};
    rm.dim = 128;
    rm.n_layers = 4;
    rm.n_heads = 4;
    rm.seq_len = 64;
    rm.norm_eps = 1e-5f;
    rm.rope_theta = 10000.0f;
    rm.tied_embeddings = 1;
    nb_model_config c;
    ck_assert_int_eq(nb_model_config_from_recipe(&rm, 65, &c), NB_OK);
    ck_assert_int_eq(c.vocab_size, 65);      /* from the tokenizer */
    ck_assert_int_eq(c.n_kv_heads, 4);       /* = n_heads */
    ck_assert_int_eq(c.hidden_dim, 352);     /* 4*128*2/3 = 341 -> multiple of 32 */
    ck_assert_int_eq(nb_model_default_hidden(288), 768); /* stories15M */
    ck_assert_int_eq(c.tied, 1);
    rm.n_heads = 3; /* does not divide 128 */
    ck_assert_int_eq(nb_model_config_from_recipe(&rm, 65, &c), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "n_heads = 3 does not divide dim = 128"));
    rm.n_heads = 4;
    rm.n_kv_heads = 3;
    ck_assert_int_eq(nb_model_config_from_recipe(&rm, 65, &c), NB_EINVAL);
    rm.n_kv_heads = 2;
    ck_assert_int_eq(nb_model_config_from_recipe(&rm, 0, &c), NB_EINVAL); /* no vocabulary at all */
    /* parameter count and table agree with the allocated model */
    ck_assert_int_eq(nb_model_config_from_recipe(&rm, 65, &c), NB_OK);
    nb_model m;
    ck_assert_int_eq(nb_model_init(&m, &c), NB_OK);
    ck_assert_int_eq(nb_model_numel(&m), nb_model_config_numel(&c));
    int n;
    nb_param_spec *specs;
    ck_assert_int_eq(nb_model_specs(&c, &n, &specs), NB_OK);
    ck_assert_int_eq(n, m.params.n);
    for (int i = 0; i < n; i++) ck_assert_str_eq(specs[i].name, m.params.p[i].name);
    nb_free(specs);
    /* init: norms 1, wo scaled by 1/sqrt(2L), same seed -> same weights */
    nb_model_init_random(&m, 0.02f, 9);
    ck_assert(nb_f32(nb_model_param(&m, m.layers[1].ffn_norm))[5] == 1.0f);
    double s2 = 0, s2o = 0;
    int64_t nq = nb_numel(nb_model_param(&m, m.layers[0].wq)), no = nb_numel(nb_model_param(&m, m.layers[0].wo));
    for (int64_t i = 0; i < nq; i++) s2 += pow(nb_f32(nb_model_param(&m, m.layers[0].wq))[i], 2);
    for (int64_t i = 0; i < no; i++) s2o += pow(nb_f32(nb_model_param(&m, m.layers[0].wo))[i], 2);
    ck_assert_double_lt(fabs(sqrt(s2 / nq) - 0.02), 0.001);
    ck_assert_double_lt(fabs(sqrt(s2o / no) - 0.02 / sqrt(8.0)), 0.0005);
    float w0 = m.params.data[123];
    nb_model_init_random(&m, 0.02f, 9);
    ck_assert(m.params.data[123] == w0);
    nb_model_free(&m);
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


/* ---- checkpoints ---- */

static nb_model_config tiny_config(int tied) {
    nb_model_config c;
    nb_model_config_defaults(&c);
    c.dim = 16;
    c.n_layers = 2;
    c.n_heads = 4;
    c.n_kv_heads = 2;
    c.hidden_dim = 24;
    c.vocab_size = 11;
    c.seq_len = 8;
    c.tied = tied;
    return c;
}

/* a paramset with the model's layout filled with normal values */
static void like_set(nb_paramset *s, const nb_model *m, unsigned long long seed) {
    nb_param_spec *sp = calloc((size_t)m->params.n, sizeof *sp);
    for (int i = 0; i < m->params.n; i++) {
        const nb_param *p = &m->params.p[i];
        snprintf(sp[i].name, sizeof sp[i].name, "%s", p->name);
        sp[i].ndim = p->t.ndim;
        memcpy(sp[i].shape, p->t.shape, sizeof sp[i].shape);
        sp[i].kind = p->kind;
    }
    ck_assert_int_eq(nb_paramset_build(s, m->params.n, sp), NB_OK);
    nbt_fill(s->data, (long)s->numel, seed);
    free(sp);
}

static int same_set(const nb_paramset *a, const nb_paramset *b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->p[i].name, b->p[i].name) || !nb_same_shape(&a->p[i].t, &b->p[i].t) ||
            memcmp(a->p[i].t.data, b->p[i].t.data, nb_nbytes(&a->p[i].t)))
            return 0;
    return 1;
}

static void save_tiny(const char *path, nb_model *m, nb_paramset *om, nb_paramset *ov, nb_paramset *q) {
    nb_ckpt_contents c = {0};
    c.config = m->cfg;
    c.params = &m->params;
    c.step = 1234;
    c.n_sets = 0;
    if (om) c.sets[c.n_sets++] = (nb_ckpt_set){"optim.m", om};
    if (ov) c.sets[c.n_sets++] = (nb_ckpt_set){"optim.v", ov};
    if (q) c.sets[c.n_sets++] = (nb_ckpt_set){"quant", q};
    c.n_rngs = 2;
    c.rngs[0] = (nb_ckpt_rng){"data", {7, 1, 99}};
    c.rngs[1] = (nb_ckpt_rng){"dropout", {7, 2, 0xfffffffffffffff0ULL}};
    c.recipe = "model:\n  dim: 16\n";
    c.n_attrs = 1;
    c.attrs[0] = (nb_ckpt_attr){"quant_policy", "{\"bits\": 4}"};
    nb_status s = nb_ckpt_save(path, &c);
    ck_assert_msg(s == NB_OK, "save: %s", nb_errmsg());
}

START_TEST(test_ckpt_round_trip) {
    char path[512];
    tmp_path(path, sizeof path, "rt.h5");
    for (int tied = 0; tied <= 1; tied++) {
        nb_model m, m2;
        nb_model_config cfg = tiny_config(tied);
        ck_assert_int_eq(nb_model_init(&m, &cfg), NB_OK);
        nb_model_init_random(&m, 0.02f, 5);
        nb_paramset om, ov, q, om2, ov2, q2;
        like_set(&om, &m, 1);
        like_set(&ov, &m, 2);
        nb_param_spec qs[2] = {{"layers.0.attn.wq.scale", 1, {16}, NB_PARAM_QUANT},
                               {"layers.1.ffn.w2.scale", 2, {16, 3}, NB_PARAM_QUANT}};
        ck_assert_int_eq(nb_paramset_build(&q, 2, qs), NB_OK);
        nbt_fill(q.data, (long)q.numel, 3);
        q.data[0] = -0.0f;
        save_tiny(path, &m, &om, &ov, &q);

        nb_ckpt *c;
        ck_assert_int_eq(nb_ckpt_open(path, &c), NB_OK);
        ck_assert_int_eq(nb_ckpt_step(c), 1234);
        ck_assert_int_eq(memcmp(nb_ckpt_config(c), &m.cfg, sizeof m.cfg), 0);
        ck_assert_int_eq(nb_ckpt_load_model(c, &m2), NB_OK);
        ck_assert(same_set(&m.params, &m2.params));
        like_set(&om2, &m, 10);
        like_set(&ov2, &m, 11);
        ck_assert(nb_ckpt_has_set(c, "optim.m"));
        ck_assert(!nb_ckpt_has_set(c, "optim.x"));
        ck_assert(!nb_ckpt_has_set(c, "nothing.here"));
        ck_assert_int_eq(nb_ckpt_read_set(c, "optim.m", &om2), NB_OK);
        ck_assert_int_eq(nb_ckpt_read_set(c, "optim.v", &ov2), NB_OK);
        ck_assert(same_set(&om, &om2));
        ck_assert(same_set(&ov, &ov2));
        /* the quant set's layout comes from the file */
        int n;
        nb_param_spec *specs;
        ck_assert_int_eq(nb_ckpt_list_set(c, "quant", &n, &specs), NB_OK);
        ck_assert_int_eq(n, 2);
        ck_assert_str_eq(specs[1].name, "layers.1.ffn.w2.scale");
        ck_assert_int_eq(specs[1].shape[1], 3);
        ck_assert_int_eq(nb_paramset_build(&q2, n, specs), NB_OK);
        ck_assert_int_eq(nb_ckpt_read_set(c, "quant", &q2), NB_OK);
        ck_assert(same_set(&q, &q2));
        ck_assert(signbit(q2.data[0]));
        nb_free(specs);
        nb_rng r;
        ck_assert_int_eq(nb_ckpt_read_rng(c, "dropout", &r), NB_OK);
        ck_assert(r.seed == 7 && r.stream == 2 && r.counter == 0xfffffffffffffff0ULL);
        ck_assert_int_ne(nb_ckpt_read_rng(c, "nope", &r), NB_OK);
        char *v;
        ck_assert_int_eq(nb_ckpt_read_attr(c, "recipe", &v), NB_OK);
        ck_assert_str_eq(v, "model:\n  dim: 16\n");
        nb_free(v);
        ck_assert_int_eq(nb_ckpt_read_attr(c, "quant_policy", &v), NB_OK);
        ck_assert_str_eq(v, "{\"bits\": 4}");
        nb_free(v);
        ck_assert_int_eq(nb_ckpt_read_attr(c, "absent", &v), NB_OK);
        ck_assert_ptr_null(v);
        char **names;
        ck_assert_int_eq(nb_ckpt_attr_names(c, &n, &names), NB_OK);
        ck_assert_int_eq(n, 2); /* quant_policy, recipe */
        nb_ckpt_free_names(n, names);
        ck_assert(!nb_ckpt_has_tokenizer(c));
        ck_assert_int_eq(nb_ckpt_set_names(c, &n, &names), NB_OK);
        ck_assert_int_eq(n, 3);
        ck_assert_str_eq(names[0], "optim.m");
        ck_assert_str_eq(names[1], "optim.v");
        ck_assert_str_eq(names[2], "quant");
        nb_ckpt_free_names(n, names);
        nb_ckpt_close(c);
        /* the generic loader dispatches on the signature */
        nb_model m3;
        ck_assert_int_eq(nb_model_load_file(path, &m3), NB_OK);
        ck_assert(same_set(&m.params, &m3.params));
        nb_model_free(&m3);
        ck_assert_int_eq(nb_model_load_file(MODEL_BIN, &m3), NB_OK);
        ck_assert_int_eq(m3.cfg.dim, 64);
        nb_model_free(&m3);
        nb_paramset_free(&om);
        nb_paramset_free(&ov);
        nb_paramset_free(&q);
        nb_paramset_free(&om2);
        nb_paramset_free(&ov2);
        nb_paramset_free(&q2);
        nb_model_free(&m);
        nb_model_free(&m2);
    }
    unlink(path);
}
END_TEST

static void expect_load_error(const char *path, nb_status want, const char *needle) {
    nb_model m;
    nb_status s = nb_model_load_file(path, &m);
    ck_assert_msg(s == want, "status %d (%s), want %d", s, nb_errmsg(), want);
    ck_assert_msg(strstr(nb_errmsg(), needle) != NULL, "message '%s' lacks '%s'", nb_errmsg(), needle);
    ck_assert_msg(strstr(nb_errmsg(), path) != NULL, "message '%s' does not name the file", nb_errmsg());
}

START_TEST(test_ckpt_bad_files) {
    char path[512], bad[512];
    tmp_path(path, sizeof path, "good.h5");
    tmp_path(bad, sizeof bad, "bad.h5");
    nb_model m;
    nb_model_config cfg = tiny_config(0);
    ck_assert_int_eq(nb_model_init(&m, &cfg), NB_OK);
    nb_model_init_random(&m, 0.02f, 5);
    save_tiny(path, &m, NULL, NULL, NULL);
    long n;
    char *bytes = slurp(path, &n);
    /* truncated at several points */
    long cuts[] = {n / 2, n - 1, 100, 8};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(bad, bytes, cuts[i]);
        nb_model m2;
        nb_status s = nb_model_load_file(bad, &m2);
        ck_assert_msg(s == NB_EFORMAT, "cut at %ld: status %d (%s)", cuts[i], s, nb_errmsg());
        ck_assert_ptr_nonnull(strstr(nb_errmsg(), bad));
    }
    /* corrupted bytes anywhere (header, HDF5 metadata, tensor data) are caught by the checksum */
    long flips[] = {20, 600, n / 2, n - 10};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        bytes[flips[i]] ^= 0x5a;
        spit(bad, bytes, n);
        bytes[flips[i]] ^= 0x5a;
        nb_model m2;
        ck_assert_int_eq(nb_model_load_file(bad, &m2), NB_EFORMAT);
        ck_assert_msg(strstr(nb_errmsg(), "checksum mismatch") || strstr(nb_errmsg(), "header says"),
                      "flip at %ld: %s", flips[i], nb_errmsg());
    }
    /* a valid HDF5 file that is not a nibble checkpoint */
    hid_t hf = H5Fcreate(bad, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(hf, 0);
    H5Fclose(hf);
    expect_load_error(bad, NB_EFORMAT, "an HDF5 file without nibble's checkpoint header");
    /* not HDF5 at all */
    spit(bad, "dim: 64\nthis is a recipe, not a checkpoint\n", 40);
    nb_ckpt *c;
    ck_assert_int_eq(nb_ckpt_open(bad, &c), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "not an HDF5 file"));
    /* missing file */
    unlink(bad);
    expect_load_error(bad, NB_EIO, "No such file");
    /* a tensor of the wrong shape: a paramset whose wq is (8, 16) saved under the model's config */
    nb_param_spec sp[64];
    int k = 0;
    for (int i = 0; i < m.params.n; i++) {
        const nb_param *p = &m.params.p[i];
        snprintf(sp[k].name, sizeof sp[k].name, "%s", p->name);
        sp[k].ndim = p->t.ndim;
        memcpy(sp[k].shape, p->t.shape, sizeof sp[k].shape);
        sp[k].kind = p->kind;
        if (!strcmp(p->name, "layers.1.attn.wq")) sp[k].shape[0] = 8;
        if (strcmp(p->name, "layers.0.ffn.w3")) k++; /* leave w3 out of the second file */
    }
    nb_paramset wrong, missing;
    ck_assert_int_eq(nb_paramset_build(&wrong, k, sp), NB_OK);
    nb_ckpt_contents cc = {.config = m.cfg, .params = &wrong};
    ck_assert_int_eq(nb_ckpt_save(bad, &cc), NB_OK);
    expect_load_error(bad, NB_EFORMAT, "tensor params/layers.0.ffn.w3 missing");
    for (int i = 0; i < k; i++)
        if (!strcmp(sp[i].name, "layers.1.attn.wq")) sp[i].shape[0] = 16;
    snprintf(sp[k].name, sizeof sp[k].name, "layers.0.ffn.w3");
    sp[k].ndim = 1;
    sp[k].shape[0] = 16;
    k++;
    ck_assert_int_eq(nb_paramset_build(&missing, k, sp), NB_OK);
    cc.params = &missing;
    ck_assert_int_eq(nb_ckpt_save(bad, &cc), NB_OK);
    expect_load_error(bad, NB_EFORMAT, "tensor params/layers.0.ffn.w3 has shape (16), expected (24, 16)");
    nb_paramset_free(&wrong);
    nb_paramset_free(&missing);
    /* an absurd config is refused before any allocation */
    nb_model_config huge = m.cfg;
    huge.vocab_size = 1 << 22;
    huge.dim = 65536;
    huge.n_heads = 1;
    huge.n_kv_heads = 1;
    cc.config = huge;
    cc.params = &m.params;
    ck_assert_int_ne(nb_ckpt_save(bad, &cc), NB_OK); /* the writer checks too */
    /* bad names */
    nb_ckpt_contents c2 = {.config = m.cfg, .params = &m.params, .n_sets = 1};
    c2.sets[0] = (nb_ckpt_set){"params", &m.params};
    ck_assert_int_eq(nb_ckpt_save(bad, &c2), NB_EINVAL);
    c2.sets[0] = (nb_ckpt_set){"optim/../x", &m.params};
    ck_assert_int_eq(nb_ckpt_save(bad, &c2), NB_EINVAL);
    /* a recipe of 50 kB is fine, one over the limit is refused with a message */
    char *big = malloc(NB_CKPT_MAX_STRING + 2);
    memset(big, 'a', NB_CKPT_MAX_STRING + 1);
    big[NB_CKPT_MAX_STRING + 1] = 0;
    nb_ckpt_contents c3 = {.config = m.cfg, .params = &m.params, .recipe = big};
    ck_assert_int_eq(nb_ckpt_save(bad, &c3), NB_EINVAL);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "recipe"));
    big[50000] = 0;
    ck_assert_int_eq(nb_ckpt_save(bad, &c3), NB_OK);
    nb_ckpt *cb;
    ck_assert_int_eq(nb_ckpt_open(bad, &cb), NB_OK);
    char *rv;
    ck_assert_int_eq(nb_ckpt_read_attr(cb, "recipe", &rv), NB_OK);
    ck_assert_str_eq(rv, big);
    nb_free(rv);
    nb_ckpt_close(cb);
    free(big);
    unlink(bad);
    unlink(path);
    free(bytes);
    nb_model_free(&m);
}
END_TEST

/* The tokenizer travels with the checkpoint; one larger than the model's vocabulary is refused. */
START_TEST(test_ckpt_tokenizer) {
    char path[512];
    tmp_path(path, sizeof path, "tok.h5");
    nb_tokenizer *tok, *back;
    ck_assert_int_eq(nb_tokenizer_llama2c_load(NB_TEST_DATA("stories260K/tok512.bin"), 0, &tok), NB_OK);
    for (int vocab = 512; vocab >= 511; vocab--) {
        nb_model m;
        nb_model_config cfg = tiny_config(1);
        cfg.vocab_size = vocab;
        ck_assert_int_eq(nb_model_init(&m, &cfg), NB_OK);
        nb_ckpt_contents c = {.config = m.cfg, .params = &m.params, .tokenizer = tok};
        ck_assert_int_eq(nb_ckpt_save(path, &c), NB_OK);
        nb_ckpt *ck;
        ck_assert_int_eq(nb_ckpt_open(path, &ck), NB_OK);
        ck_assert(nb_ckpt_has_tokenizer(ck));
        nb_status s = nb_ckpt_read_tokenizer(ck, &back);
        if (vocab == 512) {
            ck_assert_int_eq(s, NB_OK);
            int32_t *a, *b;
            int64_t na, nb2;
            const char *text = "Once upon a time, there was a little girl named Lily.";
            ck_assert_int_eq(nb_tokenizer_encode(tok, text, strlen(text), 1, 0, &a, &na), NB_OK);
            ck_assert_int_eq(nb_tokenizer_encode(back, text, strlen(text), 1, 0, &b, &nb2), NB_OK);
            ck_assert_int_eq(na, nb2);
            ck_assert_int_eq(memcmp(a, b, (size_t)na * sizeof *a), 0);
            nb_free(a);
            nb_free(b);
            nb_tokenizer_free(back);
        } else {
            ck_assert_int_eq(s, NB_EFORMAT);
            ck_assert_ptr_nonnull(strstr(nb_errmsg(), "512 tokens, more than the model's vocab_size 511"));
            ck_assert_ptr_null(back);
        }
        nb_ckpt_close(ck);
        nb_model_free(&m);
    }
    nb_tokenizer_free(tok);
    unlink(path);
}
END_TEST

/* A write that fails (file size limit = the disk filling up) leaves the old checkpoint intact. */
START_TEST(test_ckpt_atomic_write) {
    char path[512], tmp[600];
    tmp_path(path, sizeof path, "atomic.h5");
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    nb_model small, big;
    nb_model_config cfg = tiny_config(1);
    ck_assert_int_eq(nb_model_init(&small, &cfg), NB_OK);
    nb_model_init_random(&small, 0.02f, 1);
    save_tiny(path, &small, NULL, NULL, NULL);
    long old_n;
    char *old = slurp(path, &old_n);
    cfg.dim = 256;
    cfg.hidden_dim = 512;
    cfg.vocab_size = 512;
    ck_assert_int_eq(nb_model_init(&big, &cfg), NB_OK); /* about 4 MB of floats */
    nb_model_init_random(&big, 0.02f, 2);
    struct rlimit rl, lim = {1 << 20, 1 << 20};
    getrlimit(RLIMIT_FSIZE, &rl);
    lim.rlim_max = rl.rlim_max;
    void (*old_sig)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    nb_ckpt_contents c = {.config = big.cfg, .params = &big.params, .step = 9};
    nb_status s = nb_ckpt_save(path, &c);
    setrlimit(RLIMIT_FSIZE, &rl);
    signal(SIGXFSZ, old_sig);
    ck_assert_int_eq(s, NB_EIO);
    ck_assert_msg(strstr(nb_errmsg(), path) != NULL, "message: %s", nb_errmsg());
    printf("failed write reports: %s\n", nb_errmsg());
    ck_assert_int_ne(access(tmp, F_OK), 0); /* no temp file left */
    long now_n;
    char *now = slurp(path, &now_n);
    ck_assert_int_eq(now_n, old_n);
    ck_assert_int_eq(memcmp(now, old, (size_t)old_n), 0);
    nb_model back;
    ck_assert_int_eq(nb_model_load_file(path, &back), NB_OK);
    ck_assert(same_set(&back.params, &small.params));
    nb_model_free(&back);
    /* an allocation failure while building the image also leaves the old file */
    for (long k = 0; k < 3; k++) {
        nb_alloc_fail_after(k);
        nb_status sa = nb_ckpt_save(path, &c);
        nb_alloc_fail_after(-1);
        if (sa == NB_OK) break; /* the save made fewer allocations than k */
        ck_assert_int_eq(access(tmp, F_OK), -1);
        nb_model back2;
        ck_assert_int_eq(nb_model_load_file(path, &back2), NB_OK);
        ck_assert(same_set(&back2.params, &small.params));
        nb_model_free(&back2);
    }
    save_tiny(path, &small, NULL, NULL, NULL);
    /* a directory that does not exist */
    char nodir[600];
    snprintf(nodir, sizeof nodir, "%s.d/x/y.h5", path);
    ck_assert_int_eq(nb_ckpt_save(nodir, &c), NB_EIO);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), nodir));
    /* the same write without the limit succeeds and replaces the file */
    ck_assert_int_eq(nb_ckpt_save(path, &c), NB_OK);
    nb_ckpt *ck;
    ck_assert_int_eq(nb_ckpt_open(path, &ck), NB_OK);
    ck_assert_int_eq(nb_ckpt_step(ck), 9);
    nb_ckpt_close(ck);
    unlink(path);
    free(old);
    free(now);
    nb_model_free(&small);
    nb_model_free(&big);
}
END_TEST

/* ---- tape forward ---- */


static nb_tensor *ids_tensor(nb_arena *a, int B, int T, const int32_t *v) {
    nb_tensor *x = nb_tensor_new(a, NB_I32, 2, (int64_t[]){B, T});
    memcpy(x->data, v, (size_t)B * T * sizeof(int32_t));
    return x;
}

/* mean of -log softmax(ref[t])[next token] over the prompt, from the reference logits (double) */
static double ref_loss(const double *ref, const double *prompt, long T, int V) {
    double sum = 0;
    for (long t = 0; t + 1 < T; t++) {
        const double *l = ref + t * V;
        double mx = l[0], z = 0;
        for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        for (int v = 0; v < V; v++) z += exp(l[v] - mx);
        sum += mx + log(z) - l[(int)prompt[t + 1]];
    }
    return sum / (double)(T - 1);
}

START_TEST(test_forward_matches_reference) {
    char *json = slurp(REFERENCE, NULL);
    double *prompt, *ref;
    long T = json_numbers(json, "prompt_tokens", &prompt);
    json_numbers(json, "logits", &ref);
    nb_model m;
    ck_assert_int_eq(nb_llama2c_load(MODEL_BIN, &m), NB_OK);
    env e;
    env_init(&e);
    int32_t ids[64], tg[64];
    for (long t = 0; t < T; t++) {
        ids[t] = (int32_t)prompt[t];
        tg[t] = t + 1 < T ? (int32_t)prompt[t + 1] : -1; /* last position has no target */
    }
    nb_tensor *x = ids_tensor(&e.a, 1, (int)T, ids), *y = ids_tensor(&e.a, 1, (int)T, tg);
    nb_tensor *logits, *loss;
    nb_status s = nb_model_forward(&e.t, &m, x, y, &logits, &loss);
    ck_assert_msg(s == NB_OK, "forward: %s", nb_errmsg());
    ck_assert_int_eq(logits->ndim, 3);
    ck_assert_int_eq(logits->shape[2], 512);
    double maxdiff = 0;
    const float *l = nb_f32(logits);
    for (long i = 0; i < T * 512; i++) {
        double d = fabs(l[i] - ref[i]);
        if (!(d <= maxdiff)) maxdiff = d;
    }
    double want = ref_loss(ref, prompt, T, 512);
    float got = nb_f32(loss)[0];
    printf("tape forward vs reference.json: max abs logit diff %.3g; loss %.6f vs %.6f (diff %.2g)\n", maxdiff,
           got, want, fabs(got - want));
    ck_assert_msg(maxdiff < 1e-3, "max abs logit diff %g", maxdiff);
    ck_assert_msg(fabs(got - want) < 1e-4, "loss %f, reference %f", got, want);
    /* the decode path gives the same logits at every position */
    nb_decoder d;
    ck_assert_int_eq(nb_decoder_init(&d, &m, (int)T), NB_OK);
    double dd = 0;
    for (long t = 0; t < T; t++) {
        const float *lg;
        ck_assert_int_eq(nb_model_decode(&d, ids[t], (int)t, &lg), NB_OK);
        for (int v = 0; v < 512; v++) {
            double diff = fabs(lg[v] - l[t * 512 + v]);
            if (!(diff <= dd)) dd = diff;
        }
    }
    printf("decode vs tape forward: max abs logit diff %.3g\n", dd);
    ck_assert_msg(dd < 1e-4, "decode differs from the tape forward by %g", dd);
    nb_decoder_free(&d);
    /* bad inputs fail the forward with a message, no crash */
    ids[3] = 512;
    x = ids_tensor(&e.a, 1, (int)T, ids);
    nb_tape_reset(&e.t);
    ck_assert_int_ne(nb_model_forward(&e.t, &m, x, NULL, &logits, NULL), NB_OK);
    ck_assert_ptr_null(logits);
    nb_tape_reset(&e.t);
    nb_tensor *longer = nb_tensor_zeros(&e.a, NB_I32, 2, (int64_t[]){1, 513});
    ck_assert_int_eq(nb_model_forward(&e.t, &m, longer, NULL, &logits, NULL), NB_ESHAPE);
    env_free(&e);
    nb_model_free(&m);
    free(prompt);
    free(ref);
    free(json);
}
END_TEST

/* Random tiny models (tied and untied, grouped kv heads, batch 2): decode == tape forward. */
START_TEST(test_decode_equals_forward_random) {
    for (int tied = 0; tied <= 1; tied++) {
        nb_model m;
        nb_model_config c = tiny_config(tied);
        c.rope_theta = 500.0f;
        ck_assert_int_eq(nb_model_init(&m, &c), NB_OK);
        nb_model_init_random(&m, 0.3f, 11 + tied);
        for (int i = 0; i < m.params.n; i++) /* norms away from 1 so their use is tested */
            if (m.params.p[i].kind == NB_PARAM_NORM) nbt_fill(m.params.p[i].t.data, nb_numel(&m.params.p[i].t), 40 + i);
        env e;
        env_init(&e);
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = (i * 7 + 3) % 11;
        nb_tensor *logits;
        ck_assert_int_eq(nb_model_forward(&e.t, &m, ids_tensor(&e.a, 2, 8, ids), NULL, &logits, NULL), NB_OK);
        for (int b = 0; b < 2; b++) {
            nb_decoder d;
            ck_assert_int_eq(nb_decoder_init(&d, &m, 8), NB_OK);
            for (int t = 0; t < 8; t++) {
                const float *lg;
                ck_assert_int_eq(nb_model_decode(&d, ids[b * 8 + t], t, &lg), NB_OK);
                ck_assert_double_lt(nbt_maxrel(lg, nb_f32(logits) + (b * 8 + t) * 11, 11), 1e-4);
            }
            nb_decoder_free(&d);
        }
        env_free(&e);
        nb_model_free(&m);
    }
}
END_TEST

static float model_loss(nb_model *m, env *e, const int32_t *ids, const int32_t *tg, int B, int T, int grad) {
    nb_arena_reset(&e->a);
    nb_tape_reset(&e->t);
    int old = nb_tape_grad(&e->t, grad);
    nb_tensor *logits, *loss;
    nb_status s = nb_model_forward(&e->t, m, ids_tensor(&e->a, B, T, ids), ids_tensor(&e->a, B, T, tg), &logits, &loss);
    ck_assert_msg(s == NB_OK, "forward: %s", nb_errmsg());
    if (grad) {
        nb_paramset_zero_grad(&m->params);
        ck_assert_int_eq(nb_backward(&e->t, loss, NULL), NB_OK);
    }
    nb_tape_grad(&e->t, old);
    return nb_f32(loss)[0];
}

/* Gradients of the whole model against central differences (a few entries of every parameter). */
START_TEST(test_model_gradient) {
    nb_model m;
    nb_model_config c = tiny_config(0);
    ck_assert_int_eq(nb_model_init(&m, &c), NB_OK);
    nb_model_init_random(&m, 0.2f, 3);
    env e;
    env_init(&e);
    int32_t ids[12], tg[12];
    for (int i = 0; i < 12; i++) {
        ids[i] = (i * 5 + 1) % 11;
        tg[i] = (i * 3 + 2) % 11;
    }
    model_loss(&m, &e, ids, tg, 2, 6, 1);
    float *g = malloc((size_t)m.params.numel * sizeof(float));
    memcpy(g, m.params.grad, (size_t)m.params.numel * sizeof(float));
    double worst = 0;
    for (int i = 0; i < m.params.n; i++) {
        nb_param *p = &m.params.p[i];
        int64_t n = nb_numel(&p->t);
        for (int k = 0; k < 3; k++) {
            int64_t j = (k * 7919 + i * 31) % n;
            float *w = nb_f32(&p->t) + j, w0 = *w, h = 1e-2f;
            *w = w0 + h;
            double lp = model_loss(&m, &e, ids, tg, 2, 6, 0);
            *w = w0 - h;
            double lm = model_loss(&m, &e, ids, tg, 2, 6, 0);
            *w = w0;
            double num = (lp - lm) / (2 * h), ana = g[p->offset + j];
            double err = fabs(num - ana) / (1e-2 + fabs(num) + fabs(ana));
            ck_assert_msg(err < 5e-2, "%s[%lld]: numeric %g, analytic %g", p->name, (long long)j, num, ana);
            if (err > worst) worst = err;
        }
    }
    printf("model gradient vs central differences: worst relative error %.3g\n", worst);
    free(g);
    env_free(&e);
    nb_model_free(&m);
}
END_TEST

/* A tiny random model trains on one fixed batch with plain SGD: the loss must drop clearly. */
START_TEST(test_tiny_model_learns) {
    nb_model m;
    nb_model_config c = tiny_config(1);
    ck_assert_int_eq(nb_model_init(&m, &c), NB_OK);
    nb_model_init_random(&m, 0.02f, 42);
    env e;
    env_init(&e);
    int32_t ids[16], tg[16];
    for (int i = 0; i < 16; i++) {
        ids[i] = (i * 3) % 11;
        tg[i] = (i * 3 + 3) % 11;
    }
    float first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        last = model_loss(&m, &e, ids, tg, 2, 8, 1);
        if (step == 0) first = last;
        for (int64_t i = 0; i < m.params.numel; i++) m.params.data[i] -= 0.5f * m.params.grad[i];
    }
    printf("tiny model, 60 SGD steps on a fixed batch: loss %.4f -> %.4f (ln 11 = %.4f)\n", first, last, log(11.0));
    ck_assert(fabsf(first - logf(11.0f)) < 0.05f); /* small init: near uniform */
    ck_assert_msg(last < 0.5f * first, "loss %f -> %f", first, last);
    env_free(&e);
    nb_model_free(&m);
}
END_TEST

/* stories260K on TinyStories text: reference.json's heldout_loss_20x512 (1.53864 nats over the first
   20 windows of 512 predictions of train_sample_heldout.txt, BOS before each story). */
START_TEST(test_heldout_loss_matches_reference) {
    nb_model m;
    ck_assert_int_eq(nb_llama2c_load(MODEL_BIN, &m), NB_OK);
    nb_tokenizer *tok;
    ck_assert_int_eq(nb_tokenizer_llama2c_load(NB_TEST_DATA("stories260K/tok512.bin"), 512, &tok), NB_OK);
    nb_tokens toks;
    ck_assert_int_eq(nb_text_tokenize_file(tok, NB_TEST_DATA("tinystories/train_sample_heldout.txt"), &toks), NB_OK);
    int sanitized = getenv("NB_SANITIZE") != NULL;
    int64_t nw = nb_tokens_eval_count(&toks, 512);
    int64_t want_w = sanitized ? 2 : (getenv("NB_FULL_HELDOUT") ? nw : 20);
    ck_assert_int_ge(nw, 20);
    env e;
    env_init(&e);
    nb_tape_grad(&e.t, 0);
    double sum = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < want_w; i++) {
        const int32_t *x, *y;
        int len = nb_tokens_eval_window(&toks, 512, i, &x, &y);
        nb_arena_reset(&e.a);
        nb_tape_reset(&e.t);
        nb_tensor *logits, *loss;
        ck_assert_int_eq(nb_model_forward(&e.t, &m, ids_tensor(&e.a, 1, len, x), ids_tensor(&e.a, 1, len, y), &logits,
                                          &loss), NB_OK);
        sum += (double)nb_f32(loss)[0] * len;
        count += len;
    }
    double loss = sum / (double)count;
    printf("stories260K heldout loss over %lld windows (%lld predictions): %.5f (reference 20x512: 1.53864)\n",
           (long long)want_w, (long long)count, loss);
    if (want_w == 20) {
        ck_assert_int_eq(count, 10240);
        ck_assert_msg(fabs(loss - 1.53864) < 2e-4, "loss %f", loss);
    } else
        ck_assert(loss > 1.0 && loss < 2.5);
    env_free(&e);
    nb_tokens_free(&toks);
    nb_tokenizer_free(tok);
    nb_model_free(&m);
}
END_TEST

NB_SUITE("model") {
    tcase_add_test(tc, test_import_config);
    tcase_add_test(tc, test_decode_matches_reference);
    tcase_add_test(tc, test_greedy_matches_reference);
    tcase_add_test(tc, test_config_from_recipe);
    tcase_add_test(tc, test_sampler);
    tcase_add_test(tc, test_import_refuses_bad_files);
    tcase_add_test(tc, test_ckpt_round_trip);
    tcase_add_test(tc, test_ckpt_bad_files);
    tcase_add_test(tc, test_ckpt_atomic_write);
    tcase_add_test(tc, test_ckpt_tokenizer);
    tcase_add_test(tc, test_forward_matches_reference);
    tcase_add_test(tc, test_decode_equals_forward_random);
    tcase_add_test(tc, test_model_gradient);
    tcase_add_test(tc, test_tiny_model_learns);
    tcase_add_test(tc, test_heldout_loss_matches_reference);
}
