/* cli_verify.c: `nibble verify CKPT EXPORTED --data FILE [--json]`: the fake-quant model against its
   export on the integer runtime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/simd.h"
#include "cli.h"
#include "export.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble verify CKPT EXPORTED --data FILE [--json] [--max-windows N] [--seq-len T]\n"
            "                     [--min-top1 F] [--max-logit-diff D] [--gemm]\n"
            "  Runs the checkpoint as trained (fake-quant through its QAT policy, fp32 tape forward) and the\n"
            "  exported file (nibble's integer runtime: int8/int4/Q4_0/Q8_0 kernels with quantized\n"
            "  activations) on the same windows of FILE (text or .h5 tokens, the checkpoint's tokenizer) and\n"
            "  reports max |logit difference|, both losses (nats/token), top-1 agreement (fraction of\n"
            "  positions whose argmax agrees) and the largest difference between the export's dequantized\n"
            "  weights and the fake-quant weights the model reads (0 for an exact export).\n"
            "  The checkpoint's linear layers are summed as the integer kernels sum them (the exact per-block\n"
            "  products of the fake-quant weights and inputs); the other ops of both sides use the same row\n"
            "  kernels, so an export of a policy the runtime reproduces gives identical logits. That needs\n"
            "  activations fake-quantized as the runtime quantizes them: q8_0 blocks for Q4_0/Q8_0 weights,\n"
            "  int8 per token (symmetric, restrict_range) or per group for int8/int4 weights, fp32 for\n"
            "  f32/f16 weights; otherwise verify measures the gap.\n"
            "  --gemm             compute the checkpoint's linears with the training forward's fp32 GEMM\n"
            "                     instead (shows the effect of float summation order)\n"
            "  --max-windows N    compare N evenly spaced windows (default all)\n"
            "  --seq-len T        window length (default the model's seq_len)\n"
            "  --tokenizer T      tokenizer for a llama2.c .bin checkpoint\n"
            "  --min-top1 F       exit 1 when top1_agreement < F\n"
            "  --max-logit-diff D exit 1 when max_abs_logit_diff > D\n"
            "  --json             {\"max_abs_logit_diff\", \"loss_model\", \"loss_export\", \"top1_agreement\", ...}\n");
}

int nb_cmd_verify(int argc, char **argv) {
    const char *paths[2] = {NULL, NULL}, *data = NULL, *tok = NULL;
    int np = 0, json = 0, T = 0, flags = 0;
    long long max_windows = 0;
    double min_top1 = -1.0, max_diff = -1.0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int bad = 0;
        char *end = NULL;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--gemm")) {
            flags |= NB_VERIFY_GEMM;
        } else if (nb_cli_flag_value(argc, argv, &i, "--data", &v)) {
            bad = !v;
            data = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--tokenizer", &v)) {
            bad = !v;
            tok = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--max-windows", &v)) {
            bad = !v || (max_windows = atoll(v)) < 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--seq-len", &v)) {
            bad = !v || (T = atoi(v)) < 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--min-top1", &v)) {
            min_top1 = v ? strtod(v, &end) : -1;
            bad = !v || *end || !(min_top1 >= 0 && min_top1 <= 1);
        } else if (nb_cli_flag_value(argc, argv, &i, "--max-logit-diff", &v)) {
            max_diff = v ? strtod(v, &end) : -1;
            bad = !v || *end || !(max_diff >= 0);
        } else if (nb_cli_flag_value(argc, argv, &i, "--threads", &v)) {
            int th = v ? atoi(v) : 0;
            bad = th < 1;
            if (!bad) nb_threads_set(th);
        } else if (argv[i][0] == '-' || np == 2) {
            fprintf(stderr, "nibble verify: error: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else {
            paths[np++] = argv[i];
        }
        if (bad) {
            fprintf(stderr, "nibble verify: error: bad or missing value for %s\n", argv[i - (v != NULL)]);
            return 1;
        }
    }
    if (np != 2 || !data) {
        fprintf(stderr, "nibble verify: error: %s\n", np != 2 ? "expected CKPT EXPORTED" : "--data is required");
        usage(stderr);
        return 1;
    }
    if (nb_cli_input_missing("verify", NULL, paths[0]) || nb_cli_input_missing("verify", NULL, paths[1]) ||
        nb_cli_input_missing("verify", "--data", data))
        return 1;
    if (!nb_export_is_file(paths[1])) {
        fprintf(stderr, "nibble verify: error: %s is not an exported model (GGUF, nibble export .h5 or llama2.c version-2 "
                        ".bin)\n", paths[1]);
        return 1;
    }
    nb_verify_result r;
    nb_status s = nb_export_verify(paths[0], paths[1], data, tok, T, max_windows, flags, &r);
    if (s != NB_OK) return nb_cli_fail("verify", s);
    double rel = r.loss_model != 0 ? (r.loss_export - r.loss_model) / r.loss_model : 0.0;
    if (json) {
        printf("{\"max_abs_logit_diff\": %.9g, \"loss_model\": %.9g, \"loss_export\": %.9g, \"top1_agreement\": %.9g, "
               "\"loss_rel_diff\": %.9g, \"max_abs_weight_diff\": %.9g, \"positions\": %lld, \"windows\": %lld, "
               "\"quantized\": %s, \"matmul\": \"%s\"}\n",
               r.max_abs_logit_diff, r.loss_model, r.loss_export, r.top1_agreement, rel, r.max_abs_weight_diff,
               (long long)r.positions, (long long)r.windows, r.quantized ? "true" : "false",
               flags & NB_VERIFY_GEMM ? "gemm" : "integer");
    } else {
        printf("checkpoint %s (%s) vs export %s: %lld positions in %lld windows\n", paths[0],
               r.quantized ? "fake-quant" : "fp32", paths[1], (long long)r.positions, (long long)r.windows);
        printf("  loss_model %.6f  loss_export %.6f  (relative difference %+.4f%%)\n", r.loss_model, r.loss_export,
               100.0 * rel);
        printf("  top1_agreement %.4f%%  max_abs_logit_diff %.6g  max_abs_weight_diff %.6g%s\n", 100.0 * r.top1_agreement,
               r.max_abs_logit_diff, r.max_abs_weight_diff, r.max_abs_weight_diff == 0 ? " (weights exact)" : "");
    }
    if ((min_top1 >= 0 && r.top1_agreement < min_top1) || (max_diff >= 0 && r.max_abs_logit_diff > max_diff)) {
        fprintf(stderr, "nibble verify: mismatch: top1_agreement %.6f (min %g), max_abs_logit_diff %.6g (max %g)\n",
                r.top1_agreement, min_top1, r.max_abs_logit_diff, max_diff);
        return 1;
    }
    return 0;
}
