/* test_regress.c: regression tests for what the fuzz targets (tests/fuzz/) found, and absurd
   headers for every loader: each must come back as a clean error naming the file, before any
   allocation sized by the file. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/fp16.h"
#include "../data/dataset.h"
#include "../ops/kernels/qdot.h"
#include "../train/checkpoint.h"
#include "../train/gguf.h"
#include "../train/import_llama2c.h"
#include "../train/llama2c.h"
#include "rt_util.h"

#define CORPUS NB_SOURCE_ROOT "/tests/fuzz/corpus/"


static char tmp_path[256];
static const char *tmp(const char *ext) {
    snprintf(tmp_path, sizeof tmp_path, "/tmp/nb-regress-%d%s", (int)getpid(), ext);
    return tmp_path;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *b = rt_slurp(from, &n);
    ck_assert_msg(b != NULL, "missing %s", from);
    FILE *f = fopen(to, "wb");
    ck_assert(f && fwrite(b, 1, n, f) == n);
    fclose(f);
    free(b);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert(f && fwrite(p, 1, n, f) == n);
    fclose(f);
}

/* the error names the file */
static void expect_fail(nb_status st, nb_status want, const char *path) {
    ck_assert_msg(st == want, "status %s, want %s (%s)", nb_status_name(st), nb_status_name(want), nb_errmsg());
    ck_assert_msg(strstr(nb_errmsg(), path) != NULL, "message does not name %s: %s", path, nb_errmsg());
}

/* fuzz_llama2c_v2 (found 2026-11-23): a model whose finite weights overflow the activations to
   Inf/NaN made the int8/Q8_0 activation quantizers convert NaN to int8 (undefined behaviour,
   UBSan). Now such groups get code 0 and a NaN scale, so the output is NaN, not garbage. */
START_TEST(test_act_quant_nonfinite) {
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 32) * 0.25f;
    x[5] = NAN;
    x[40] = INFINITY;
    int8_t q[64];
    float s[2];
    nb_quantize_act_i8_ref(x, q, s, 64, 32);
    ck_assert(isnan(s[0]) && isnan(s[1]));
    ck_assert_int_eq(q[5], 0);
    nb_block_q8_0 b[2];
    nb_quantize_act_q8_0_ref(x, b, 64);
    ck_assert(!isfinite(nb_fp16_to_fp32(b[0].d)) && !isfinite(nb_fp16_to_fp32(b[1].d)));
    ck_assert_int_eq(b[0].qs[5], 0);
    /* finite input is unchanged: codes in range, scale amax / 127 */
    x[5] = 0.5f, x[40] = 1.0f;
    nb_quantize_act_i8_ref(x, q, s, 64, 32);
    ck_assert(fabsf(s[0] - 8.0f / 127.0f) < 1e-7f);
    ck_assert_int_eq(q[0], -127);
}
END_TEST

START_TEST(test_v2_overflowing_model_runs) {
    nb_qmodel *m = rt_random_model(32, 64, 1, 4, 2, 40, 8, 1, 5);
    ck_assert(m != NULL);
    float *w = (float *)m->layers[0].wq.data;
    for (int i = 0; i < 32 * 32; i++) w[i] *= 1e37f; /* finite, but q overflows */
    float *e = (float *)m->tok_emb.data;
    for (int i = 0; i < 40 * 32; i++) e[i] *= 1e30f;
    const char *p = tmp(".bin");
    ck_assert_int_eq(nb_llama2c_write_v2(m, p, 32, NULL), NB_OK);
    nb_qmodel_free(m);
    nb_qmodel *q;
    ck_assert_int_eq(nb_llama2c_read_v2(p, &q), NB_OK);
    float *lg = rt_logits(q, (int32_t[]){1, 2, 3}, 3, 3);
    ck_assert(lg != NULL); /* UBSan run: no NaN-to-int conversion on the way */
    free(lg);
    nb_qmodel_free(q);
    remove(p);
}
END_TEST

/* llama2.c legacy .bin: absurd headers */
START_TEST(test_llama2c_absurd_headers) {
    const char *p = tmp(".bin");
    const int32_t bad[][7] = {
        {8, 16, 1, 2, 1, 0, 8},                 /* vocab 0 */
        {8, 16, 1, 2, 1, -5, 8},                /* vocab -5: untied 5, but the file is too short */
        {-8, 16, 1, 2, 1, 16, 8},               /* negative dim */
        {1 << 30, 1 << 30, 1024, 1, 1, 1 << 22, 1 << 20}, /* ~10^18 parameters */
        {8, 16, 1, 3, 1, 16, 8},                /* heads do not divide dim */
        {8, 16, 1, 2, 4, 16, 8},                /* more kv heads than heads */
        {65536, 65536, 1024, 1024, 1024, 32000, 2048}, /* within limits, far beyond the file */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[28 + 256] = {0};
        memcpy(buf, bad[i], 28);
        write_bytes(p, buf, sizeof buf);
        nb_model_config c;
        expect_fail(nb_llama2c_read_config(p, &c), NB_EFORMAT, p);
        nb_model m;
        expect_fail(nb_llama2c_load(p, &m), NB_EFORMAT, p);
        nb_qmodel *q;
        ck_assert_int_ne(nb_qmodel_from_llama2c(p, NULL, &q), NB_OK);
        ck_assert(strstr(nb_errmsg(), p) != NULL);
    }
    remove(p);
}
END_TEST

/* GGUF: counts beyond the file */
START_TEST(test_gguf_absurd_counts) {
    const char *p = tmp(".gguf");
    uint8_t b[64] = {'G', 'G', 'U', 'F', 3, 0, 0, 0};
    const uint64_t counts[][2] = {{(uint64_t)1 << 40, 0}, {0, (uint64_t)1 << 40}, {~0ULL, ~0ULL}, {5, 5}};
    for (size_t i = 0; i < 4; i++) {
        memcpy(b + 8, &counts[i][0], 8);
        memcpy(b + 16, &counts[i][1], 8);
        write_bytes(p, b, sizeof b);
        nb_qmodel *q = NULL;
        expect_fail(nb_gguf_read(p, &q), NB_EFORMAT, p);
        ck_assert(q == NULL);
    }
    remove(p);
}
END_TEST

/* llama2.c v2: sizes beyond the file */
START_TEST(test_v2_absurd_header) {
    const char *p = tmp(".bin");
    uint8_t b[256 + 64] = {0};
    uint32_t magic = NB_LLAMA2C_MAGIC;
    int32_t h[8] = {2, 4096, 11008, 32, 32, 32, 32000, 2048};
    memcpy(b, &magic, 4);
    memcpy(b + 4, h, sizeof h);
    b[36] = 1;
    int32_t gs = 64;
    memcpy(b + 37, &gs, 4);
    write_bytes(p, b, sizeof b);
    nb_qmodel *q = NULL;
    expect_fail(nb_llama2c_read_v2(p, &q), NB_EFORMAT, p);
    h[6] = -5; /* vocab -5 */
    memcpy(b + 4, h, sizeof h);
    write_bytes(p, b, sizeof b);
    expect_fail(nb_llama2c_read_v2(p, &q), NB_EFORMAT, p);
    remove(p);
}
END_TEST

/* set integer attribute `name` of object `obj` in an HDF5 file (same type kept) */
static void h5_set_int(const char *path, const char *obj, const char *name, int32_t v) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    ck_assert(o >= 0);
    /* delete and recreate (HDF5 1.10 cannot H5Awrite some attributes in place: "can't locate
       open attribute") */
    ck_assert_msg(H5Adelete(o, name) >= 0, "no attribute %s on %s", name, obj);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0, "write %s %s", obj, name);
    H5Aclose(a), H5Sclose(sp), H5Oclose(o);
    H5Fclose(f);
}

/* A checkpoint whose config asks for ~10^9 parameters (3.5 GB) in a 27 KB file: refused before the
   parameter block is allocated (nb_ckpt_load_model zeroed it all first). */
START_TEST(test_ckpt_config_beyond_file) {
    const char *p = tmp(".h5");
    copy_file(CORPUS "checkpoint/tiny.h5", p);
    h5_set_int(p, "/config", "dim", 2048);
    h5_set_int(p, "/config", "n_layers", 16);
    h5_set_int(p, "/config", "n_heads", 16);
    h5_set_int(p, "/config", "n_kv_heads", 16);
    h5_set_int(p, "/config", "hidden_dim", 5632);
    h5_set_int(p, "/config", "vocab_size", 32000);
    /* edited outside nibble: the seal no longer matches (refused), so re-seal to reach the check */
    ck_assert_int_eq(nb_ckpt_open(p, &(nb_ckpt *){NULL}), NB_EFORMAT);
    ck_assert_int_eq(nb_ckpt_seal_file(p), NB_OK);
    nb_ckpt *c;
    nb_status so = nb_ckpt_open(p, &c);
    if (so != NB_OK) { /* refused even earlier, when the config is read: also right */
        expect_fail(so, NB_EFORMAT, p);
        return;
    }
    nb_alloc_fail_after(0); /* any allocation now would fail the test with NB_ENOMEM */
    nb_model m;
    nb_status st = nb_ckpt_load_model(c, &m);
    nb_alloc_fail_after(-1);
    expect_fail(st, NB_EFORMAT, p);
    ck_assert(strstr(nb_errmsg(), "parameters") != NULL);
    nb_ckpt_close(c);
    nb_model m2;
    expect_fail(nb_model_load_file(p, &m2), NB_EFORMAT, p);
    (void)rt_argmax, (void)rt_json_ints;
    remove(p);
}
END_TEST

/* A token dataset whose /train claims 2^34 tokens (unallocated: HDF5 would read fill values) and
   whose n_tokens agrees: refused before allocating 64 GB. */
START_TEST(test_dataset_extent_beyond_storage) {
    const char *p = tmp(".h5");
    copy_file(CORPUS "dataset/byte.h5", p);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(f >= 0);
    ck_assert(H5Ldelete(f, "train", H5P_DEFAULT) >= 0);
    hsize_t n = (hsize_t)1 << 34;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE);
    hid_t d = H5Dcreate2(f, "train", H5T_STD_U16LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert(d >= 0);
    hid_t asp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(d, "n_tokens", H5T_STD_I64LE, asp, H5P_DEFAULT, H5P_DEFAULT);
    int64_t v = (int64_t)n;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a), H5Sclose(asp), H5Dclose(d), H5Pclose(dcpl), H5Sclose(sp), H5Fclose(f);
    nb_tokens t;
    expect_fail(nb_dataset_open_split(p, "train", &t), NB_EFORMAT, p);
    ck_assert(strstr(nb_errmsg(), "claims") != NULL);
    ck_assert(t.ids == NULL);
    /* the untouched split still loads */
    ck_assert_int_eq(nb_dataset_open_split(p, "val", &t), NB_OK);
    nb_tokens_free(&t);
    remove(p);
}
END_TEST

/* Every seed of every corpus loads (the corpora are the fuzzers' starting points: a seed that
   stops loading means a format changed and the seeds need tests/fuzz/tools/make_seeds.c). */
START_TEST(test_seeds_load) {
    nb_qmodel *q;
    const char *qm[] = {"gguf/q8_0.gguf", "gguf/q4_0.gguf", "llama2c_v2/tied_gs32.bin", "export_nb/int4_g16.h5",
                        "llama2c_bin/untied_gqa.bin"};
    for (size_t i = 0; i < sizeof qm / sizeof qm[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, CORPUS "%s", qm[i]);
        ck_assert_msg(nb_qmodel_open(p, NULL, &q) == NB_OK, "%s: %s", p, nb_errmsg());
        nb_qmodel_free(q);
    }
    nb_model m;
    ck_assert_msg(nb_model_load_file(CORPUS "checkpoint/tiny.h5", &m) == NB_OK, "%s", nb_errmsg());
    nb_model_free(&m);
    nb_tokens t;
    ck_assert_msg(nb_dataset_open_split(CORPUS "dataset/char.h5", "train", &t) == NB_OK, "%s", nb_errmsg());
    nb_tokens_free(&t);
}
END_TEST

NB_SUITE("regress") {
    tcase_add_test(tc, test_act_quant_nonfinite);
    tcase_add_test(tc, test_v2_overflowing_model_runs);
    tcase_add_test(tc, test_llama2c_absurd_headers);
    tcase_add_test(tc, test_gguf_absurd_counts);
    tcase_add_test(tc, test_v2_absurd_header);
    tcase_add_test(tc, test_ckpt_config_beyond_file);
    tcase_add_test(tc, test_dataset_extent_beyond_storage);
    tcase_add_test(tc, test_seeds_load);
}
