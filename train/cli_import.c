/* cli_import.c: `nibble import llama2c MODEL.bin --tokenizer TOK.bin -o CKPT.h5`. */
#include <stdio.h>
#include <string.h>

#include "../data/tokenizer.h"
#include "checkpoint.h"
#include "cli.h"
#include "import_llama2c.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: nibble import llama2c MODEL.bin [--tokenizer TOK.bin] -o CKPT.h5\n"
            "\n"
            "Reads a llama2.c legacy checkpoint (7 int32 header, fp32 weights; negative vocab_size = untied\n"
            "classifier) and writes a nibble checkpoint (HDF5). With --tokenizer, the llama2.c tokenizer.bin\n"
            "is stored in the checkpoint so eval/generate can use it (its size must match the vocabulary).\n");
}

int nb_cmd_import(int argc, char **argv) {
    const char *kind = NULL, *model = NULL, *tok = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (nb_cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (nb_cli_flag_value(argc, argv, &i, "--tokenizer", &v)) {
            if (!v) return fprintf(stderr, "nibble import: --tokenizer needs a file\n"), 1;
            tok = v;
        } else if (nb_cli_flag_value(argc, argv, &i, "-o", &v) || nb_cli_flag_value(argc, argv, &i, "--output", &v)) {
            if (!v) return fprintf(stderr, "nibble import: -o needs a file\n"), 1;
            out = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "nibble import: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 1;
        } else if (!kind) {
            kind = argv[i];
        } else if (!model) {
            model = argv[i];
        } else {
            fprintf(stderr, "nibble import: unexpected argument '%s'\n", argv[i]);
            return 1;
        }
    }
    if (!kind || !model || !out) {
        usage(stderr);
        return 1;
    }
    if (strcmp(kind, "llama2c")) {
        fprintf(stderr, "nibble import: unknown source format '%s' (supported: llama2c)\n", kind);
        return 1;
    }
    if (nb_cli_input_missing("import", NULL, model) || (tok && nb_cli_input_missing("import", "--tokenizer", tok))) return 1;
    nb_model m;
    nb_status s = nb_llama2c_load(model, &m);
    if (s != NB_OK) return nb_cli_fail("import", s);
    nb_tokenizer *t = NULL;
    if (tok) {
        s = nb_tokenizer_llama2c_load(tok, 0, &t); /* every record: a tokenizer for another vocabulary is refused */
        if (s == NB_OK && nb_tokenizer_vocab(t) != m.cfg.vocab_size)
            s = nb_fail(NB_EINVAL, "%s: the tokenizer has %d tokens but %s has a vocabulary of %d", tok,
                        nb_tokenizer_vocab(t), model, m.cfg.vocab_size);
        if (s != NB_OK) {
            nb_tokenizer_free(t);
            nb_model_free(&m);
            return nb_cli_fail("import", s);
        }
    }
    char src[1100];
    snprintf(src, sizeof src, "llama2c:%s", model);
    nb_ckpt_contents c = {.config = m.cfg, .params = &m.params, .step = 0, .tokenizer = t, .n_attrs = 1};
    c.attrs[0] = (nb_ckpt_attr){"source", src};
    s = nb_ckpt_save(out, &c);
    if (s == NB_OK)
        printf("imported %s: dim %d, %d layers, %d heads (%d kv), hidden %d, vocab %d%s, seq_len %d, %lld parameters%s\n"
               "wrote %s\n",
               model, m.cfg.dim, m.cfg.n_layers, m.cfg.n_heads, m.cfg.n_kv_heads, m.cfg.hidden_dim, m.cfg.vocab_size,
               m.cfg.tied ? " (tied classifier)" : "", m.cfg.seq_len, (long long)nb_model_numel(&m),
               t ? ", with tokenizer" : " (no tokenizer: pass --tokenizer to store one)", out);
    nb_tokenizer_free(t);
    nb_model_free(&m);
    return s == NB_OK ? 0 : nb_cli_fail("import", s);
}
