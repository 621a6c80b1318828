/* test_recipe.c: recipe defaults, parsing, round trip, overrides, every kind of bad input, reference. */
#include "nbtest.h"

#include <stdio.h>
#include <unistd.h>

#include "../train/recipe.h"

/* Two recipes hold the same values (the file name and the text are not values). */
static int same_values(const nb_recipe *a, const nb_recipe *b) {
    static nb_recipe x, y; /* large: keep them off the stack */
    x = *a, y = *b;
    memset(x.path, 0, sizeof x.path), memset(y.path, 0, sizeof y.path);
    x.text = y.text = NULL;
    return memcmp(&x, &y, sizeof x) == 0;
}

/* Parses yaml (with overrides) expecting failure; returns the message. */
static const char *parse_err(const char *yaml, int n, char **ovs) {
    static nb_recipe r;
    nb_status s = nb_recipe_parse("x.yaml", yaml, n, ovs, &r);
    ck_assert_msg(s == NB_EINVAL, "expected NB_EINVAL for <<%s>>, got %d (%s)", yaml, s, nb_errmsg());
    ck_assert_ptr_null(r.text);
    nb_recipe_free(&r);
    return nb_errmsg();
}

static const char *override_err(const char *ov) {
    char *ovs[1] = {(char *)ov};
    return parse_err("name: t\n", 1, ovs);
}

#define ASSERT_ERR(yaml, expected) ck_assert_str_eq(parse_err(yaml, 0, NULL), expected)
#define ASSERT_OV_ERR(ov, expected) ck_assert_str_eq(override_err(ov), expected)

static const char *full_yaml = "name: shakespeare-qat\n"
                               "out_dir: runs/shakespeare_qat\n"
                               "seed: 18446744073709551615\n"
                               "threads: 2\n"
                               "steps: 3000\n"
                               "eval_every: 250\n"
                               "on_nan: skip\n"
                               "sample_prompt: \"ROMEO:\\n\\t\\\"hi\\\" caf\\u00e9 \\U0001F600\"\n"
                               "model:\n"
                               "  dim: 96\n"
                               "  n_layers: 3\n"
                               "  n_heads: 6\n"
                               "  n_kv_heads: 2\n"
                               "  hidden_dim: 256\n"
                               "  seq_len: 64\n"
                               "  norm_eps: 1e-6\n"
                               "  rope_theta: 500000.0\n"
                               "  tied_embeddings: false\n"
                               "  dropout: 0.1\n"
                               "data:\n"
                               "  tokenizer: char\n"
                               "  batch_size: 12\n"
                               "  val_fraction: .05\n"
                               "optim:\n"
                               "  name: sgd\n"
                               "  lr: 3e-4\n"
                               "  min_lr: 0\n"
                               "  beta2: 0.999\n"
                               "  grad_clip: 0\n"
                               "  grad_accum: 4\n"
                               "schedule: {kind: linear, warmup_steps: 0}\n"
                               "quant:\n"
                               "  enabled: yes\n"
                               "  start_step: 2000\n"
                               "  act_start_step: 2500\n"
                               "  freeze_observers_step: 2800\n"
                               "  lambda_start: 2000\n"
                               "  lambda_end: 2200\n"
                               "  anneal_from_bits: 8\n"
                               "  anneal_start: 2000\n"
                               "  anneal_end: 2500\n"
                               "  scale_lr_mult: 0.1\n"
                               "  weights:\n"
                               "    - match: \"layers.*.ffn.w2\"\n"
                               "      bits: 0\n"
                               "    - match: \"layers.*\"\n"
                               "      bits: 4\n"
                               "      granularity: group\n"
                               "      group_size: 64\n"
                               "      estimator: lsq\n"
                               "      scale_dtype: f16\n"
                               "      tail: short_group\n"
                               "    - {match: \"*\", bits: 2, symmetric: false, estimator: lsq+, observer: mse}\n"
                               "  activations:\n"
                               "    - bits: 8\n"
                               "      observer: percentile\n"
                               "      percentile: 99.9\n"
                               "      granularity: tensor\n"
                               "      estimator: pact\n"
                               "distill:\n"
                               "  enabled: true\n"
                               "  alpha: 0.25\n"
                               "  temperature: 4\n";

START_TEST(test_defaults_validate) {
    static nb_recipe r, back;
    nb_recipe_defaults(&r);
    ck_assert_int_eq(nb_recipe_validate(&r), NB_OK);
    ck_assert_int_eq(r.model.dim, 128);
    ck_assert_int_eq(r.seed, 1337);
    ck_assert_float_eq(r.optim.lr, 1e-3f);
    ck_assert_float_eq(r.optim.beta2, 0.95f);
    ck_assert_float_eq(r.optim.eps, 1e-8f);
    ck_assert_float_eq(r.optim.weight_decay, 0.1f);
    ck_assert_float_eq(r.optim.grad_clip, 1.0f);
    ck_assert_str_eq(r.schedule.kind, "cosine");
    ck_assert_int_eq(r.schedule.warmup_steps, 100);
    ck_assert_int_eq(r.log_every, 10);
    ck_assert_int_eq(r.keep_last, 3);
    ck_assert_str_eq(r.on_nan, "stop");
    ck_assert_int_eq(r.quant.enabled, 0);
    ck_assert_int_eq(r.quant.act_start_step, -1);
    ck_assert_int_eq(r.quant.freeze_observers_step, -1);
    ck_assert_float_eq(r.distill.alpha, 0.5f);
    ck_assert_float_eq(r.distill.temperature, 2.0f);
    ck_assert_ptr_null(r.text);
    /* the printed defaults parse back to the defaults */
    char *y = nb_recipe_to_yaml(&r);
    ck_assert_ptr_nonnull(y);
    ck_assert_int_eq(nb_recipe_parse("defaults.yaml", y, 0, NULL, &back), NB_OK);
    ck_assert(same_values(&r, &back));
    nb_free(y);
    nb_recipe_free(&back);
}
END_TEST

START_TEST(test_full_example) {
    static nb_recipe r;
    ck_assert_msg(nb_recipe_parse("full.yaml", full_yaml, 0, NULL, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_str_eq(r.path, "full.yaml");
    ck_assert_str_eq(r.name, "shakespeare-qat");
    ck_assert_str_eq(r.out_dir, "runs/shakespeare_qat");
    ck_assert(r.seed == 18446744073709551615ull);
    ck_assert_int_eq(r.threads, 2);
    ck_assert_int_eq(r.steps, 3000);
    ck_assert_str_eq(r.on_nan, "skip");
    ck_assert_str_eq(r.sample_prompt, "ROMEO:\n\t\"hi\" caf\xc3\xa9 \xf0\x9f\x98\x80");
    ck_assert_int_eq(r.model.dim, 96);
    ck_assert_int_eq(r.model.n_heads, 6);
    ck_assert_int_eq(r.model.n_kv_heads, 2);
    ck_assert_int_eq(r.model.hidden_dim, 256);
    ck_assert_float_eq(r.model.norm_eps, 1e-6f);
    ck_assert_float_eq(r.model.rope_theta, 500000.0f);
    ck_assert_int_eq(r.model.tied_embeddings, 0);
    ck_assert_float_eq(r.model.dropout, 0.1f);
    ck_assert_str_eq(r.model.init, "random");
    ck_assert_str_eq(r.data.tokenizer, "char");
    ck_assert_int_eq(r.data.batch_size, 12);
    ck_assert_float_eq(r.data.val_fraction, 0.05f);
    ck_assert_str_eq(r.optim.name, "sgd");
    ck_assert_float_eq(r.optim.lr, 3e-4f);
    ck_assert_float_eq(r.optim.beta1, 0.9f); /* untouched default */
    ck_assert_float_eq(r.optim.beta2, 0.999f);
    ck_assert_int_eq(r.optim.grad_accum, 4);
    ck_assert_str_eq(r.schedule.kind, "linear");
    ck_assert_int_eq(r.schedule.warmup_steps, 0);
    const nb_recipe_quant *q = &r.quant;
    ck_assert_int_eq(q->enabled, 1);
    ck_assert_int_eq(q->start_step, 2000);
    ck_assert_int_eq(q->act_start_step, 2500);
    ck_assert_int_eq(q->lambda_end, 2200);
    ck_assert_int_eq(q->anneal_from_bits, 8);
    ck_assert_float_eq(q->scale_lr_mult, 0.1f);
    ck_assert_int_eq(q->n_weight_rules, 3);
    ck_assert_str_eq(q->weights[0].match, "layers.*.ffn.w2");
    ck_assert_int_eq(q->weights[0].bits, 0);
    ck_assert_str_eq(q->weights[0].granularity, "channel"); /* rule default */
    ck_assert_int_eq(q->weights[1].bits, 4);
    ck_assert_str_eq(q->weights[1].granularity, "group");
    ck_assert_int_eq(q->weights[1].group_size, 64);
    ck_assert_str_eq(q->weights[1].estimator, "lsq");
    ck_assert_str_eq(q->weights[1].scale_dtype, "f16");
    ck_assert_str_eq(q->weights[1].tail, "short_group");
    ck_assert_int_eq(q->weights[1].symmetric, 1);
    ck_assert_str_eq(q->weights[2].match, "*");
    ck_assert_int_eq(q->weights[2].bits, 2);
    ck_assert_int_eq(q->weights[2].symmetric, 0);
    ck_assert_str_eq(q->weights[2].estimator, "lsq+");
    ck_assert_str_eq(q->weights[2].observer, "mse");
    ck_assert_float_eq(q->weights[2].ema_decay, 0.99f);
    ck_assert_float_eq(q->weights[2].percentile, 99.99f);
    ck_assert_int_eq(q->n_act_rules, 1);
    ck_assert_str_eq(q->acts[0].match, "*");
    ck_assert_str_eq(q->acts[0].granularity, "tensor");
    ck_assert_int_eq(q->acts[0].symmetric, 1); /* rule default */
    ck_assert_str_eq(q->acts[0].observer, "percentile");
    ck_assert_float_eq(q->acts[0].percentile, 99.9f);
    ck_assert_str_eq(q->acts[0].estimator, "pact");
    ck_assert_int_eq(r.distill.enabled, 1);
    ck_assert_float_eq(r.distill.alpha, 0.25f);
    ck_assert_float_eq(r.distill.temperature, 4.0f);
    ck_assert_ptr_nonnull(r.text);
    ck_assert(strstr(r.text, "name: \"shakespeare-qat\"") != NULL);
    nb_recipe_free(&r);
    ck_assert_ptr_null(r.text);
    nb_recipe_free(&r); /* twice is fine */
}
END_TEST

START_TEST(test_round_trip) {
    static nb_recipe r, back, again;
    char *ovs[] = {"name=weird \"name\" \\ \x01 \xe2\x80\xa8 \xc2\x85 end", "optim.lr=0.1", "model.init_std=1e-7",
                   "quant.activations.0.ema_decay=0.123456789"};
    ck_assert_msg(nb_recipe_parse("full.yaml", full_yaml, 4, ovs, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_str_eq(r.name, "weird \"name\" \\ \x01 \xe2\x80\xa8 \xc2\x85 end");
    /* the resolved text (with its override comments) and to_yaml both read back identically */
    ck_assert_int_eq(nb_recipe_parse("text", r.text, 0, NULL, &back), NB_OK);
    ck_assert(same_values(&r, &back));
    char *y = nb_recipe_to_yaml(&back);
    ck_assert_int_eq(nb_recipe_parse("yaml", y, 0, NULL, &again), NB_OK);
    ck_assert(same_values(&r, &again));
    ck_assert(strcmp(strstr(y, "\nname: "), strstr(again.text, "\nname: ")) == 0); /* after the comments */
    ck_assert(strstr(r.text, "# override: optim.lr=0.1") != NULL);
    /* shortest float that reads back */
    ck_assert(strstr(y, "  lr: 0.1\n") != NULL);
    ck_assert(strstr(y, "  norm_eps: 1e-06\n") != NULL);
    nb_free(y);
    nb_recipe_free(&r);
    nb_recipe_free(&back);
    nb_recipe_free(&again);
}
END_TEST

START_TEST(test_overrides) {
    static nb_recipe r;
    char *ovs[] = {"model.dim=48",
                   "optim.lr = 5e-4",
                   "quant.weights.1.bits=3",
                   "quant.weights[2].match=layers.0.*",
                   "quant.weights.3.bits=6", /* index == count: appends a rule of defaults */
                   "quant.activations.0.granularity=tensor",
                   "sample_prompt=\"  spaced  \"",
                   "data.val=",
                   "quant.enabled=false",
                   "seed=7"};
    ck_assert_msg(nb_recipe_parse("full.yaml", full_yaml, 10, ovs, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(r.model.dim, 48);
    ck_assert_float_eq(r.optim.lr, 5e-4f);
    ck_assert_int_eq(r.quant.weights[1].bits, 3);
    ck_assert_str_eq(r.quant.weights[1].estimator, "lsq"); /* the rest of the rule stays */
    ck_assert_str_eq(r.quant.weights[2].match, "layers.0.*");
    ck_assert_int_eq(r.quant.n_weight_rules, 4);
    ck_assert_int_eq(r.quant.weights[3].bits, 6);
    ck_assert_str_eq(r.quant.weights[3].granularity, "channel");
    ck_assert_str_eq(r.quant.acts[0].granularity, "tensor");
    ck_assert_str_eq(r.sample_prompt, "  spaced  ");
    ck_assert_str_eq(r.data.val, "");
    ck_assert_int_eq(r.quant.enabled, 0);
    ck_assert(r.seed == 7);
    ck_assert(strstr(r.text, "  enabled: false\n") != NULL);
    /* a whole list from the command line, and nb_recipe_set on a loaded recipe */
    ck_assert_int_eq(nb_recipe_set(&r, "quant.weights=[{match: \"*\", bits: 4, granularity: group}]"), NB_OK);
    ck_assert_int_eq(r.quant.n_weight_rules, 1);
    ck_assert_int_eq(r.quant.weights[0].bits, 4);
    ck_assert_int_eq(r.quant.weights[1].bits, 0); /* cleared: equal recipes compare equal */
    ck_assert_int_eq(nb_recipe_set(&r, "quant.activations=[]"), NB_OK);
    ck_assert_int_eq(r.quant.n_act_rules, 0);
    ck_assert_int_eq(nb_recipe_set(&r, "model.n_layers=7"), NB_OK);
    ck_assert(strstr(r.text, "  n_layers: 7\n") != NULL);
    ck_assert_int_eq(nb_recipe_set(&r, "model.n_layers=0"), NB_EINVAL);
    ck_assert_str_eq(nb_errmsg(), "override 'model.n_layers=0': model.n_layers: expected an integer in 1..1024, got 0");
    ck_assert_int_eq(r.model.n_layers, 7); /* a failed set changes nothing */
    ck_assert_int_eq(nb_recipe_set(&r, "quant.weights=[{bits: 2}, {bits: 9}]"), NB_EINVAL);
    ck_assert_int_eq(r.quant.n_weight_rules, 1);
    ck_assert_int_eq(r.quant.weights[0].bits, 4);
    ck_assert_int_eq(nb_recipe_set(&r, "quant.weights.0.group_size=48"), NB_OK); /* scalar range only */
    ck_assert_int_eq(nb_recipe_validate(&r), NB_EINVAL);
    ck_assert_str_eq(nb_errmsg(),
                     "full.yaml: quant.weights[0].group_size: expected 32, 64 or 128 with granularity group, got 48");
    nb_recipe_free(&r);
}
END_TEST

START_TEST(test_override_errors) {
    ASSERT_OV_ERR("optim.lr", "override 'optim.lr': expected key=value (e.g. optim.lr=3e-4 or quant.weights.0.bits=4)");
    ASSERT_OV_ERR("optm.lr=1", "override 'optm.lr=1': unknown key 'optm.lr'; did you mean 'optim.lr'?");
    ASSERT_OV_ERR("model.dimm=3", "override 'model.dimm=3': unknown key 'model.dimm'; did you mean 'model.dim'?");
    ASSERT_OV_ERR("zzzzzzzzzzzz=3",
                  "override 'zzzzzzzzzzzz=3': unknown key 'zzzzzzzzzzzz' (nibble train --help lists the keys)");
    ASSERT_OV_ERR("quant=off",
                  "override 'quant=off': 'quant' is a section; set one of its keys (e.g. quant.enabled=false)");
    ck_assert_str_eq(override_err("quant.weights.1.bits=4"),
                     "override 'quant.weights.1.bits=4': quant.weights.1.bits: rule index 1 out of range: "
                     "quant.weights has 0 rules (index 0 adds one, at most 32)");
    ASSERT_OV_ERR("quant.weights.x.bits=4",
                  "override 'quant.weights.x.bits=4': quant.weights.x.bits: expected a rule index after quant.weights. "
                  "(e.g. quant.weights.0.bits)");
    ASSERT_OV_ERR("quant.activations.0.bitz=4",
                  "override 'quant.activations.0.bitz=4': unknown key 'quant.activations.0.bitz'; did you mean "
                  "'quant.activations.0.bits'?");
    ASSERT_OV_ERR("quant.weights[0].bits=9",
                  "override 'quant.weights[0].bits=9': quant.weights[0].bits: expected an integer in 2..8 or 0, got 9");
    ASSERT_OV_ERR("quant.weights=[{bits: 4}",
                  "override 'quant.weights=[{bits: 4}': malformed YAML: did not find expected ',' or ']' (while "
                  "parsing a flow sequence at line 1)");
    ASSERT_OV_ERR("quant.weights=[{bits: 4}, {bits: 9}]",
                  "override 'quant.weights=[{bits: 4}, {bits: 9}]': quant.weights[1].bits: expected an integer in 2..8 "
                  "or 0, got 9");
    ASSERT_OV_ERR(
        "optim.name=adam",
        "override 'optim.name=adam': optim.name: expected one of adamw, sgd, got 'adam'; did you mean 'adamw'?");
    ASSERT_OV_ERR("steps=1e4", "override 'steps=1e4': steps: expected an integer >= 1, got 1e4");
    ASSERT_OV_ERR("seed=18446744073709551616",
                  "override 'seed=18446744073709551616': seed: expected an integer in 0..18446744073709551615, got "
                  "18446744073709551616");
    ASSERT_OV_ERR("name=\xff", "override 'name=\xff': name: the text is not valid UTF-8");
    ASSERT_OV_ERR("model.n_heads=3", "override 'model.n_heads=3': model.n_heads: 3 does not divide model.dim (128)");
    /* the later override wins in the message: it set the key */
    char *two[] = {"model.n_heads=3", "model.n_heads=5"};
    ck_assert_str_eq(parse_err("model: {n_heads: 8}\n", 2, two),
                     "override 'model.n_heads=5': model.n_heads: 5 does not divide model.dim (128)");
}
END_TEST

START_TEST(test_bad_files) {
    ASSERT_ERR("optm:\n  lr: 1\n", "x.yaml:1:1: unknown key 'optm'; did you mean 'optim'?");
    ASSERT_ERR("model:\n  dim: 128\n  dimm: 3\n", "x.yaml:3:3: unknown key 'model.dimm'; did you mean 'model.dim'?");
    ASSERT_ERR("lr: 1e-3\n", "x.yaml:1:1: unknown key 'lr'; did you mean 'optim.lr'?");
    ASSERT_ERR("model:\n  steps: 10\n", "x.yaml:2:3: unknown key 'model.steps'; did you mean 'steps'?");
    ASSERT_ERR("quant:\n  bits: 4\n", "x.yaml:2:3: unknown key 'quant.bits'; bits is a rule key: put it in a rule "
                                      "of quant.weights or quant.activations (- match: ..., bits: ...)");
    ASSERT_ERR("colour: red\n",
               "x.yaml:1:1: unknown key 'colour'; the top level has name, out_dir, seed, threads, "
               "steps, eval_every, eval_batches, log_every, ckpt_every, keep_last, resume, on_nan, "
               "max_skips, sample_tokens, sample_prompt, model, data, optim, schedule, quant, distill");
    ASSERT_ERR("quant:\n  weights:\n    - bits: 9\n",
               "x.yaml:3:13: quant.weights[0].bits: expected an integer in 2..8 or 0, got 9");
    ASSERT_ERR("quant:\n  weights:\n    - bitz: 3\n",
               "x.yaml:3:7: unknown key 'quant.weights[0].bitz'; did you mean 'quant.weights[0].bits'?");
    ASSERT_ERR("optim:\n  lr: fast\n", "x.yaml:2:7: optim.lr: expected a number in [0, 10], got 'fast'");
    ASSERT_ERR("optim:\n  lr: 1e-3x\n", "x.yaml:2:7: optim.lr: expected a number in [0, 10], got '1e-3x'");
    ASSERT_ERR("optim:\n  lr: .nan\n", "x.yaml:2:7: optim.lr: expected a number in [0, 10], got '.nan'");
    ASSERT_ERR("optim:\n  lr: 1e400\n", "x.yaml:2:7: optim.lr: expected a number in [0, 10], got 1e400");
    ASSERT_ERR("model:\n  dim: \"128\"\n",
               "x.yaml:2:8: model.dim: expected an integer in 2..65536, got the quoted string \"128\"");
    ASSERT_ERR("model:\n  dim: 99999999999999999999\n",
               "x.yaml:2:8: model.dim: expected an integer in 2..65536, got 99999999999999999999");
    ASSERT_ERR("steps: 0x10\n", "x.yaml:1:8: steps: expected an integer >= 1, got '0x10'");
    ASSERT_ERR("model:\n  dim: [1, 2]\n", "x.yaml:2:8: model.dim: expected an integer in 2..65536, got a list");
    ASSERT_ERR("model:\n  dim:\n    a: 1\n", "x.yaml:3:5: model.dim: expected an integer in 2..65536, got a mapping");
    ASSERT_ERR("model:\n  dim:\n", "x.yaml:2:7: model.dim: expected an integer in 2..65536, got nothing");
    ASSERT_ERR("model: 3\n", "x.yaml:1:8: model: expected a mapping of model keys, got a scalar");
    ASSERT_ERR("model:\n  dropout: 1\n", "x.yaml:2:12: model.dropout: expected a number in [0, 1), got 1");
    ASSERT_ERR("quant:\n  enabled: maybe\n", "x.yaml:2:12: quant.enabled: expected true or false, got 'maybe'");
    ASSERT_ERR("optim:\n  name: Adam\n",
               "x.yaml:2:9: optim.name: expected one of adamw, sgd, got 'Adam'; did you mean 'adamw'?");
    ASSERT_ERR("on_nan: ignore\n", "x.yaml:1:9: on_nan: expected one of stop, skip, got 'ignore'");
    ASSERT_ERR(
        "quant:\n  weights:\n    - granularity: token\n",
        "x.yaml:3:20: quant.weights[0].granularity: expected one of tensor, channel, row, group, q8_0, q4_0, f16, "
        "got 'token'");
    ASSERT_ERR(
        "quant:\n  activations:\n    - granularity: channel\n",
        "x.yaml:3:20: quant.activations[0].granularity: expected one of token, group, tensor, q8_0, got 'channel'");
    /* duplicates, structure */
    ASSERT_ERR("model:\n  dim: 128\n  dim: 64\n", "x.yaml:3:3: model.dim: duplicate key (first at line 2)");
    ASSERT_ERR("seed: 1\nmodel: {}\nseed: 2\n", "x.yaml:3:1: seed: duplicate key (first at line 1)");
    ASSERT_ERR("quant:\n  weights: 3\n",
               "x.yaml:2:12: quant.weights: expected a list of rules (- match: ..., bits: ...), got a scalar");
    ASSERT_ERR("quant:\n  weights:\n    - 3\n",
               "x.yaml:3:7: quant.weights[0]: expected a mapping (match: ..., bits: ...), got a scalar");
    ASSERT_ERR("? [a, b]\n: 1\n", "x.yaml:1:3: top level: expected a key name, got a list");
    /* malformed YAML, empty, wrong top level, several documents */
    ASSERT_ERR("model:\n  dim: 128\n n_heads: 4\n",
               "x.yaml:3:2: malformed YAML: did not find expected key (while parsing a block mapping at line 1)");
    ASSERT_ERR("a: [\n", "x.yaml:2:1: malformed YAML: did not find expected node content (while parsing a flow node "
                         "at line 2)");
    ASSERT_ERR("a: *nope\n", "x.yaml:1:4: malformed YAML: found undefined alias");
    ASSERT_ERR("name: \"\t\x01\"\n", "x.yaml:1:9: malformed YAML: control characters are not allowed");
    ASSERT_ERR("", "x.yaml: empty recipe (expected a mapping of keys and sections such as model:, optim:)");
    ASSERT_ERR("# only a comment\n", "x.yaml: empty recipe (expected a mapping of keys and sections such as model:, "
                                     "optim:)");
    ASSERT_ERR(
        "- a\n- b\n",
        "x.yaml:1:1: expected a mapping of keys and sections (model:, optim:, ...) at the top level, got a list");
    ASSERT_ERR("just text\n", "x.yaml:1:1: expected a mapping of keys and sections (model:, optim:, ...) at the top "
                              "level, got a scalar");
    ASSERT_ERR("seed: 1\n---\nseed: 2\n", "x.yaml:3:1: expected one YAML document, found a second one");
    char deep[400] = "a: ";
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    ASSERT_ERR(deep, "x.yaml:1:68: [ and { nested more than 64 deep");
    /* brackets in strings and comments are not nesting */
    static nb_recipe r;
    char ok[600] = "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nname: \"";
    for (int i = 0; i < 70; i++) strcat(ok, "{");
    strcat(ok, "\\\"\"\nsample_prompt: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[''[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['\n");
    ck_assert_msg(nb_recipe_parse("x.yaml", ok, 0, NULL, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_int_eq(strlen(r.name), 71);
    nb_recipe_free(&r);
    /* strings: too long, NUL */
    char long_name[300] = "name: ";
    memset(long_name + 6, 'x', 200);
    strcpy(long_name + 206, "\n");
    ASSERT_ERR(long_name, "x.yaml:1:7: name: the text is 200 bytes long, this key holds at most 127");
    ASSERT_ERR("name: \"a\\0b\"\n", "x.yaml:1:7: name: the text contains a NUL character");
    /* too many rules: the message points at the first one too many */
    char many[2000] = "quant:\n  weights:\n";
    for (int i = 0; i < NB_MAX_QRULES + 1; i++) strcat(many, "    - bits: 4\n");
    ASSERT_ERR(many, "x.yaml:35:7: quant.weights: at most 32 rules, this is rule 33");
}
END_TEST

START_TEST(test_cross_key_checks) {
    ASSERT_ERR("model:\n  dim: 100\n  n_heads: 3\n", "x.yaml:3:12: model.n_heads: 3 does not divide model.dim (100)");
    ASSERT_ERR(
        "model:\n  dim: 12\n  n_heads: 4\n",
        "x.yaml:2:8: model.dim: the head dimension dim / n_heads = 12 / 4 = 3 must be even (RoPE rotates pairs)");
    ASSERT_ERR("model:\n  n_heads: 4\n  n_kv_heads: 3\n",
               "x.yaml:3:15: model.n_kv_heads: 3 does not divide model.n_heads (4)");
    ASSERT_ERR("optim:\n  lr: 1e-4\n  min_lr: 1e-3\n", "x.yaml:3:11: optim.min_lr: 0.001 is above optim.lr (0.0001)");
    ASSERT_ERR("quant:\n  weights:\n    - granularity: group\n      group_size: 48\n",
               "x.yaml:4:19: quant.weights[0].group_size: expected 32, 64 or 128 with granularity group, got 48");
    ASSERT_ERR("quant:\n  weights:\n    - estimator: pact\n",
               "x.yaml:3:18: quant.weights[0].estimator: pact learns a clip for static symmetric activations "
               "(quant.activations with granularity: tensor, symmetric: true)");
    ASSERT_ERR("quant:\n  activations:\n    - estimator: lsq\n",
               "x.yaml:3:18: quant.activations[0].estimator: dynamic activations (granularity token) take ste");
    ASSERT_ERR("quant:\n  weights:\n    - {granularity: q4_0, estimator: lsq}\n",
               "x.yaml:3:38: quant.weights[0].estimator: granularity q4_0 fixes its scales; use ste or clipped_ste");
    ASSERT_ERR("quant:\n  preset: q8_0\n  weights: [{bits: 4}]\n",
               "x.yaml:2:11: quant.preset: q8_0 sets the weight rules itself; remove quant.weights or the preset");
    ASSERT_ERR("quant:\n  anneal_from_bits: 8\n  anneal_start: 10\n  anneal_end: 10\n",
               "x.yaml:4:15: quant.anneal_end: 10 must come after quant.anneal_start (10) when annealing");
    ASSERT_ERR("quant:\n  weights:\n    - estimator: lsq+\n",
               "x.yaml:3:18: quant.weights[0].estimator: lsq+ learns an offset and needs symmetric: false");
    ASSERT_ERR("quant:\n  enabled: true\n",
               "x.yaml:2:12: quant.enabled: true, but quant.weights, quant.activations and quant.preset are all empty "
               "(add a rule such as quant.weights: [{match: \"*\", bits: 4}])");
    ASSERT_ERR("quant:\n  lambda_start: 10\n  lambda_end: 5\n",
               "x.yaml:3:15: quant.lambda_end: 5 is before quant.lambda_start (10)");
    ASSERT_ERR("quant:\n  anneal_from_bits: 4\n  anneal_end: 10\n  weights: [{bits: 8}]\n",
               "x.yaml:2:21: quant.anneal_from_bits: 4 is below quant.weights[0].bits (8); annealing goes from more "
               "bits to fewer");
    /* a preset alone is a policy */
    static nb_recipe r;
    ck_assert_int_eq(nb_recipe_parse("x.yaml", "quant: {enabled: true, preset: q4_0}\n", 0, NULL, &r), NB_OK);
    nb_recipe_free(&r);
}
END_TEST

START_TEST(test_files_checked) {
    ASSERT_ERR("data:\n  train: data/missing.txt\n",
               "x.yaml:2:10: data.train: cannot open 'data/missing.txt': No such file or directory");
    ASSERT_ERR("model:\n  init: llama2c:/nope/model.bin\n",
               "x.yaml:2:9: model.init: cannot open '/nope/model.bin': No such file or directory");
    ASSERT_ERR("model:\n  init: \"llama2c:\"\n",
               "x.yaml:2:9: model.init: 'llama2c:' names no file (expected llama2c:PATH)");
    ASSERT_ERR("model:\n  init: pretrained\n",
               "x.yaml:2:9: model.init: expected random, llama2c:PATH or checkpoint:PATH, got 'pretrained'");
    ASSERT_ERR("data:\n  tokenizer: llama2c:/nope/tok.bin\n",
               "x.yaml:2:14: data.tokenizer: cannot open '/nope/tok.bin': No such file or directory");
    ASSERT_ERR("data:\n  tokenizer: bpe\n",
               "x.yaml:2:14: data.tokenizer: expected byte, char or llama2c:PATH, got 'bpe'");
    ASSERT_ERR("data:\n  val: /\n", "x.yaml:2:8: data.val: '/' is a directory, expected a file");
    /* files that exist */
    static nb_recipe r;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "data:\n  train: %s\n  tokenizer: llama2c:%s\nmodel:\n  init: llama2c:%s\n  dim: 64\n  n_heads: 8\n"
             "  n_kv_heads: 4\n",
             NB_TEST_DATA("tinyshakespeare.txt"), NB_TEST_DATA("stories260K/tok512.bin"),
             NB_TEST_DATA("stories260K/model.bin"));
    ck_assert_msg(nb_recipe_parse("ok.yaml", yaml, 0, NULL, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_str_eq(r.data.tokenizer, "llama2c:" NB_TEST_DATA("stories260K/tok512.bin"));
    /* nb_recipe_validate on its own names the file but no position */
    strcpy(r.data.train, "/nope.txt");
    ck_assert_int_eq(nb_recipe_validate(&r), NB_EINVAL);
    ck_assert_str_eq(nb_errmsg(), "ok.yaml: data.train: cannot open '/nope.txt': No such file or directory");
    nb_recipe_free(&r);
}
END_TEST

START_TEST(test_load_file) {
    static nb_recipe r;
    char path[] = "/tmp/nb_recipe_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "model:\n  dim: 64\n  n_heads: 4\noptim:\n  lr: 2e-3\n  optm: 1\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    char *ovs[] = {"model.n_layers=2"};
    ck_assert_int_eq(nb_recipe_load(path, 1, ovs, &r), NB_EINVAL);
    char want[256];
    snprintf(want, sizeof want,
             "%s:6:3: unknown key 'optim.optm'; optim has name, lr, min_lr, beta1, beta2, eps, weight_decay, "
             "decay_embeddings, momentum, grad_clip, grad_accum",
             path);
    ck_assert_str_eq(nb_errmsg(), want);
    FILE *f = fopen(path, "w");
    fputs("model:\n  dim: 64\n  n_heads: 4\noptim:\n  lr: 2e-3\n", f);
    fclose(f);
    ck_assert_msg(nb_recipe_load(path, 1, ovs, &r) == NB_OK, "%s", nb_errmsg());
    ck_assert_str_eq(r.path, path);
    ck_assert_int_eq(r.model.n_layers, 2);
    ck_assert_float_eq(r.optim.lr, 2e-3f);
    ck_assert(strstr(r.text, "# override: model.n_layers=2\n") != NULL);
    nb_recipe_free(&r);
    unlink(path);
    ck_assert_int_eq(nb_recipe_load("/nope/recipe.yaml", 0, NULL, &r), NB_EINVAL);
    ck_assert_str_eq(nb_errmsg(), "cannot open recipe /nope/recipe.yaml: No such file or directory");
    ck_assert_int_eq(nb_recipe_load("/tmp", 0, NULL, &r), NB_EIO);
    ck_assert_str_eq(nb_errmsg(), "recipe /tmp is a directory, expected a YAML file");
}
END_TEST

START_TEST(test_reference_lists_every_key) {
    char *ref = nb_recipe_reference();
    ck_assert_ptr_nonnull(ref);
    ck_assert(strncmp(ref, "| key | type | default | allowed | meaning |\n|---|", 50) == 0);
    int n = nb_recipe_key_count(), rows = 0;
    ck_assert_int_gt(n, 80);
    for (int i = 0; i < n; i++) {
        char cell[128];
        snprintf(cell, sizeof cell, "| `%s` |", nb_recipe_key_path(i));
        ck_assert_msg(strstr(ref, cell) != NULL, "%s missing from the reference", nb_recipe_key_path(i));
    }
    ck_assert_ptr_null(nb_recipe_key_path(n));
    for (const char *p = ref; (p = strstr(p, "\n| `")) != NULL; p++) rows++;
    ck_assert_int_eq(rows, n);
    ck_assert(strstr(ref, "| `quant.weights[].bits` | int | `8` | 2..8 or 0 |") != NULL);
    ck_assert(strstr(ref, "| `quant.activations[].granularity` | enum | `token` | token, group, tensor, q8_0 |") !=
              NULL);
    ck_assert(strstr(ref, "| `optim.lr` | float | `1e-3` | [0, 10] |") != NULL);
    /* every key also appears in the resolved YAML */
    static nb_recipe r;
    nb_recipe_defaults(&r);
    char *y = nb_recipe_to_yaml(&r);
    for (int i = 0; i < n; i++) {
        const char *path = nb_recipe_key_path(i), *dot = strrchr(path, '.');
        if (strstr(path, "[]")) continue; /* rule keys: no rules by default */
        char line[96];
        snprintf(line, sizeof line, "%s%s: ", dot ? "\n  " : "\n", dot ? dot + 1 : path);
        ck_assert_msg(strstr(y, line) != NULL, "%s missing from the YAML", path);
    }
    nb_free(y);
    nb_free(ref);
}
END_TEST

/* Allocation failures (the ones nibble makes) give NB_ENOMEM, never a crash or a leak. */
START_TEST(test_alloc_failures) {
    static nb_recipe r;
    int ok = 0;
    for (int n = 0; n < 20 && !ok; n++) {
        nb_alloc_fail_after(n);
        nb_status s = nb_recipe_parse("full.yaml", full_yaml, 0, NULL, &r);
        nb_alloc_fail_after(-1);
        ck_assert_msg(s == NB_OK || s == NB_ENOMEM, "n=%d: %d %s", n, s, nb_errmsg());
        if (s == NB_OK) ok = 1;
        nb_recipe_free(&r);
    }
    ck_assert(ok);
}
END_TEST

/* Random byte edits of a valid recipe: never a crash; whatever parses round-trips exactly. */
START_TEST(test_mutations) {
    static nb_recipe r, back;
    size_t len = strlen(full_yaml);
    char *buf = malloc(len + 64);
    nb_rng g = nb_rng_make(7, 1);
    int n_iter = getenv("NB_SANITIZE") ? 400 : 3000, n_ok = 0;
    static const char bytes[] = ":-[]{}\"'#&*!|>%@`,? \n\t0123456789.e+abcxyz\\";
    for (int it = 0; it < n_iter; it++) {
        memcpy(buf, full_yaml, len + 1);
        int edits = 1 + (int)(nb_rng_u32(&g) % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = nb_rng_u32(&g) % len;
            buf[at] = bytes[nb_rng_u32(&g) % (sizeof bytes - 1)];
        }
        if (nb_recipe_parse("m.yaml", buf, 0, NULL, &r) == NB_OK) {
            n_ok++;
            ck_assert_int_eq(nb_recipe_parse("m2.yaml", r.text, 0, NULL, &back), NB_OK);
            ck_assert(same_values(&r, &back));
            nb_recipe_free(&back);
        } else {
            ck_assert(strlen(nb_errmsg()) > 0);
        }
        nb_recipe_free(&r);
    }
    ck_assert_int_gt(n_ok, 0);
    free(buf);
}
END_TEST

NB_SUITE("recipe") {
    tcase_add_test(tc, test_defaults_validate);
    tcase_add_test(tc, test_full_example);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_override_errors);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_cross_key_checks);
    tcase_add_test(tc, test_files_checked);
    tcase_add_test(tc, test_load_file);
    tcase_add_test(tc, test_reference_lists_every_key);
    tcase_add_test(tc, test_alloc_failures);
    tcase_add_test(tc, test_mutations);
}
