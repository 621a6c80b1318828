/* cli_generate.c: `nibble generate MODEL --prompt TEXT --tokens N [...]`: sample text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/simd.h"
#include "cli.h"
#include "evaluate.h"
#include "export.h"
#include "qat_ckpt.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble generate MODEL [--prompt TEXT] [--tokens N] [--temperature T] [--top-p P]\n"
            "                       [--seed S] [--tokenizer T] [--json] [--fp32]\n"
            "  Samples a continuation of the prompt (encoded with BOS, as llama2.c does). A quantized\n"
            "  checkpoint (QAT run, nibble ptq) generates through its policy (fake-quant on).\n"
            "  MODEL            a nibble checkpoint (.h5), a llama2.c model.bin (with --tokenizer), or an\n"
            "                   export (GGUF, nibble export .h5, llama2.c version-2 .bin: integer runtime;\n"
            "                   a llama2.c .bin needs --tokenizer tokenizer.bin)\n"
            "  --tokens N       tokens to generate (default 256); stops early at BOS/EOS\n"
            "  --temperature T  0 = greedy (default 1.0)\n"
            "  --top-p P        nucleus sampling mass in (0, 1]; 1 = off (default 0.9)\n"
            "  --seed S         sampling seed (default: the current time)\n"
            "  --json           {\"prompt\", \"tokens\": [generated ids], \"text\": generated text}\n"
            "  --fp32           ignore the checkpoint's quantization policy\n");
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int nb_cmd_generate(int argc, char **argv) {
    const char *path = NULL, *prompt = "", *tok_path = NULL;
    nb_generate_opts g = {256, 1.0f, 0.9f, (uint64_t)time(NULL), 1};
    int json = 0, fp32 = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int bad = 0;
        char *end = NULL;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--fp32")) {
            fp32 = 1;
        } else if (nb_cli_flag_value(argc, argv, &i, "--prompt", &v)) {
            bad = !v;
            prompt = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--tokenizer", &v)) {
            bad = !v;
            tok_path = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "--tokens", &v)) {
            long n = v ? strtol(v, &end, 10) : -1;
            bad = !v || *end || n < 0 || n > 1000000;
            g.n_tokens = (int)n;
        } else if (nb_cli_flag_value(argc, argv, &i, "--temperature", &v)) {
            g.temperature = v ? strtof(v, &end) : -1.0f;
            bad = !v || *end || !(g.temperature >= 0.0f && g.temperature <= 100.0f);
        } else if (nb_cli_flag_value(argc, argv, &i, "--top-p", &v)) {
            g.top_p = v ? strtof(v, &end) : -1.0f;
            bad = !v || *end || !(g.top_p > 0.0f && g.top_p <= 1.0f);
        } else if (nb_cli_flag_value(argc, argv, &i, "--seed", &v)) {
            g.seed = v ? strtoull(v, &end, 10) : 0;
            bad = !v || *end;
        } else if (nb_cli_flag_value(argc, argv, &i, "--threads", &v)) {
            int th = v ? atoi(v) : 0;
            bad = th < 1;
            if (!bad) nb_threads_set(th);
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "nibble generate: error: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else {
            path = argv[i];
        }
        if (bad) {
            fprintf(stderr, "nibble generate: error: bad or missing value for %s\n", argv[i - (v != NULL)]);
            return 1;
        }
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    nb_model m;
    memset(&m, 0, sizeof m);
    nb_tokenizer *tok = NULL;
    nb_qat *q = NULL;
    int exported = nb_export_is_file(path); /* GGUF, nibble export, llama2.c v2: the integer runtime */
    nb_status s = exported ? NB_OK : nb_model_open_any(path, tok_path, &m, &tok);
    if (s != NB_OK) return nb_cli_fail("generate", s);
    if (!exported && !fp32 && (s = nb_qat_load_file(path, &m, &q)) != NB_OK) { /* the policy the checkpoint carries */
        nb_tokenizer_free(tok);
        nb_model_free(&m);
        return nb_cli_fail("generate", s);
    }
    int32_t *ids = NULL;
    int n = 0;
    char *text = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (exported) {
        nb_export_gen eg = {g.n_tokens, g.temperature, g.top_p, g.seed, g.stop_at_eos};
        s = nb_export_generate(path, tok_path, prompt, &eg, &ids, &n, &text);
    } else {
        s = nb_generate(&m, tok, prompt, &g, &ids, &n, &text);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    int code = 0;
    if (s != NB_OK) {
        code = nb_cli_fail("generate", s);
    } else if (json) {
        printf("{\"prompt\": ");
        json_str(prompt);
        printf(", \"tokens\": [");
        for (int i = 0; i < n; i++) printf(i ? ", %d" : "%d", ids[i]);
        printf("], \"text\": ");
        json_str(text);
        printf(", \"tokens_per_s\": %.1f}\n", dt > 0 ? n / dt : 0.0);
    } else {
        printf("%s%s\n", prompt, text);
        fprintf(stderr, "(%d tokens, %.1f tok/s)\n", n, dt > 0 ? n / dt : 0.0);
    }
    nb_free(ids);
    nb_free(text);
    nb_tokenizer_free(tok);
    nb_model_free(&m);
    nb_qat_free(q);
    return code;
}
