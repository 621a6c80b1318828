/* cli_eval.c: `nibble eval MODEL [MODEL ...] --data TEXT_OR_H5 [--json]`: loss and perplexity. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/simd.h"
#include "../data/dataset.h"
#include "cli.h"
#include "evaluate.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble eval MODEL [MODEL ...] --data TEXT_OR_H5 [--json] [options]\n"
            "  Mean cross-entropy (nats/token) and perplexity of each model on the data.\n"
            "  MODEL        a nibble checkpoint (.h5) or a llama2.c model.bin (with --tokenizer)\n"
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
            "               models {\"models\": [{...}, ...]}\n");
}

typedef struct row {
    const char *model;
    double loss;
    int64_t tokens;
} row;

static nb_status eval_one(const char *path, const char *data, const char *split, const char *tok_path, int T, int B,
                          int64_t max_windows, row *out) {
    nb_model m;
    nb_tokenizer *tok = NULL;
    NB_TRY(nb_model_open_any(path, tok_path, &m, &tok));
    nb_tokens toks;
    memset(&toks, 0, sizeof toks);
    nb_status s = nb_tokens_load(data, tok, split, &toks);
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
    return s;
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void json_row(const row *r) {
    printf("{\"model\": ");
    json_str(r->model);
    printf(", \"loss\": %.6f, \"perplexity\": %.6f, \"tokens\": %lld}", r->loss, exp(r->loss), (long long)r->tokens);
}

int nb_cmd_eval(int argc, char **argv) {
    const char *data = NULL, *split = NULL, *tok = NULL;
    int json = 0, T = 0, B = 8;
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
        nb_status s = eval_one(rows[k].model, data, split, tok, T, B, max_windows, &rows[k]);
        if (s != NB_OK) {
            free(rows);
            return nb_cli_fail("eval", s);
        }
    }
    if (json) {
        if (n == 1) json_row(&rows[0]);
        else {
            printf("{\"models\": [");
            for (int k = 0; k < n; k++) {
                if (k) printf(", ");
                json_row(&rows[k]);
            }
            printf("]}");
        }
        printf("\n");
    } else {
        int w = 5;
        for (int k = 0; k < n; k++)
            if ((int)strlen(rows[k].model) > w) w = (int)strlen(rows[k].model);
        printf("%-*s  %9s  %11s  %10s\n", w, "model", "loss", "perplexity", "tokens");
        for (int k = 0; k < n; k++)
            printf("%-*s  %9.4f  %11.4f  %10lld\n", w, rows[k].model, rows[k].loss, exp(rows[k].loss),
                   (long long)rows[k].tokens);
    }
    free(rows);
    return 0;
}
