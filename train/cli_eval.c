/* cli_eval.c: `nibble eval MODEL [MODEL ...] --data TEXT_OR_H5 [--json]`: loss and perplexity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/simd.h"
#include "../data/dataset.h"
#include "cli.h"
#include "eval_compare.h"
#include "evaluate.h"
#include "export.h"
#include "qat_ckpt.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble eval MODEL [MODEL ...] --data TEXT_OR_H5 [--json] [options]\n"
            "  Mean cross-entropy (nats/token) and perplexity of each model on the data.\n"
            "  MODEL        a nibble checkpoint (.h5), a llama2.c model.bin (with --tokenizer), or an export\n"
            "               (GGUF, nibble export .h5, llama2.c version-2 .bin) run by the integer runtime\n"
            "  --data F     text (tokenized with each model's own tokenizer; a line <|endoftext|>\n"
            "               separates documents, each starting with BOS when the tokenizer has one)\n"
            "               or a prepared .h5 token dataset (its tokenizer must match the model's)\n"
            "  --split S    split of an .h5 dataset: val (default) or train\n"
            "  --tokenizer T  tokenizer for models that carry none (llama2.c tokenizer.bin)\n"
            "  --seq-len T  window length (default: the model's seq_len)\n"
            "  --batch B    windows per forward pass (default 8)\n"
            "  --max-windows N  evaluate N evenly spaced windows instead of all\n"
            "  --threads N  OpenMP threads\n"
            "  --json       one JSON object: {\"model\", \"loss\", \"perplexity\", \"tokens\"}; with several\n"
            "               models {\"models\": [{...}, ...]}\n"
            "  Quantized checkpoints (QAT runs, nibble ptq) are evaluated as trained: through the policy\n"
            "  they carry (fake-quant on, final schedule step). --fp32 evaluates the same weights unquantized.\n"
            "  --fp32       ignore every model's quantization policy\n"
            "  --compare FP32 PTQ QAT  three models; adds recovered = (loss_ptq - loss_qat) / (loss_ptq -\n"
            "               loss_fp32), the fraction of the PTQ gap QAT closed (\"recovered\" in JSON)\n"
            "  --per-layer  (one MODEL, no --data needed) per quantized weight: grid, SQNR dB, fraction of\n"
            "               clipped codes and the distance from PTQ (of --ptq-ref CKPT's weights, e.g. the\n"
            "               fp32 fine-tune; default: round-to-nearest of the model's own weights)\n"
            "  --ptq-ref CKPT  reference weights for --per-layer\n");
}

typedef nb_eval_row row;

static nb_status eval_one(const char *path, const char *data, const char *split, const char *tok_path, int T, int B,
                          int64_t max_windows, int fp32, row *out) {
    if (nb_export_is_file(path)) { /* GGUF, nibble export, llama2.c v2: the integer runtime */
        out->quantized = 2;
        return nb_export_eval(path, data, split, tok_path, T, max_windows, &out->loss, &out->tokens);
    }
    nb_model m;
    nb_tokenizer *tok = NULL;
    nb_qat *q = NULL;
    NB_TRY(nb_model_open_any(path, tok_path, &m, &tok));
    nb_tokens toks;
    memset(&toks, 0, sizeof toks);
    nb_status s = fp32 ? NB_OK : nb_qat_load_file(path, &m, &q); /* the policy the checkpoint carries */
    out->quantized = q != NULL;
    if (s == NB_OK) s = nb_tokens_load(data, tok, split, &toks);
    if (s == NB_OK) {
        nb_arena a;
        nb_tape t;
        nb_arena_init(&a, (size_t)1 << 20);
        nb_tape_init(&t, &a);
        int seq = T > 0 && T < m.cfg.seq_len ? T : m.cfg.seq_len;
        s = nb_eval_tokens(&t, &m, toks.ids, toks.n, B, seq, max_windows, &out->loss, &out->tokens);
        nb_tape_free(&t);
        nb_arena_free(&a);
    }
    if (s != NB_OK) nb_fail_prefix(s, "%s", path);
    nb_tokens_free(&toks);
    nb_tokenizer_free(tok);
    nb_model_free(&m);
    nb_qat_free(q);
    return s;
}

int nb_cmd_eval(int argc, char **argv) {
    const char *data = NULL, *split = NULL, *tok = NULL, *ptq_ref = NULL;
    int json = 0, T = 0, B = 8, fp32 = 0, compare = 0, per_layer = 0;
    long long max_windows = 0;
    int n = 0;
    row *rows = calloc((size_t)argc, sizeof *rows);
    if (!rows) return 2;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int bad = 0;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            free(rows);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--fp32")) {
            fp32 = 1;
        } else if (!strcmp(argv[i], "--compare")) {
            compare = 1;
        } else if (!strcmp(argv[i], "--per-layer")) {
            per_layer = 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--ptq-ref", &v)) {
            bad = !v;
            ptq_ref = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--data", &v)) {
            bad = !v;
            data = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--split", &v)) {
            bad = !v || (strcmp(v, "val") && strcmp(v, "train"));
            split = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--tokenizer", &v)) {
            bad = !v;
            tok = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--seq-len", &v)) {
            bad = !v || (T = atoi(v)) < 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--batch", &v)) {
            bad = !v || (B = atoi(v)) < 1 || B > 64;
        } else if (nb_cli_flag_value(argc, argv, &i, "--max-windows", &v)) {
            bad = !v || (max_windows = atoll(v)) < 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--threads", &v)) {
            int th = v ? atoi(v) : 0;
            bad = th < 1;
            if (!bad) nb_threads_set(th);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "nibble eval: error: unknown option '%s'\n", argv[i]);
            free(rows);
            return 1;
        } else {
            rows[n++].model = argv[i];
        }
        if (bad) {
            fprintf(stderr, "nibble eval: error: bad or missing value for %s\n", argv[i - (v != NULL)]);
            free(rows);
            return 1;
        }
    }
    if (per_layer) {
        nb_status s = n == 1 ? nb_eval_per_layer(stdout, rows[0].model, ptq_ref, json)
                             : nb_fail(NB_EINVAL, "--per-layer takes one MODEL, got %d", n);
        free(rows);
        return s == NB_OK ? 0 : nb_cli_fail("eval", s);
    }
    if (compare && n != 3) {
        fprintf(stderr, "nibble eval: error: --compare takes three models: FP32 PTQ QAT (got %d)\n", n);
        free(rows);
        return 1;
    }
    if (n == 0 || !data) {
        fprintf(stderr, "nibble eval: error: %s\n", n == 0 ? "no MODEL given" : "--data is required");
        usage(stderr);
        free(rows);
        return 1;
    }
    for (int k = 0; k <= n; k++)
        if (nb_cli_input_missing("eval", k < n ? NULL : "--data", k < n ? rows[k].model : data)) {
            free(rows);
            return 1;
        }
    for (int k = 0; k < n; k++) {
        nb_status s = eval_one(rows[k].model, data, split, tok, T, B, max_windows, fp32, &rows[k]);
        if (s != NB_OK) {
            free(rows);
            return nb_cli_fail("eval", s);
        }
    }
    nb_eval_print(stdout, rows, n, compare, json);
    free(rows);
    return 0;
}
