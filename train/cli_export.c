/* cli_export.c: `nibble export CKPT --format nibble|gguf|llama2c -o OUT [--requantize]`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "export.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble export CKPT --format nibble|gguf|llama2c -o OUT [--requantize] [--type T [--group G]]\n"
            "  Writes the checkpoint as the integer model it was trained to be: every weight its QAT policy\n"
            "  quantizes is stored as the policy's own codes and scales (no re-rounding), the rest as f32.\n"
            "  --format nibble   HDF5 (int8, int4 two per byte, per-row/group scales and zero points)\n"
            "  --format gguf     GGUF v3 for llama.cpp (Q8_0, Q4_0, F16, F32)\n"
            "  --format llama2c  llama2.c version-2 int8 file (runq.c)\n"
            "  -o OUT            output path (written to OUT.tmp-PID, then renamed)\n"
            "  --requantize      a tensor whose grid the format cannot hold exactly is requantized with the\n"
            "                    format's own quantizer (from its trained values); the added error is\n"
            "                    reported per tensor and overall. Without it such an export is refused.\n"
            "  --type T          checkpoints without a policy (fp32): q8_0, q4_0, int8, int4 or f16\n"
            "                    (default f32; llama2c: int8); the error against fp32 is reported\n"
            "  --group G         int8/int4 --type: weights per scale (default: one scale per row)\n"
            "  --tokenizer T     tokenizer.bin for a llama2.c .bin input\n");
}

int nb_cmd_export(int argc, char **argv) {
    const char *ckpt = NULL, *out = NULL, *fmt = NULL;
    nb_export_opts o = {NB_EXPORT_NIBBLE, 0, NULL, 0, NULL};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int bad = 0;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--requantize")) {
            o.requantize = 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--format", &v)) {
            bad = !v || nb_export_format_parse(v) < 0;
            fmt = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "-o", &v) || nb_cli_flag_value(argc, argv, &i, "--output", &v)) {
            bad = !v;
            out = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--type", &v)) {
            bad = !v;
            o.type = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--group", &v)) {
            bad = !v || (o.group = atoi(v)) < 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--tokenizer", &v)) {
            bad = !v;
            o.tokenizer = v;
        } else if (argv[i][0] == '-' || ckpt) {
            fprintf(stderr, "nibble export: error: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else {
            ckpt = argv[i];
        }
        if (bad) {
            fprintf(stderr, "nibble export: error: bad or missing value for %s%s\n", argv[i - (v != NULL)],
                    fmt && nb_export_format_parse(fmt) < 0 ? " (expected nibble, gguf or llama2c)" : "");
            return 1;
        }
    }
    if (!ckpt || !out || !fmt) {
        fprintf(stderr, "nibble export: error: %s\n", !ckpt ? "no CKPT given" : !fmt ? "--format is required" : "-o OUT is required");
        usage(stderr);
        return 1;
    }
    if (nb_cli_input_missing("export", NULL, ckpt)) return 1;
    o.format = (nb_export_format)nb_export_format_parse(fmt);
    nb_export_report r;
    nb_status s = nb_export_checkpoint(ckpt, out, &o, &r);
    if (s != NB_OK) {
        nb_export_report_free(&r);
        return nb_cli_fail("export", s);
    }
    printf("exported %s (%s) -> %s (%s)\n", ckpt, r.quantized ? "QAT policy" : "no policy: fp32", out, fmt);
    nb_export_report_print(stdout, &r, out);
    nb_export_report_free(&r);
    return 0;
}
