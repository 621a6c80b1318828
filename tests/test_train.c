/* test_train.c: optimizer math on hand values, clipping, schedules, non-finite detection. */
#include "nbtest.h"

#include <stdio.h>
#include <unistd.h>

#include "../core/simd.h"
#include "../train/optim.h"
#include "../train/plot.h"
#include "../train/schedule.h"
#include "../train/recipe.h"
#include "../train/train.h"
#include "../train/checkpoint.h"

/* a paramset with a linear weight (wd 1), a norm gain (wd 0) and a big parameter for chunking */
static void make_set(nb_paramset *s, int64_t big) {
    nb_param_spec specs[3] = {
        {"layers.0.attn.wq", 2, {2, 3}, NB_PARAM_LINEAR},
        {"layers.0.attn_norm", 1, {5}, NB_PARAM_NORM},
        {"layers.1.attn.wq", 1, {big}, NB_PARAM_LINEAR},
    };
    ck_assert_int_eq(nb_paramset_build(s, 3, specs), NB_OK);
}

START_TEST(test_adamw_hand_values) {
    nb_paramset s;
    make_set(&s, 4);
    nb_optim_config cfg = nb_optim_config_default(NB_OPTIM_ADAMW);
    cfg.beta1 = 0.9f;
    cfg.beta2 = 0.999f;
    cfg.eps = 1e-8f;
    cfg.weight_decay = 0.1f;
    nb_optim o;
    nb_paramset *sets[1] = {&s};
    ck_assert_int_eq(nb_optim_init(&o, &cfg, 1, sets), NB_OK);
    float *w = s.p[0].t.data, *gw = s.p[0].t.grad;
    float *n = s.p[1].t.data, *gn = s.p[1].t.grad;
    s.p[1].lr_mult = 2.0f; /* norm: no decay, double lr */
    w[0] = 1.0f;
    gw[0] = 0.5f;
    n[0] = 1.0f;
    gn[0] = 0.5f;
    /* t=1: m=0.05 v=0.00025, m_hat=0.5 v_hat=0.25 -> update ~1; p = 1*(1 - 0.1*0.1) - 0.1*1 = 0.89 */
    nb_optim_step(&o, 0.1f, 1.0f);
    ck_assert_float_eq_tol(w[0], 0.89f, 1e-6f);
    ck_assert_float_eq_tol(n[0], 1.0f - 0.2f, 1e-6f); /* lr 0.2, no decay */
    ck_assert_float_eq_tol(((float *)o.m[0].p[0].t.data)[0], 0.05f, 1e-7f);
    ck_assert_float_eq_tol(((float *)o.v[0].p[0].t.data)[0], 0.00025f, 1e-8f);
    ck_assert_float_eq(w[1], 0.0f); /* zero gradient, zero param: unchanged */
    /* t=2 with g=-1 (given as 2 * -0.5 through grad_scale): bias corrections 1-0.81, 1-0.998001 */
    gw[0] = -0.5f;
    nb_optim_step(&o, 0.1f, 2.0f);
    double m = 0.9 * 0.05 - 0.1, v = 0.999 * 0.00025 + 0.001;
    double expect = 0.89 * (1 - 0.01) - 0.1 * (m / 0.19) / (sqrt(v / (1 - 0.998001)) + 1e-8);
    ck_assert_float_eq_tol(w[0], (float)expect, 2e-6f);
    ck_assert_int_eq(o.step, 2);
    /* state is named like the parameters (checkpoints save it by name) */
    ck_assert_str_eq(o.m[0].p[2].name, "layers.1.attn.wq");
    ck_assert_int_eq(o.m[0].numel, s.numel);
    nb_optim_free(&o);
    nb_paramset_free(&s);
}
END_TEST

START_TEST(test_sgd_momentum) {
    nb_paramset s;
    make_set(&s, 4);
    nb_optim_config cfg = nb_optim_config_default(NB_OPTIM_SGD);
    cfg.momentum = 0.9f;
    cfg.weight_decay = 0.5f;
    nb_optim o;
    nb_paramset *sets[1] = {&s};
    ck_assert_int_eq(nb_optim_init(&o, &cfg, 1, sets), NB_OK);
    ck_assert_int_eq(o.v[0].numel, 0); /* no second moment for sgd */
    float *n = s.p[1].t.data, *gn = s.p[1].t.grad, *w = s.p[0].t.data, *gw = s.p[0].t.grad;
    n[0] = 1.0f;
    w[0] = 1.0f;
    gn[0] = gw[0] = 0.5f;
    nb_optim_step(&o, 0.1f, 1.0f); /* buf = 0.5; norm p = 0.95; weight p = 1*(1-0.05) - 0.05 = 0.9 */
    ck_assert_float_eq_tol(n[0], 0.95f, 1e-7f);
    ck_assert_float_eq_tol(w[0], 0.9f, 1e-7f);
    nb_optim_step(&o, 0.1f, 1.0f); /* buf = 0.45 + 0.5 = 0.95; p = 0.95 - 0.095 */
    ck_assert_float_eq_tol(n[0], 0.855f, 1e-6f);
    nb_optim_free(&o);
    nb_paramset_free(&s);
}
END_TEST

START_TEST(test_clip_norm) {
    nb_paramset s;
    make_set(&s, 4);
    nb_optim_config cfg = nb_optim_config_default(NB_OPTIM_ADAMW);
    nb_optim o;
    nb_paramset *sets[1] = {&s};
    ck_assert_int_eq(nb_optim_init(&o, &cfg, 1, sets), NB_OK);
    s.p[0].t.grad[0] = 3.0f;
    s.p[2].t.grad[3] = 4.0f;
    double norm = 0;
    ck_assert_int_eq(nb_optim_grad_norm(&o, 1.0f, &norm), NB_OK);
    ck_assert_double_eq_tol(norm, 5.0, 1e-12);
    ck_assert_int_eq(nb_optim_grad_norm(&o, 0.5f, &norm), NB_OK); /* grad accumulation of 2 */
    ck_assert_double_eq_tol(norm, 2.5, 1e-12);
    ck_assert_float_eq_tol(nb_optim_clip_scale(5.0, 1.0f), 0.2f, 1e-6f);
    ck_assert_float_eq(nb_optim_clip_scale(0.5, 1.0f), 1.0f);
    ck_assert_float_eq(nb_optim_clip_scale(5.0, 0.0f), 1.0f); /* clipping off */
    nb_optim_zero_grad(&o);
    ck_assert_int_eq(nb_optim_grad_norm(&o, 1.0f, &norm), NB_OK);
    ck_assert_double_eq(norm, 0.0);
    nb_optim_free(&o);
    nb_paramset_free(&s);
}
END_TEST

/* the norm and the update do not depend on the thread count (fixed chunks, ordered sum) */
START_TEST(test_norm_deterministic_across_threads) {
    int64_t big = 3 * NB_OPTIM_CHUNK + 17;
    nb_paramset s1, s2;
    make_set(&s1, big);
    make_set(&s2, big);
    nbt_fill(s1.grad, s1.numel, 5);
    nbt_fill(s1.data, s1.numel, 6);
    memcpy(s2.grad, s1.grad, s1.numel * sizeof(float));
    memcpy(s2.data, s1.data, s1.numel * sizeof(float));
    nb_optim_config cfg = nb_optim_config_default(NB_OPTIM_ADAMW);
    nb_optim o1, o2;
    nb_paramset *a[1] = {&s1}, *b[1] = {&s2};
    ck_assert_int_eq(nb_optim_init(&o1, &cfg, 1, a), NB_OK);
    ck_assert_int_eq(nb_optim_init(&o2, &cfg, 1, b), NB_OK);
    ck_assert_int_ge(o1.n_chunks, 6);
    int saved = nb_threads_get();
    double n1, n2;
    nb_threads_set(1);
    ck_assert_int_eq(nb_optim_grad_norm(&o1, 1.0f, &n1), NB_OK);
    nb_optim_step(&o1, 1e-3f, 0.5f);
    nb_threads_set(2);
    ck_assert_int_eq(nb_optim_grad_norm(&o2, 1.0f, &n2), NB_OK);
    nb_optim_step(&o2, 1e-3f, 0.5f);
    nb_threads_set(saved);
    ck_assert(memcmp(&n1, &n2, sizeof n1) == 0);
    ck_assert(memcmp(s1.data, s2.data, s1.numel * sizeof(float)) == 0);
    /* and it is the true norm */
    double ref = 0;
    for (int i = 0; i < s1.n; i++)
        for (int64_t j = 0; j < nb_numel(&s1.p[i].t); j++) ref += (double)s1.p[i].t.grad[j] * s1.p[i].t.grad[j];
    ck_assert_double_eq_tol(n1, sqrt(ref), 1e-9 * sqrt(ref));
    nb_optim_free(&o1);
    nb_optim_free(&o2);
    nb_paramset_free(&s1);
    nb_paramset_free(&s2);
}
END_TEST

START_TEST(test_nan_gradient_named) {
    nb_paramset s;
    make_set(&s, 100);
    nb_optim_config cfg = nb_optim_config_default(NB_OPTIM_ADAMW);
    nb_optim o;
    nb_paramset *sets[1] = {&s};
    ck_assert_int_eq(nb_optim_init(&o, &cfg, 1, sets), NB_OK);
    s.p[2].t.grad[37] = NAN;
    double norm;
    ck_assert_int_eq(nb_optim_grad_norm(&o, 1.0f, &norm), NB_ENAN);
    ck_assert_msg(strstr(nb_errmsg(), "gradient of layers.1.attn.wq is nan at element 37"), "%s", nb_errmsg());
    s.p[2].t.grad[37] = 0.0f;
    s.p[1].t.grad[2] = -INFINITY;
    ck_assert_int_eq(nb_optim_grad_norm(&o, 1.0f, &norm), NB_ENAN);
    ck_assert_msg(strstr(nb_errmsg(), "layers.0.attn_norm is -inf at element 2 of (5)"), "%s", nb_errmsg());
    ((float *)s.p[0].t.data)[4] = NAN;
    ck_assert_int_eq(nb_paramsets_check_finite(sets, 1, 0), NB_ENAN);
    ck_assert_msg(strstr(nb_errmsg(), "value of layers.0.attn.wq is nan at element 4 of (2, 3)"), "%s", nb_errmsg());
    nb_optim_free(&o);
    nb_paramset_free(&s);
}
END_TEST

START_TEST(test_schedules) {
    nb_schedule s = {NB_SCHED_COSINE, 1.0f, 0.1f, 10, 111};
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 0), 1.0f / 11, 1e-7f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 9), 10.0f / 11, 1e-7f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 10), 1.0f, 1e-7f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 35), 0.1f + 0.9f * 0.5f * (1.0f + sqrtf(0.5f)), 1e-6f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 60), 0.55f, 1e-6f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 110), 0.1f, 1e-7f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 500), 0.1f, 1e-7f);
    s.kind = NB_SCHED_LINEAR;
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 35), 0.775f, 1e-6f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 60), 0.55f, 1e-6f);
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 110), 0.1f, 1e-7f);
    s.kind = NB_SCHED_CONSTANT;
    ck_assert_float_eq_tol(nb_schedule_lr(&s, 5), 6.0f / 11, 1e-7f);
    ck_assert_float_eq(nb_schedule_lr(&s, 110), 1.0f);
    /* no warm-up, a single step: the peak */
    nb_schedule one = {NB_SCHED_COSINE, 0.5f, 0.0f, 0, 1};
    ck_assert_float_eq(nb_schedule_lr(&one, 0), 0.5f);
    nb_sched_kind k;
    ck_assert_int_eq(nb_sched_kind_parse("linear", &k), NB_OK);
    ck_assert_int_eq(k, NB_SCHED_LINEAR);
    ck_assert_int_eq(nb_sched_kind_parse("exp", &k), NB_EINVAL);
    ck_assert(strstr(nb_errmsg(), "schedule.kind"));
}
END_TEST


START_TEST(test_png_checksums_and_file) {
    /* standard check values */
    ck_assert_uint_eq(nb_crc32(0, (const uint8_t *)"123456789", 9), 0xCBF43926u);
    ck_assert_uint_eq(nb_adler32(1, (const uint8_t *)"Wikipedia", 9), 0x11E60398u);
    double x[5] = {0, 10, 20, 30, 40}, y[5] = {4.2, 3.1, 2.5, 2.2, 2.0}, vy[2] = {3.0, 2.1}, vx[2] = {20, 40};
    nb_plot_series s[2] = {{"train", x, y, 5, 0x1f77b4, 0}, {"val", vx, vy, 2, 0xff7f0e, 1}};
    char path[] = "/tmp/nb_test_plot_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(nb_plot_png(path, 320, 200, "loss", "step", "loss", s, 2), NB_OK);
    FILE *f = fopen(path, "rb");
    unsigned char b[33];
    ck_assert_uint_eq(fread(b, 1, 33, f), 33);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    unlink(path);
    ck_assert(memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0);
    ck_assert(memcmp(b + 12, "IHDR", 4) == 0);
    ck_assert_int_eq((b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19], 320);
    ck_assert_int_eq((b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23], 200);
    /* IHDR CRC covers type + data */
    uint32_t crc = ((uint32_t)b[29] << 24) | (b[30] << 16) | (b[31] << 8) | b[32];
    ck_assert_uint_eq(crc, nb_crc32(0, b + 12, 17));
    /* stored deflate: size = raw bytes + small overhead */
    long raw = (320 * 3 + 1) * 200;
    ck_assert_int_gt(size, raw);
    ck_assert_int_lt(size, raw + 200);
    /* nothing finite to draw is an error, not an empty picture */
    double nan_y[1] = {NAN};
    nb_plot_series bad = {"train", x, nan_y, 1, 0, 0};
    ck_assert_int_eq(nb_plot_png(path, 320, 200, NULL, NULL, NULL, &bad, 1), NB_EINVAL);
}
END_TEST

/* ---- the loop through the library API ---- */

static void tiny_recipe(nb_recipe *r, const char *out_dir, int steps, int B, int accum) {
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "out_dir: %s\nseed: 3\nthreads: 1\nsteps: %d\neval_every: 0\neval_batches: 1\nlog_every: 1\n"
             "ckpt_every: 0\nmodel: {dim: 16, n_layers: 1, n_heads: 2, seq_len: 16}\n"
             "data: {train: %s, tokenizer: byte, batch_size: %d, cache_dir: /tmp/nb_test_train_cache}\n"
             "optim: {lr: 0.01, grad_accum: %d, grad_clip: 0}\nschedule: {kind: constant, warmup_steps: 0}\n",
             out_dir, steps, NB_TEST_DATA("stories260K/reference.json"), B, accum);
    nb_status s = nb_recipe_parse("tiny.yaml", yaml, 0, NULL, r);
    ck_assert_msg(s == NB_OK, "%s", nb_errmsg());
}

static void load_params(const char *path, nb_model *m) {
    nb_ckpt *c = NULL;
    ck_assert_msg(nb_ckpt_open(path, &c) == NB_OK, "%s", nb_errmsg());
    ck_assert_msg(nb_ckpt_load_model(c, m) == NB_OK, "%s", nb_errmsg());
    nb_ckpt_close(c);
}

/* 2 micro-batches of B rows == 1 batch of 2B rows (same windows, same mean gradient) */
START_TEST(test_loop_grad_accum_and_no_step_malloc) {
    char d1[64], d2[64];
    snprintf(d1, sizeof d1, "/tmp/nb_test_train_%d_a", (int)getpid());
    snprintf(d2, sizeof d2, "/tmp/nb_test_train_%d_b", (int)getpid());
    nb_recipe r1, r2;
    tiny_recipe(&r1, d1, 4, 2, 2);
    tiny_recipe(&r2, d2, 4, 4, 1);
    nb_train_result a, b;
    ck_assert_msg(nb_train(&r1, NULL, &a) == NB_OK, "%s", nb_errmsg());
    ck_assert_msg(nb_train(&r2, NULL, &b) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(a.steps_done, 4);
    ck_assert_int_eq(a.step_mallocs, 0);
    ck_assert_int_eq(b.step_mallocs, 0);
    ck_assert(isfinite(a.val_loss) && isfinite(a.train_loss));
    ck_assert_float_eq_tol(a.train_loss, b.train_loss, 1e-4f);
    nb_model ma, mb;
    load_params(a.ckpt, &ma);
    load_params(b.ckpt, &mb);
    ck_assert_int_eq(ma.params.numel, mb.params.numel);
    ck_assert_double_lt(nbt_maxrel(ma.params.data, mb.params.data, ma.params.numel), 1e-4);
    nb_model_free(&ma);
    nb_model_free(&mb);
    nb_train_result_free(&a);
    nb_train_result_free(&b);
    nb_recipe_free(&r1);
    nb_recipe_free(&r2);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s /tmp/nb_test_train_cache", d1, d2);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* a stop request before the first step: a checkpoint of step 0 and NB_EINTR */
START_TEST(test_loop_stop_flag) {
    char d[64];
    snprintf(d, sizeof d, "/tmp/nb_test_train_%d_c", (int)getpid());
    nb_recipe r;
    tiny_recipe(&r, d, 3, 2, 1);
    nb_train_opts o;
    nb_train_opts_init(&o);
    volatile sig_atomic_t stop = 1;
    o.stop = &stop;
    nb_train_result res;
    ck_assert_int_eq(nb_train(&r, &o, &res), NB_EINTR);
    ck_assert(strstr(nb_errmsg(), "interrupted at step 0"));
    ck_assert(strstr(res.ckpt, "ckpt-0.h5"));
    nb_train_result_free(&res);
    /* then a bad init is an error naming the key */
    snprintf(r.model.init, sizeof r.model.init, "%s", "magic");
    ck_assert_int_eq(nb_train(&r, NULL, &res), NB_EINVAL);
    ck_assert(strstr(nb_errmsg(), "model.init"));
    nb_train_result_free(&res);
    nb_recipe_free(&r);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s /tmp/nb_test_train_cache", d);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

NB_SUITE("train") {
    tcase_add_test(tc, test_loop_grad_accum_and_no_step_malloc);
    tcase_add_test(tc, test_loop_stop_flag);
    tcase_add_test(tc, test_png_checksums_and_file);
    tcase_add_test(tc, test_adamw_hand_values);
    tcase_add_test(tc, test_sgd_momentum);
    tcase_add_test(tc, test_clip_norm);
    tcase_add_test(tc, test_norm_deterministic_across_threads);
    tcase_add_test(tc, test_nan_gradient_named);
    tcase_add_test(tc, test_schedules);
}
