/* cli_ptq.c: `nibble ptq CKPT --recipe RECIPE -o OUT.h5 [--mse] [key=value ...]`: the PTQ baseline. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/simd.h"
#include "checkpoint.h"
#include "cli.h"
#include "qat_ckpt.h"
#include "recipe.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble ptq CKPT --recipe RECIPE -o OUT.h5 [--mse] [--quiet] [key=value ...]\n"
            "  Post-training quantization: applies RECIPE's quant: policy to CKPT by round-to-nearest,\n"
            "  with no training. The baseline QAT is measured against.\n"
            "  CKPT        a nibble checkpoint (.h5) or a llama2.c model.bin\n"
            "  --recipe R  the recipe whose quant: section is the policy (weights, activations, preset);\n"
            "              key=value overrides apply to it (e.g. quant.weights[0].bits=8)\n"
            "  -o OUT.h5   the PTQ checkpoint: CKPT's fp32 weights + the policy + the quantizer scales\n"
            "              computed once from those weights (observers frozen). `nibble eval OUT.h5` then\n"
            "              evaluates the fake-quantized model, `nibble eval --fp32 OUT.h5` the original,\n"
            "              and `nibble export OUT.h5` writes exactly these integer weights.\n"
            "  --mse       choose each scale group's clipping range by MSE search (the observer \"mse\":\n"
            "              min-max shrunk by the ratio with the least squared error) instead of min-max\n"
            "              (the default, whatever observer the recipe's weight rules name for QAT);\n"
            "              block formats (q8_0, q4_0 presets) keep llama.cpp's own scales\n"
            "  --quiet     no per-layer table\n"
            "  The schedule keys do not apply: weights and activations are quantized from step 0 at the\n"
            "  rules' bits. Static (granularity: tensor) activation ranges are observed on the first\n"
            "  batch `nibble eval` runs; per-token activations need no calibration.\n"
            "  exit codes: 0 ok, 1 bad input (recipe, policy naming no parameter, file), 2 runtime failure\n");
}

/* The policy as PTQ applies it: the final grid from step 0, observers run once and frozen. */
static void ptq_schedule(nb_recipe_quant *q, int mse) {
    q->start_step = 0;
    q->act_start_step = -1;
    q->freeze_observers_step = 0;
    q->lambda_start = q->lambda_end = 0;
    q->anneal_from_bits = q->anneal_start = q->anneal_end = 0;
    q->lsq_warmup_steps = 0;
    /* the recipe's observers are QAT settings: PTQ is min-max round-to-nearest, or --mse */
    for (int i = 0; i < q->n_weight_rules; i++) {
        const char *g = q->weights[i].granularity;
        if (strcmp(g, "q8_0") && strcmp(g, "q4_0") && strcmp(g, "f16"))
            snprintf(q->weights[i].observer, sizeof q->weights[i].observer, "%s", mse ? "mse" : "minmax");
    }
}

/* model (and its tokenizer and step when CKPT is a checkpoint) */
static nb_status load_input(const char *path, const nb_recipe *r, nb_model *m, nb_tokenizer **tok, int64_t *step) {
    *tok = NULL;
    *step = 0;
    if (nb_file_is_hdf5(path)) {
        nb_ckpt *c = NULL;
        NB_TRY(nb_ckpt_open(path, &c));
        nb_status s = nb_ckpt_load_model(c, m);
        if (s == NB_OK && nb_ckpt_has_tokenizer(c)) {
            s = nb_ckpt_read_tokenizer(c, tok);
            if (s) nb_model_free(m);
        }
        *step = nb_ckpt_step(c);
        nb_ckpt_close(c);
        return s;
    }
    NB_TRY(nb_model_load_file(path, m));
    /* a llama2.c model carries no tokenizer: take the recipe's when it names a file (or bytes) */
    const char *spec = r->data.tokenizer;
    if (!strncmp(spec, "llama2c:", 8) || !strcmp(spec, "byte")) {
        nb_status s = nb_tokenizer_from_spec(spec, NULL, 0, tok);
        if (s) nb_model_free(m);
        return s;
    }
    return NB_OK;
}

int nb_cmd_ptq(int argc, char **argv) {
    const char *in = NULL, *recipe = NULL, *out = NULL;
    int mse = 0, quiet = 0, n_ovs = 0;
    char **ovs = calloc((size_t)argc + 1, sizeof *ovs);
    if (!ovs) return 2;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            free(ovs);
            return 0;
        } else if (!strcmp(argv[i], "--mse")) {
            mse = 1;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--recipe", &v)) {
            if (!(recipe = v)) break;
        } else if (nb_cli_flag_value(argc, argv, &i, "-o", &v) || nb_cli_flag_value(argc, argv, &i, "--out", &v)) {
            if (!(out = v)) break;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "nibble ptq: error: unknown option '%s'\n", argv[i]);
            usage(stderr);
            free(ovs);
            return 1;
        } else if (strchr(argv[i], '=')) {
            ovs[n_ovs++] = argv[i];
        } else if (!in) {
            in = argv[i];
        } else {
            fprintf(stderr, "nibble ptq: error: one CKPT expected, got '%s' and '%s'\n", in, argv[i]);
            free(ovs);
            return 1;
        }
    }
    if (!in || !recipe || !out) {
        fprintf(stderr, "nibble ptq: error: %s\n", !in ? "no CKPT given" : !recipe ? "--recipe RECIPE is required"
                                                                                   : "-o OUT.h5 is required");
        usage(stderr);
        free(ovs);
        return 1;
    }

    nb_recipe r;
    nb_model m;
    memset(&m, 0, sizeof m);
    nb_tokenizer *tok = NULL;
    nb_qat *q = NULL;
    char *text = NULL;
    nb_qat_diag *diag = NULL;
    int have_model = 0;
    nb_status s = nb_recipe_load(recipe, n_ovs, ovs, &r);
    if (s == NB_OK && !r.quant.enabled)
        s = nb_fail(NB_EINVAL, "%s: quant.enabled is false: there is no policy to apply (set quant.enabled=true)",
                    recipe);
    if (s == NB_OK && r.threads > 0) nb_threads_set(r.threads);
    int64_t step = 0;
    if (s == NB_OK) s = load_input(in, &r, &m, &tok, &step);
    have_model = s == NB_OK;
    if (s == NB_OK) {
        ptq_schedule(&r.quant, mse);
        s = nb_qat_build(&r.quant, &m.params, r.optim.weight_decay, &q);
        if (s) nb_fail_prefix(s, "%s", recipe);
    }
    if (s == NB_OK) {
        m.qat = q;
        nb_qat_begin_step(q, NB_QAT_STEP_FINAL, NULL);
        /* every weight's scales from its own values (observers run once, learned scales copy them);
           the diagnostics are what the user wants to see anyway */
        int nmax = m.params.n;
        diag = calloc((size_t)nmax + 1, sizeof *diag);
        int nd = 0;
        s = diag ? nb_qat_diagnose(q, NULL, diag, nmax, &nd) : nb_fail(NB_ENOMEM, "ptq: diagnostics");
        if (s == NB_OK && !quiet) {
            printf("%-28s  %-22s  %8s  %8s\n", "weight", "grid", "SQNR dB", "clipped");
            double sum = 0;
            for (int i = 0; i < nd; i++) {
                printf("%-28s  %-22s  %8.2f  %7.3f%%\n", diag[i].name, diag[i].grid, diag[i].sqnr_db,
                       100.0 * diag[i].clip_frac);
                sum += diag[i].sqnr_db;
            }
            if (nd) printf("%d weights quantized, mean SQNR %.2f dB (%s)\n", nd, sum / nd, mse ? "mse clip" : "min-max");
        }
    }
    if (s == NB_OK) {
        text = nb_recipe_to_yaml(&r);
        if (!text) s = nb_fail(NB_ENOMEM, "ptq: recipe text");
    }
    if (s == NB_OK) {
        nb_ckpt_contents c;
        memset(&c, 0, sizeof c);
        c.config = m.cfg;
        c.params = &m.params;
        c.step = step;
        c.recipe = text;
        c.tokenizer = tok;
        c.attrs[c.n_attrs++] = (nb_ckpt_attr){"ptq_source", in};
        c.attrs[c.n_attrs++] = (nb_ckpt_attr){"ptq_method", mse ? "rtn-mse" : "rtn"};
        s = nb_qat_ckpt_add(q, &c);
        if (s == NB_OK) s = nb_ckpt_save(out, &c);
    }
    if (s == NB_OK) printf("wrote %s (PTQ of %s with %s%s)\n", out, in, recipe, mse ? ", mse clipping" : "");
    free(diag);
    nb_free(text);
    nb_qat_free(q);
    if (have_model) nb_model_free(&m);
    nb_tokenizer_free(tok);
    nb_recipe_free(&r);
    free(ovs);
    return s == NB_OK ? 0 : nb_cli_fail("ptq", s);
}
