/* test_qat_osc.c: weight-oscillation tracking, iterative freezing and dampening of the QAT policy
   (quant.osc_track, quant.osc_momentum, quant.freeze_threshold, quant.osc_damp): behaviour on
   hand-made code sequences, frozen weights held on their grid point, state round trips. */
#include <stdio.h>

#include "../core/status.h"
#include "../train/qat.h"
#include "../train/recipe.h"
#include "nbtest.h"

/* one 2 x 32 linear weight: int4 symmetric per row, observer frozen after its first look, so the
   scale is fixed by the anchors W[r][31] = 7.5 (scale = 7.5 / 7.5 = 1: codes = rint(W)) */
static nb_paramset model;

static void make_model(void) {
    nb_param_spec sp[] = {{.name = "layers.0.attn.wq", .ndim = 2, .shape = {2, 32}, .kind = NB_PARAM_LINEAR}};
    ck_assert_int_eq(nb_paramset_build(&model, 1, sp), NB_OK);
    memset(model.data, 0, (size_t)model.numel * sizeof(float));
    model.data[31] = model.data[63] = 7.5f;
}

static nb_recipe_quant cfg(float momentum, float thr, float damp) {
    nb_recipe_quant c;
    memset(&c, 0, sizeof c);
    c.enabled = 1;
    c.act_start_step = -1;
    c.freeze_observers_step = 0;
    c.scale_lr_mult = 1;
    c.osc_start_step = -1;
    c.osc_momentum = momentum;
    c.freeze_threshold = thr;
    c.osc_damp = damp;
    c.n_weight_rules = 1;
    snprintf(c.weights[0].match, sizeof c.weights[0].match, "*");
    c.weights[0].bits = 4;
    c.weights[0].symmetric = 1;
    snprintf(c.weights[0].granularity, sizeof c.weights[0].granularity, "channel");
    return c;
}

/* one training step as the trainer runs it: begin, forward hook (observers, fake-quant), "optimizer"
   (W[i] = next[i] for the listed elements), end_step; returns the hook's output */
static const float *step(env *e, nb_qat *q, long s, int n, const int *idx, const float *next, float lr) {
    nb_tape_reset(&e->t);
    nb_qat_begin_step(q, s, NULL);
    nb_tensor *y = nb_qat_weight(&e->t, q, 0, &model.p[0].t);
    ck_assert_ptr_nonnull(y);
    static float out[64];
    memcpy(out, y->data, sizeof out);
    for (int k = 0; k < n; k++) model.data[idx[k]] = next[k];
    ck_assert_int_eq(nb_qat_end_step(q, lr), NB_OK);
    return out;
}

static float state_of(nb_qat *q, const char *suffix, int i) {
    char name[128];
    snprintf(name, sizeof name, "layers.0.attn.wq.%s", suffix);
    for (int k = 0; k < nb_qat_state_count(q); k++) {
        nb_qat_array a;
        nb_qat_state_get(q, k, &a);
        if (!strcmp(a.name, name)) return a.data[i];
    }
    ck_abort_msg("no state array %s", name);
    return 0;
}

/* element 0 oscillates 2 -> 3 -> 2 -> 3 ...; element 1 climbs 2 -> 3 -> 4 -> 5 (flips, no
   oscillation); m = 0.5, threshold 0.6 */
START_TEST(test_freeze_hand_sequence) {
    make_model();
    nb_recipe_quant c = cfg(0.5f, 0.6f, 0.0f);
    nb_qat *q = NULL;
    ck_assert_msg(nb_qat_build(&c, &model, 0.0f, &q) == NB_OK, "%s", nb_errmsg());
    env e;
    env_init(&e);
    const int idx[2] = {0, 1};
    /* end_step sees W after the optimizer: the codes below are those of the values set */
    nb_qat_osc_stats st;
    /* step 0: codes recorded (2, 2) */
    step(&e, q, 0, 2, idx, (float[]){2.2f, 2.2f}, 0.0f);
    nb_qat_osc_get(q, &st);
    ck_assert(st.active && st.tracked == 64 && st.flips == 0 && st.frozen == 0);
    ck_assert(state_of(q, "osc_prev", 0) == 2.0f && state_of(q, "osc_ema", 0) == 2.0f);
    /* step 1: 2 -> 3 for both: a flip, not an oscillation (no earlier move) */
    step(&e, q, 1, 2, idx, (float[]){2.8f, 2.8f}, 0.0f);
    nb_qat_osc_get(q, &st);
    ck_assert(st.flips == 2 && st.oscillations == 0);
    ck_assert(state_of(q, "osc_freq", 0) == 0.0f && state_of(q, "osc_dir", 0) == 1.0f);
    ck_assert(state_of(q, "osc_ema", 0) == 2.5f);
    /* step 2: element 0 goes back 3 -> 2 (oscillation, freq 0.5); element 1 3 -> 4 */
    step(&e, q, 2, 2, idx, (float[]){2.2f, 3.8f}, 0.0f);
    nb_qat_osc_get(q, &st);
    ck_assert(st.flips == 2 && st.oscillations == 1 && st.frozen == 0);
    ck_assert(state_of(q, "osc_freq", 0) == 0.5f && state_of(q, "osc_freq", 1) == 0.0f);
    ck_assert(state_of(q, "osc_ema", 0) == 2.25f && state_of(q, "osc_dir", 0) == -1.0f);
    /* step 3: 2 -> 3 again: freq 0.75 > 0.6, ema 2.625 -> frozen at code 3, W = 3 * scale */
    step(&e, q, 3, 2, idx, (float[]){2.6f, 4.8f}, 0.0f);
    nb_qat_osc_get(q, &st);
    ck_assert(st.oscillations == 1 && st.newly_frozen == 1 && st.frozen == 1);
    ck_assert(nb_qat_osc_frozen(q, 0, 0) && !nb_qat_osc_frozen(q, 0, 1));
    ck_assert(model.data[0] == 3.0f && state_of(q, "osc_frozen", 0) == 1.0f && state_of(q, "osc_ema", 0) == 3.0f);
    /* later steps: whatever the optimizer does, the frozen weight returns to its grid point and
       the fake-quant reads exactly 3 * scale; element 1 keeps moving */
    for (long s = 4; s < 8; s++) {
        float a = (float)s * 1.3f - 9.0f;
        const float *y = step(&e, q, s, 2, idx, (float[]){a, 1.0f + (float)s}, 0.0f);
        ck_assert(y[0] == 3.0f);
        ck_assert(model.data[0] == 3.0f);
        nb_qat_osc_get(q, &st);
        ck_assert(st.frozen == 1 && st.newly_frozen == 0 && st.oscillations == 0);
    }
    ck_assert(!nb_qat_osc_frozen(q, 0, 1) && state_of(q, "osc_freq", 1) == 0.0f);
    ck_assert(state_of(q, "osc_n", 0) == 8.0f);
    env_free(&e);
    nb_qat_free(q);
    nb_paramset_free(&model);
}
END_TEST

/* tracking starts at osc_start_step; a clipped code counts as the grid's end code */
START_TEST(test_start_and_clip) {
    make_model();
    nb_recipe_quant c = cfg(1.0f, 0.5f, 0.0f); /* m = 1: freq = o, ema = the last code */
    c.osc_start_step = 2;
    nb_qat *q = NULL;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    env e;
    env_init(&e);
    const int idx[1] = {5};
    model.data[5] = 6.9f;
    nb_qat_osc_stats st;
    step(&e, q, 0, 1, idx, (float[]){-3.0f}, 0.0f);
    nb_qat_osc_get(q, &st);
    ck_assert(!st.active && st.tracked == 0);
    step(&e, q, 1, 1, idx, (float[]){7.0f}, 0.0f);
    ck_assert(state_of(q, "osc_n", 0) == 0.0f); /* nothing tracked before step 2 */
    step(&e, q, 2, 1, idx, (float[]){20.0f}, 0.0f); /* first tracked: code 7 (20 clips) recorded */
    step(&e, q, 3, 1, idx, (float[]){6.0f}, 0.0f);  /* 7 -> 6: down */
    ck_assert(!nb_qat_osc_frozen(q, 0, 5));
    step(&e, q, 4, 1, idx, (float[]){30.0f}, 0.0f); /* 6 -> 7 (clipped): oscillation, freq 1, ema 7 */
    ck_assert(nb_qat_osc_frozen(q, 0, 5) && model.data[5] == 7.0f);
    step(&e, q, 5, 1, idx, (float[]){-1.0f}, 0.0f); /* the optimizer's move is undone */
    ck_assert(model.data[5] == 7.0f);
    env_free(&e);
    nb_qat_free(q);
    nb_paramset_free(&model);
}
END_TEST

/* dampening: W -= lr * damp * (W - grid point), on the step's grid; frozen weights are exempt */
START_TEST(test_damp) {
    make_model();
    nb_recipe_quant c = cfg(0.01f, 0.0f, 100.0f);
    nb_qat *q = NULL;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    env e;
    env_init(&e);
    const int idx[2] = {2, 3};
    step(&e, q, 0, 2, idx, (float[]){1.3f, -2.4f}, 0.001f); /* first step records, no pull */
    ck_assert(model.data[2] == 1.3f && model.data[3] == -2.4f);
    step(&e, q, 1, 0, idx, NULL, 0.001f);                   /* pull 10 % of the way */
    ck_assert(fabsf(model.data[2] - (1.3f - 0.1f * 0.3f)) < 1e-6f);
    ck_assert(fabsf(model.data[3] - (-2.4f + 0.1f * 0.4f)) < 1e-6f);
    ck_assert(fabsf(model.data[31] - (7.5f - 0.1f * 0.5f)) < 1e-6f); /* the anchor too (its grid point is 7) */
    env_free(&e);
    nb_qat_free(q);
    nb_paramset_free(&model);
}
END_TEST

/* the state arrays carry everything: a second policy given W and the arrays mid-run continues
   bit for bit (what checkpoint resume relies on) */
START_TEST(test_state_round_trip) {
    make_model();
    nb_recipe_quant c = cfg(0.2f, 0.3f, 10.0f);
    nb_qat *q = NULL, *q2 = NULL;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    for (int i = 0; i < 31; i++) model.data[i] = model.data[32 + i] = (float)(i % 13) * 0.55f - 3.1f;
    env e;
    env_init(&e);
    int idx[62];
    float next[62];
    for (int i = 0; i < 62; i++) idx[i] = i < 31 ? i : i + 1;
    nb_rng rng = nb_rng_make(7, 0);
    float saved_w[64], saved_w2[64];
    int n_arrays = nb_qat_state_count(q);
    float *saved = malloc(sizeof(float) * 64 * 8);
    for (long s = 0; s < 30; s++) {
        if (s == 15) { /* snapshot: W and the state arrays */
            memcpy(saved_w, model.data, sizeof saved_w);
            float *p = saved;
            for (int k = 0; k < n_arrays; k++) {
                nb_qat_array a;
                nb_qat_state_get(q, k, &a);
                memcpy(p, a.data, (size_t)a.n * sizeof(float));
                p += a.n;
            }
        }
        for (int i = 0; i < 62; i++) next[i] = model.data[idx[i]] + (nb_rng_uniform(&rng) - 0.5f) * 1.5f;
        step(&e, q, s, 62, idx, next, 0.01f);
    }
    nb_qat_osc_stats st;
    nb_qat_osc_get(q, &st);
    ck_assert_msg(st.frozen > 0 && st.frozen < 64, "frozen %lld", (long long)st.frozen);
    memcpy(saved_w2, model.data, sizeof saved_w2);
    /* replay from step 15 with a fresh policy */
    memcpy(model.data, saved_w, sizeof saved_w);
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q2), NB_OK);
    ck_assert_int_eq(nb_qat_state_count(q2), n_arrays);
    const float *p = saved;
    for (int k = 0; k < n_arrays; k++) {
        nb_qat_array a;
        nb_qat_state_get(q2, k, &a);
        ck_assert_int_eq(nb_qat_state_set(q2, a.name, p, a.n), NB_OK);
        p += a.n;
    }
    rng = nb_rng_make(7, 0);
    for (long s = 0; s < 30; s++) {
        for (int i = 0; i < 62; i++) next[i] = model.data[idx[i]] + (nb_rng_uniform(&rng) - 0.5f) * 1.5f;
        if (s >= 15) step(&e, q2, s, 62, idx, next, 0.01f);
    }
    ck_assert(!memcmp(model.data, saved_w2, sizeof saved_w2));
    for (int k = 0; k < n_arrays; k++) {
        nb_qat_array a, b;
        nb_qat_state_get(q, k, &a);
        nb_qat_state_get(q2, k, &b);
        ck_assert_msg(!memcmp(a.data, b.data, (size_t)a.n * sizeof(float)), "%s differs", a.name);
    }
    free(saved);
    env_free(&e);
    nb_qat_free(q);
    nb_qat_free(q2);
    nb_paramset_free(&model);
}
END_TEST

/* off by default: no state arrays, no tracking; bad values are clear errors */
START_TEST(test_off_and_errors) {
    make_model();
    nb_recipe_quant c = cfg(0.01f, 0.0f, 0.0f);
    nb_qat *q = NULL;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    ck_assert_int_eq(nb_qat_state_count(q), 3); /* obs_lo, obs_hi, obs_n */
    ck_assert_int_eq(nb_qat_end_step(q, 0.1f), NB_OK);
    nb_qat_osc_stats st;
    nb_qat_osc_get(q, &st);
    ck_assert(!st.active);
    nb_qat_free(q);
    c.osc_track = 1;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    ck_assert_int_eq(nb_qat_state_count(q), 9);
    nb_qat_free(q);
    c.osc_momentum = 0.0f;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "quant.osc_momentum: expected 0 < m <= 1"), "%s", nb_errmsg());
    c.osc_momentum = 0.01f;
    c.freeze_threshold = 1.5f;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "quant.freeze_threshold (1.5) must be in 0..1"), "%s", nb_errmsg());
    /* threshold annealing: cosine from freeze_threshold to freeze_threshold_final */
    c.freeze_threshold = 0.1f;
    c.freeze_threshold_final = 0.02f;
    c.freeze_anneal_start = 10;
    c.freeze_anneal_end = 10;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "quant.freeze_anneal_end (10)"), "%s", nb_errmsg());
    c.freeze_anneal_end = 30;
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    ck_assert(nb_qat_freeze_threshold_at(q, 0) == 0.1f && nb_qat_freeze_threshold_at(q, 10) == 0.1f);
    ck_assert(fabsf(nb_qat_freeze_threshold_at(q, 20) - 0.06f) < 1e-6f);
    ck_assert(nb_qat_freeze_threshold_at(q, 30) == 0.02f && nb_qat_freeze_threshold_at(q, 1000) == 0.02f);
    nb_qat_free(q);
    c.freeze_anneal_end = 0; /* constant */
    ck_assert_int_eq(nb_qat_build(&c, &model, 0.0f, &q), NB_OK);
    ck_assert(nb_qat_freeze_threshold_at(q, 20) == 0.1f);
    nb_qat_free(q);
    nb_paramset_free(&model);
    /* recipe keys: parsed, range-checked */
    nb_recipe r;
    char *ov[] = {"quant.freeze_threshold=0.02", "quant.osc_momentum=0.05"};
    ck_assert_msg(nb_recipe_parse("t", "name: t\n", 2, ov, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert(r.quant.freeze_threshold == 0.02f && r.quant.osc_momentum == 0.05f && r.quant.osc_start_step == -1);
    nb_recipe_free(&r);
    char *bad[] = {"quant.freeze_threshold=2"};
    ck_assert_int_eq(nb_recipe_parse("t", "name: t\n", 1, bad, &r), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "quant.freeze_threshold"), "%s", nb_errmsg());
    nb_recipe_free(&r);
    char *bad2[] = {"quant.osc_momentum=0"};
    ck_assert_int_eq(nb_recipe_parse("t", "name: t\n", 1, bad2, &r), NB_EINVAL);
    ck_assert_msg(strstr(nb_errmsg(), "quant.osc_momentum"), "%s", nb_errmsg());
    nb_recipe_free(&r);
}
END_TEST

NB_SUITE("qat_osc") {
    tcase_add_test(tc, test_freeze_hand_sequence);
    tcase_add_test(tc, test_start_and_clip);
    tcase_add_test(tc, test_damp);
    tcase_add_test(tc, test_state_round_trip);
    tcase_add_test(tc, test_off_and_errors);
}
