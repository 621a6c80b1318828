/* test_formats.c: GGUF, llama2.c version-2 and nibble HDF5 exports: round trips (bytes and
   logits), representability errors, and truncated, corrupted or foreign files. */
#include "nbtest.h"

#include <unistd.h>

#include "../data/tokenizer.h"
#include "../train/export_nb.h"
#include "../train/gguf.h"
#include "../train/llama2c.h"
#include "rt_util.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char p[4][512];
    static int k;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/nb_formats_XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    }
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

static size_t tensor_bytes(const nb_qtensor *t) { return (size_t)t->rows * nb_qtensor_row_bytes(t->type, t->cols); }

static void same_tensor(const char *name, const nb_qtensor *a, const nb_qtensor *b) {
    ck_assert_msg(a->type == b->type && a->rows == b->rows && a->cols == b->cols && a->group == b->group,
                  "%s: header differs (%s vs %s)", name, nb_qtype_name(a->type), nb_qtype_name(b->type));
    ck_assert_msg(!memcmp(a->data, b->data, tensor_bytes(a)), "%s: data differs", name);
    int64_t ng = nb_qtensor_ngroups(a);
    if (ng) {
        ck_assert_msg(!memcmp(a->scales, b->scales, (size_t)(a->rows * ng) * 4), "%s: scales differ", name);
        ck_assert_int_eq(!a->zeros, !b->zeros);
        if (a->zeros) ck_assert(!memcmp(a->zeros, b->zeros, (size_t)(a->rows * ng)));
    }
}

static void same_model(const nb_qmodel *a, const nb_qmodel *b) {
    ck_assert(!memcmp(&a->cfg, &b->cfg, sizeof a->cfg));
    same_tensor("tok_emb", &a->tok_emb, &b->tok_emb);
    same_tensor("norm", &a->norm, &b->norm);
    if (!a->cfg.tied) same_tensor("classifier", &a->classifier, &b->classifier);
    for (int l = 0; l < a->cfg.n_layers; l++) {
        const nb_qlayer *x = &a->layers[l], *y = &b->layers[l];
        same_tensor("attn_norm", &x->attn_norm, &y->attn_norm);
        same_tensor("wq", &x->wq, &y->wq);
        same_tensor("wk", &x->wk, &y->wk);
        same_tensor("wv", &x->wv, &y->wv);
        same_tensor("wo", &x->wo, &y->wo);
        same_tensor("ffn_norm", &x->ffn_norm, &y->ffn_norm);
        same_tensor("w1", &x->w1, &y->w1);
        same_tensor("w2", &x->w2, &y->w2);
        same_tensor("w3", &x->w3, &y->w3);
    }
    ck_assert_int_eq(a->vocab.n, b->vocab.n);
    for (int i = 0; i < a->vocab.n; i++) {
        ck_assert_str_eq(a->vocab.pieces[i], b->vocab.pieces[i]);
        ck_assert(a->vocab.scores[i] == b->vocab.scores[i]);
        ck_assert_int_eq(a->vocab.types[i], b->vocab.types[i]);
    }
    ck_assert_int_eq(a->vocab.bos, b->vocab.bos);
    ck_assert_int_eq(a->vocab.eos, b->vocab.eos);
    /* and therefore the same logits, bit for bit */
    int32_t tok[9] = {1, 5, 9, 200, 7, 3, 44, 100, 2};
    float *la = rt_logits(a, tok, 9, 4), *lb = rt_logits(b, tok, 9, 4);
    ck_assert_int_eq(memcmp(la, lb, sizeof(float) * 9 * a->cfg.vocab), 0);
    free(la), free(lb);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Every truncation of a valid file is refused with a message, never a crash. */
static void check_truncations(const char *path, int nsteps) {
    size_t len;
    char *b = rt_slurp(path, &len);
    const char *cut = tmp_path("cut.bin");
    for (int k = 0; k <= nsteps; k++) {
        size_t n = k == nsteps ? len - 1 : len * (size_t)k / (size_t)nsteps + (size_t)k % 7;
        if (n >= len) continue;
        FILE *f = fopen(cut, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
        nb_qmodel *m = NULL;
        nb_status st = nb_qmodel_open(cut, NULL, &m);
        ck_assert_msg(st != NB_OK, "%s cut to %zu of %zu bytes was accepted", path, n, len);
        ck_assert_ptr_null(m);
        ck_assert_msg(strstr(nb_errmsg(), "cut.bin") != NULL, "message does not name the file: %s", nb_errmsg());
    }
    free(b);
}

START_TEST(test_gguf_round_trip) {
    nb_qmodel *m = rt_random_model(64, 96, 2, 4, 2, 300, 32, 0, 1);
    nb_qtype types[] = {NB_QT_F32, NB_QT_F16, NB_QT_Q8_0, NB_QT_Q4_0};
    for (int i = 0; i < 4; i++) {
        nb_qmodel *q, *r;
        ck_assert_int_eq(nb_qmodel_quantize(m, types[i], 0, NB_QT_F32, &q), NB_OK);
        const char *p = tmp_path("rt.gguf");
        ck_assert_msg(nb_gguf_write(q, p, "test") == NB_OK, "%s", nb_errmsg());
        ck_assert_msg(nb_qmodel_open(p, NULL, &r) == NB_OK, "%s", nb_errmsg());
        same_model(q, r);
        nb_qmodel_free(r);
        nb_qmodel_free(q);
    }
    /* tied stories260K (w2 rows of 172 fall back to f32) */
    nb_qmodel *s, *q, *r;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &s), NB_OK);
    ck_assert_int_eq(nb_qmodel_quantize(s, NB_QT_Q4_0, 0, NB_QT_F32, &q), NB_OK);
    ck_assert_int_eq(q->layers[0].w2.type, NB_QT_F32);
    ck_assert_int_eq(q->layers[0].w1.type, NB_QT_Q4_0);
    const char *p = tmp_path("s.gguf");
    ck_assert_int_eq(nb_gguf_write(q, p, NULL), NB_OK);
    ck_assert_int_eq(nb_qmodel_open(p, NULL, &r), NB_OK);
    ck_assert(r->cfg.tied);
    same_model(q, r);
    ck_assert_str_eq(r->vocab.pieces[403], " Once"); /* llama2.c pieces carry the space */
    ck_assert_str_eq(r->vocab.pieces[407], " upon");
    ck_assert_int_eq(r->vocab.types[0], 2);
    ck_assert_int_eq(r->vocab.types[1], 3);
    ck_assert_int_eq(r->vocab.types[3 + 0x41], 6);
    nb_qmodel_free(r);
    nb_qmodel_free(q);
    nb_qmodel_free(s);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_gguf_refuses_int_grids) {
    nb_qmodel *m = rt_random_model(64, 96, 1, 4, 4, 300, 16, 1, 2), *q;
    ck_assert_int_eq(nb_qmodel_quantize(m, NB_QT_I4, 32, NB_QT_F32, &q), NB_OK);
    ck_assert_int_eq(nb_gguf_write(q, tmp_path("x.gguf"), NULL), NB_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "token_embd.weight is int4"));
    nb_qmodel_free(q);
    /* and a model without a vocabulary */
    m->vocab.n = 0;
    ck_assert_int_eq(nb_gguf_write(m, tmp_path("x.gguf"), NULL), NB_EINVAL);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_gguf_bad_files) {
    nb_qmodel *m = rt_random_model(32, 64, 1, 2, 2, 260, 16, 1, 3), *q, *r = NULL;
    ck_assert_int_eq(nb_qmodel_quantize(m, NB_QT_Q8_0, 0, NB_QT_F32, &q), NB_OK);
    const char *p = tmp_path("b.gguf");
    ck_assert_int_eq(nb_gguf_write(q, p, NULL), NB_OK);
    check_truncations(p, 40);
    size_t len;
    char *b = rt_slurp(p, &len);
    /* absurd tensor count */
    uint64_t big = (uint64_t)1 << 60;
    memcpy(b + 8, &big, 8);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    ck_assert_int_eq(nb_qmodel_open(p, NULL, &r), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "cannot fit"));
    /* wrong version */
    uint64_t nt = 2 + 9;
    memcpy(b + 8, &nt, 8);
    uint32_t v = 9;
    memcpy(b + 4, &v, 4);
    f = fopen(p, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    ck_assert_int_eq(nb_qmodel_open(p, NULL, &r), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "version 9"));
    free(b);
    /* a foreign file */
    p = tmp_path("foreign.txt");
    f = fopen(p, "wb");
    fputs("this is not a model, just some text that is long enough to have a header........", f);
    fclose(f);
    ck_assert_int_ne(nb_qmodel_open(p, NULL, &r), NB_OK);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "foreign.txt"));
    ck_assert_int_eq(nb_qmodel_open(tmp_path("missing"), NULL, &r), NB_EIO);
    nb_qmodel_free(q);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_llama2c_v2_round_trip) {
    nb_qmodel *s, *r, *r2;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &s), NB_OK);
    const char *p = tmp_path("s.q80.bin"), *p2 = tmp_path("s2.q80.bin");
    int gs;
    ck_assert_int_eq(nb_llama2c_write_v2(s, p, 64, &gs), NB_OK);
    ck_assert_int_eq(gs, 4); /* 64 and 172 share 4 */
    ck_assert_int_eq(file_size(p), 256 + 4 * (2 * 5 * 64 + 64) + (long)(264128 - 2 * 5 * 64 - 64 - 512 * 4 * 2) * 2);
    ck_assert_msg(nb_qmodel_open(p, NULL, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(r->layers[2].w2.type, NB_QT_I8);
    ck_assert_int_eq(r->layers[2].w2.group, 4);
    /* runq.c's layout: each layer's codes are followed by that layer's scales */
    ck_assert_int_eq((char *)r->layers[1].wq.data - (char *)r->layers[0].wq.data, 64 * 64 + 64 * 64 / 4 * 4);
    ck_assert_int_eq((char *)r->layers[0].wq.data - (char *)r->tok_emb.data, 512 * 64 + 512 * 64 / 4 * 4);
    /* writing the int8 model again copies codes and scales: identical file */
    ck_assert_int_eq(nb_llama2c_write_v2(r, p2, 64, NULL), NB_OK);
    size_t l1 = 0, l2 = 0;
    char *b1 = rt_slurp(p, &l1), *b2 = rt_slurp(p2, &l2);
    ck_assert(l1 == l2 && !memcmp(b1, b2, l1));
    free(b1), free(b2);
    ck_assert_int_eq(nb_qmodel_open(p2, NULL, &r2), NB_OK);
    r2->vocab = r->vocab; /* the format carries no vocabulary */
    r->vocab.n = 0, r2->vocab.n = 0;
    same_model(r, r2);
    /* group-4 int8 stays close to fp32 */
    int32_t tok[16] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    float *la = rt_logits(s, tok, 16, 16), *lb = rt_logits(r, tok, 16, 16);
    int agree = 0;
    for (int t = 0; t < 16; t++) agree += rt_argmax(la + t * 512, 512) == rt_argmax(lb + t * 512, 512);
    ck_assert_int_ge(agree, 15);
    free(la), free(lb);
    check_truncations(p, 25);
    /* bad group size in the header */
    size_t len;
    char *b = rt_slurp(p, &len);
    int32_t bad = 3;
    memcpy(b + 37, &bad, 4);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    nb_qmodel *x = NULL;
    ck_assert_int_eq(nb_qmodel_open(p, NULL, &x), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "group size 3"));
    free(b);
    nb_qmodel_free(r2);
    nb_qmodel_free(r);
    nb_qmodel_free(s);
}
END_TEST

START_TEST(test_llama2c_v2_untied) {
    nb_qmodel *m = rt_random_model(64, 128, 2, 4, 2, 300, 32, 0, 4), *r;
    const char *p = tmp_path("u.bin");
    int gs;
    ck_assert_int_eq(nb_llama2c_write_v2(m, p, 0, &gs), NB_OK);
    ck_assert_int_eq(gs, 64);
    ck_assert_int_eq(nb_qmodel_open(p, NULL, &r), NB_OK);
    ck_assert(!r->cfg.tied);
    ck_assert_int_eq(r->classifier.type, NB_QT_I8);
    /* dequantized weights within half a step of the originals */
    float row[128];
    nb_qtensor_dequant_row(&r->classifier, 7, row);
    const float *orig = (const float *)m->classifier.data + 7 * 64;
    for (int j = 0; j < 64; j++) ck_assert(fabsf(row[j] - orig[j]) <= 0.5f * r->classifier.scales[7] * 1.001f + 1e-7f);
    nb_qmodel_free(r);
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_nibble_h5_round_trip) {
    /* odd hidden width: int4 rows of 33 elements (17 bytes, last high nibble unused) */
    nb_qmodel *m = rt_random_model(64, 33, 2, 4, 2, 300, 32, 0, 5);
    struct { nb_qtype t; int group; } cases[] = {{NB_QT_I4, 0}, {NB_QT_I8, 16}, {NB_QT_I4, 8}, {NB_QT_Q4_0, 0}, {NB_QT_F16, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        nb_qmodel *q, *r;
        ck_assert_int_eq(nb_qmodel_quantize(m, cases[i].t, cases[i].group, NB_QT_F16, &q), NB_OK);
        if (cases[i].t == NB_QT_I8) {
            /* an asymmetric tensor: zero points */
            nb_qtensor *t = &q->layers[1].w3;
            int64_t ng = nb_qtensor_ngroups(t);
            t->zeros = nb_qmodel_alloc(q, (size_t)(t->rows * ng));
            for (int64_t k = 0; k < t->rows * ng; k++) t->zeros[k] = (int8_t)(k % 7 - 3);
            q->policy = "weights: int8 per group of 16; layers.1.ffn.w3 asymmetric";
        }
        const char *p = tmp_path("x.nb.h5");
        ck_assert_msg(nb_export_nb_write(q, p) == NB_OK, "%s", nb_errmsg());
        ck_assert_msg(nb_qmodel_open(p, NULL, &r) == NB_OK, "%s", nb_errmsg());
        same_model(q, r);
        if (q->policy) ck_assert_str_eq(q->policy, r->policy);
        if (cases[i].t == NB_QT_Q4_0) ck_assert_int_eq(r->layers[0].w2.type, NB_QT_F16); /* 33 columns */
        if (i == 0) check_truncations(p, 20);
        nb_qmodel_free(r);
        nb_qmodel_free(q);
    }
    nb_qmodel_free(m);
}
END_TEST

START_TEST(test_legacy_llama2c_bad) {
    size_t len = 0;
    char *b = rt_slurp(RT_MODEL, &len);
    const char *p = tmp_path("legacy.bin");
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, len - 4, f);
    fclose(f);
    nb_qmodel *m = NULL;
    ck_assert_int_eq(nb_qmodel_from_llama2c(p, NULL, &m), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "should be 1056540 bytes"));
    int32_t huge = 1 << 29;
    memcpy(b + 4 * 5, &huge, 4);
    f = fopen(p, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
    ck_assert_int_eq(nb_qmodel_from_llama2c(p, NULL, &m), NB_EFORMAT);
    ck_assert_ptr_null(m);
    /* a tokenizer that is too short for the vocabulary */
    char *t = rt_slurp(RT_TOK, &len);
    f = fopen(p, "wb");
    fwrite(t, 1, len / 2, f);
    fclose(f);
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, p, &m), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "truncated at token"));
    free(b), free(t);
}
END_TEST

START_TEST(test_tokenizer_and_detect) {
    nb_qmodel *s, *q, *r;
    ck_assert_int_eq(nb_qmodel_from_llama2c(RT_MODEL, RT_TOK, &s), NB_OK);
    ck_assert_int_eq(nb_runtime_detect(RT_MODEL), NB_FMT_LLAMA2C_FP32);
    ck_assert_int_eq(nb_runtime_detect(RT_TOK), NB_FMT_UNKNOWN);
    ck_assert_int_eq(nb_qmodel_quantize(s, NB_QT_Q8_0, 0, NB_QT_F32, &q), NB_OK);
    char g[512], h[512], l[512], o[512];
    strcpy(g, tmp_path("t.gguf")), strcpy(h, tmp_path("t.h5")), strcpy(l, tmp_path("t.q80")), strcpy(o, tmp_path("other.h5"));
    ck_assert_int_eq(nb_gguf_write(q, g, NULL), NB_OK);
    ck_assert_int_eq(nb_export_nb_write(q, h), NB_OK);
    ck_assert_int_eq(nb_llama2c_write_v2(s, l, 0, NULL), NB_OK);
    ck_assert_int_eq(nb_runtime_detect(g), NB_FMT_GGUF);
    ck_assert_int_eq(nb_runtime_detect(h), NB_FMT_NIBBLE_EXPORT);
    ck_assert_int_eq(nb_runtime_detect(l), NB_FMT_LLAMA2C_Q80);
    ck_assert_str_eq(nb_model_format_name(NB_FMT_GGUF), "gguf");
    /* an HDF5 file that is not an export (e.g. a checkpoint) */
    hid_t f = H5Fcreate(o, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    ck_assert_int_eq(nb_runtime_detect(o), NB_FMT_UNKNOWN);
    nb_qmodel *x = NULL;
    ck_assert_int_eq(nb_qmodel_open(o, NULL, &x), NB_EFORMAT);
    ck_assert_ptr_nonnull(strstr(nb_errmsg(), "not a nibble export"));
    /* the GGUF's vocabulary encodes like llama2.c's tokenizer */
    nb_tokenizer *ref, *tg, *th;
    ck_assert_int_eq(nb_tokenizer_llama2c_load(RT_TOK, 512, &ref), NB_OK);
    ck_assert_int_eq(nb_qmodel_open(g, NULL, &r), NB_OK);
    ck_assert_int_eq(nb_qmodel_tokenizer(r, &tg), NB_OK);
    ck_assert(nb_tokenizer_equal(ref, tg));
    int32_t *ids;
    int64_t n;
    ck_assert_int_eq(nb_tokenizer_encode(tg, "Once upon a time", 16, 1, 0, &ids, &n), NB_OK);
    int32_t want[] = {1, 403, 407, 261, 378};
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(memcmp(ids, want, sizeof want), 0);
    nb_free(ids);
    nb_qmodel_free(r);
    /* the nibble export stores the tokenizer itself */
    ck_assert_int_eq(nb_qmodel_open(h, NULL, &r), NB_OK);
    ck_assert_ptr_nonnull(r->tok);
    ck_assert_int_eq(nb_qmodel_tokenizer(r, &th), NB_OK);
    ck_assert(nb_tokenizer_equal(ref, th));
    nb_qmodel_free(r);
    /* a byte tokenizer given to a model fills its vocabulary */
    nb_qmodel *bm = rt_random_model(32, 64, 1, 2, 2, 258, 16, 1, 9);
    nb_tokenizer *bt;
    ck_assert_int_eq(nb_tokenizer_byte(&bt), NB_OK);
    ck_assert_int_eq(nb_qmodel_set_tokenizer(bm, bt), NB_OK);
    ck_assert_int_eq(bm->vocab.bos, 256);
    nb_qmodel *bq;
    ck_assert_int_eq(nb_qmodel_quantize(bm, NB_QT_I8, 0, NB_QT_F32, &bq), NB_OK); /* keeps the tokenizer */
    ck_assert(nb_tokenizer_equal(bm->tok, bq->tok));
    ck_assert_int_eq(nb_export_nb_write(bq, h), NB_OK);
    ck_assert_int_eq(nb_qmodel_open(h, NULL, &r), NB_OK);
    ck_assert_int_eq(nb_tokenizer_kind(r->tok), NB_TOK_BYTE);
    nb_qmodel_free(r);
    nb_qmodel_free(bq);
    nb_qmodel_free(bm);
    nb_tokenizer_free(ref);
    nb_qmodel_free(q);
    nb_qmodel_free(s);
}
END_TEST

NB_SUITE("formats") {
    tcase_add_test(tc, test_tokenizer_and_detect);
    tcase_add_test(tc, test_gguf_round_trip);
    tcase_add_test(tc, test_gguf_refuses_int_grids);
    tcase_add_test(tc, test_gguf_bad_files);
    tcase_add_test(tc, test_llama2c_v2_round_trip);
    tcase_add_test(tc, test_llama2c_v2_untied);
    tcase_add_test(tc, test_nibble_h5_round_trip);
    tcase_add_test(tc, test_legacy_llama2c_bad);
}
