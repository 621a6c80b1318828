/* cli_main.c: subcommand table, exit codes and argument helpers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../core/simd.h"
#include "cli.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} command;

/* Each subcommand adds its row here. */
static const command commands[] = {
    {"train", nb_cmd_train, "train or fine-tune from a YAML recipe"},
    {"eval", nb_cmd_eval, "loss and perplexity of models (checkpoints or exports) on text or tokens"},
    {"generate", nb_cmd_generate, "sample text from a model"},
    {"prepare", nb_cmd_prepare, "tokenize text files into an HDF5 token dataset"},
    {"import", nb_cmd_import, "import a llama2.c model into a checkpoint"},
    {"info", nb_cmd_info, "config, parameters, tensors and quantization of a model"},
    {"ptq", nb_cmd_ptq, "post-training quantization baseline of a checkpoint"},
    {"export", nb_cmd_export, "write a deployable integer model (nibble, gguf, llama2c)"},
    {"verify", nb_cmd_verify, "compare an export with the fake-quantized model it came from"},
    {"bench", nb_cmd_bench, "training-step and kernel benchmarks"},
    {"plot", nb_cmd_plot, "draw a run's loss curves to PNG"},
    {"version", nb_cmd_version, "print version and the SIMD level in use"},
};

int nb_cli_exit_code(nb_status s) {
    switch (s) {
    case NB_OK: return 0;
    case NB_EINVAL: case NB_ESHAPE: case NB_EFORMAT: case NB_ERANGE: return 1;
    case NB_EINTR: return 130;
    default: return 2;
    }
}

int nb_cli_fail(const char *cmd, nb_status s) {
    fprintf(stderr, "nibble %s: error: %s\n", cmd, nb_errmsg()[0] ? nb_errmsg() : nb_status_name(s));
    return nb_cli_exit_code(s);
}

int nb_cli_input_missing(const char *cmd, const char *what, const char *path) {
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        return 0;
    }
    fprintf(stderr, "nibble %s: error: cannot read %s%s%s: %s\n", cmd, what ? what : "", what ? " " : "", path,
            strerror(errno));
    return 1;
}

int nb_cli_is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

int nb_cli_flag_value(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    if (!strncmp(argv[*i], name, n) && argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (strcmp(argv[*i], name)) return 0;
    if (*i + 1 >= argc) {
        *val = NULL;
        return 1;
    }
    *val = argv[++*i];
    return 1;
}

int nb_cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("nibble 0.1.0 (simd %s, threads %d)\n", nb_simd_name(nb_simd_active()), nb_threads_get());
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: nibble COMMAND [ARGS...]   (nibble COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\nexit codes: 0 ok, 1 bad input, 2 runtime failure, 130 interrupted\n");
}

int nb_cli_main(int argc, char **argv) {
    if (argc < 2 || nb_cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "nibble: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
