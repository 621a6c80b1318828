/* cli_prepare.c: `nibble prepare`: text files -> HDF5 token dataset. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/dataset.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble prepare TEXT [TEXT...] --tokenizer byte|char|llama2c:PATH -o OUT.h5\n"
            "                      [--val-fraction F] [--val TEXT]\n"
            "\n"
            "Tokenizes text files into an HDF5 token dataset with /train and /val (readable by h5py).\n"
            "A line `<|endoftext|>` separates documents; each document starts with BOS when the\n"
            "tokenizer has one. Text without separators is one document.\n"
            "\n"
            "  --tokenizer SPEC    byte (256 bytes + BOS/EOS), char (the distinct characters of the\n"
            "                      text), or llama2c:PATH (a llama2.c tokenizer.bin)\n"
            "  -o, --out OUT.h5    output file (written atomically)\n"
            "  --val-fraction F    tail fraction of the tokens that becomes /val, cut at a document\n"
            "                      boundary when there are documents (default 0.1; 0..0.9)\n"
            "  --val TEXT          use this file as /val instead (--val-fraction is then ignored)\n");
}

int nb_cmd_prepare(int argc, char **argv) {
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    if (!inputs) return 2;
    int n_in = 0, rc = 1;
    const char *spec = NULL, *out = NULL, *val = NULL, *frac_s = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            rc = 0;
            goto done;
        }
        if (nb_cli_flag_value(argc, argv, &i, "--tokenizer", &v)) spec = v ? v : "";
        else if (nb_cli_flag_value(argc, argv, &i, "-o", &v) || nb_cli_flag_value(argc, argv, &i, "--out", &v)) out = v ? v : "";
        else if (nb_cli_flag_value(argc, argv, &i, "--val", &v)) val = v ? v : "";
        else if (nb_cli_flag_value(argc, argv, &i, "--val-fraction", &v)) frac_s = v ? v : "";
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "nibble prepare: error: unknown option '%s'\n", argv[i]);
            usage(stderr);
            goto done;
        } else inputs[n_in++] = argv[i];
    }
    if (n_in == 0 || !spec || !spec[0] || !out || !out[0]) {
        fprintf(stderr, "nibble prepare: error: %s\n",
                n_in == 0 ? "no input text given" : !spec || !spec[0] ? "--tokenizer is required" : "-o OUT.h5 is required");
        usage(stderr);
        goto done;
    }
    if (val && !val[0]) {
        fprintf(stderr, "nibble prepare: error: --val needs a file\n");
        goto done;
    }
    /* unreadable inputs are bad input (exit 1), found before any work */
    for (int i = 0; i <= n_in; i++) {
        const char *path = i < n_in ? inputs[i] : val;
        if (!path) continue;
        FILE *f = fopen(path, "rb");
        if (!f) {
            fprintf(stderr, "nibble prepare: error: cannot read %s: %s\n", path, strerror(errno));
            goto done;
        }
        fclose(f);
    }
    if (!strncmp(spec, "llama2c:", 8) && spec[8]) {
        FILE *f = fopen(spec + 8, "rb");
        if (!f) {
            fprintf(stderr, "nibble prepare: error: --tokenizer %s: cannot read %s: %s\n", spec, spec + 8, strerror(errno));
            goto done;
        }
        fclose(f);
    }
    double frac = 0.1;
    if (frac_s) {
        char *end;
        frac = strtod(frac_s, &end);
        if (!frac_s[0] || *end || !(frac >= 0 && frac <= 0.9)) {
            fprintf(stderr, "nibble prepare: error: --val-fraction: expected a number in 0..0.9, got '%s'\n", frac_s);
            goto done;
        }
    }
    nb_prepare_opts o = {.train = inputs, .n_train = n_in, .val = val, .val_fraction = frac, .tokenizer = spec};
    nb_prepare_stats st;
    nb_status s = nb_dataset_prepare(&o, out, &st);
    if (s != NB_OK) {
        rc = nb_cli_fail("prepare", s);
        goto done;
    }
    printf("%s: vocab %d, train %lld tokens (%lld documents), val %lld tokens (%lld documents), %.2f s\n", out,
           st.vocab, (long long)st.train_tokens, (long long)st.train_docs, (long long)st.val_tokens,
           (long long)st.val_docs, st.seconds);
    rc = 0;
done:
    free(inputs);
    return rc;
}
