/* make_seeds.c: writes the small seed files of the fuzz corpora (tests/fuzz/corpus/<target>/).
   Not built by meson (the fuzz build only takes tests/fuzz/fuzz_*.c); run by hand after a format
   changes:
     cc -O1 -I. tests/fuzz/tools/make_seeds.c build/libnibble.a $(pkg-config --cflags --libs hdf5 yaml-0.1) \
        -lm -fopenmp -o /tmp/make_seeds && /tmp/make_seeds tests/fuzz/corpus
   Every seed stays under 64 KiB (run.sh's -max_len) so libFuzzer sees whole files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/rng.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "train/checkpoint.h"
#include "train/export_nb.h"
#include "train/gguf.h"
#include "train/llama2c.h"
#include "train/model.h"
#include "train/runtime.h"
#include "train/runtime_io.h"
#include "tests/rt_util.h"

static void die(const char *what) {
    fprintf(stderr, "make_seeds: %s: %s\n", what, nb_errmsg());
    exit(1);
}

/* llama2.c legacy .bin: 7 int32 then fp32 weights (see import_llama2c.h) */
static void legacy_bin(const char *path, int C, int F, int L, int NH, int KV, int V, int T, int tied) {
    FILE *f = fopen(path, "wb");
    int hdr[7] = {C, F, L, NH, KV, tied ? V : -V, T};
    fwrite(hdr, 4, 7, f);
    int H = C / NH;
    int64_t n = (int64_t)V * C + L * ((int64_t)C + C * C + 2 * (int64_t)KV * H * C + C * C + C + 3 * (int64_t)F * C) + C +
                (int64_t)T * H + (tied ? 0 : (int64_t)V * C);
    nb_rng r = nb_rng_make(7, 1);
    for (int64_t i = 0; i < n; i++) {
        float x = 0.1f * nb_rng_normal(&r);
        fwrite(&x, 4, 1, f);
    }
    fclose(f);
}

static void seed_dir(const char *root, const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/%s", root, name);
    mkdir(out, 0755);
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    char d[512], p[640];

    seed_dir(root, "llama2c_bin", d, sizeof d);
    snprintf(p, sizeof p, "%s/tied.bin", d), legacy_bin(p, 8, 16, 1, 2, 1, 16, 8, 1);
    snprintf(p, sizeof p, "%s/untied_gqa.bin", d), legacy_bin(p, 16, 32, 2, 4, 2, 24, 4, 0);

    /* runtime formats from a random small model (Q8_0/Q4_0 need rows of 32) */
    seed_dir(root, "gguf", d, sizeof d);
    nb_qmodel *m = rt_random_model(32, 64, 1, 4, 2, 40, 8, 1, 1);
    nb_qmodel *u = rt_random_model(32, 32, 1, 2, 2, 36, 8, 0, 2);
    if (!m || !u) die("model");
    const struct { nb_qtype t; const char *name; } qt[] = {{NB_QT_F32, "f32"}, {NB_QT_Q8_0, "q8_0"},
                                                           {NB_QT_Q4_0, "q4_0"}, {NB_QT_F16, "f16"}};
    for (int i = 0; i < 4; i++) {
        nb_qmodel *q;
        if (nb_qmodel_quantize(i == 3 ? u : m, qt[i].t, 0, NB_QT_F32, &q)) die("quantize");
        snprintf(p, sizeof p, "%s/%s.gguf", d, qt[i].name);
        if (nb_gguf_write(q, p, "seed")) die(p);
        nb_qmodel_free(q);
    }
    seed_dir(root, "llama2c_v2", d, sizeof d);
    snprintf(p, sizeof p, "%s/tied_gs32.bin", d);
    if (nb_llama2c_write_v2(m, p, 32, NULL)) die(p);
    snprintf(p, sizeof p, "%s/untied_gs16.bin", d);
    if (nb_llama2c_write_v2(u, p, 16, NULL)) die(p);
    seed_dir(root, "export_nb", d, sizeof d);
    const struct { nb_qtype t; int g; const char *name; } et[] = {
        {NB_QT_I8, 0, "int8_row"}, {NB_QT_I4, 16, "int4_g16"}, {NB_QT_Q4_0, 0, "q4_0"}, {NB_QT_F16, 0, "f16"}};
    for (int i = 0; i < 4; i++) {
        nb_qmodel *q;
        if (nb_qmodel_quantize(i == 1 ? u : m, et[i].t, et[i].g, NB_QT_F32, &q)) die("quantize");
        snprintf(p, sizeof p, "%s/%s.h5", d, et[i].name);
        if (nb_export_nb_write(q, p)) die(p);
        nb_qmodel_free(q);
    }
    nb_qmodel_free(m);
    nb_qmodel_free(u);

    /* training checkpoint: tiny model with optimizer state, an rng and a char tokenizer */
    seed_dir(root, "checkpoint", d, sizeof d);
    nb_model md;
    nb_model_config c;
    nb_model_config_defaults(&c);
    c.dim = 8, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 1, c.hidden_dim = 16, c.vocab_size = 12, c.seq_len = 8;
    if (nb_model_init(&md, &c)) die("model init");
    nb_model_init_random(&md, 0.1f, 3);
    nb_tokenizer *tok;
    const char *text = "hello world, fuzz me";
    if (nb_tokenizer_char_build(text, strlen(text), &tok)) die("char tokenizer");
    nb_ckpt_contents cc = {.config = md.cfg, .params = &md.params, .step = 3, .n_rngs = 1, .recipe = "seed: 1\n",
                           .tokenizer = tok, .n_sets = 1, .n_attrs = 1};
    cc.rngs[0] = (nb_ckpt_rng){"data", nb_rng_make(1, 2)};
    cc.sets[0] = (nb_ckpt_set){"optim.m", &md.params};
    cc.attrs[0] = (nb_ckpt_attr){"source", "make_seeds"};
    snprintf(p, sizeof p, "%s/tiny.h5", d);
    if (nb_ckpt_save(p, &cc)) die(p);
    nb_ckpt_contents c2 = {.config = md.cfg, .params = &md.params};
    snprintf(p, sizeof p, "%s/bare.h5", d);
    if (nb_ckpt_save(p, &c2)) die(p);
    nb_tokenizer_free(tok);
    nb_model_free(&md);

    /* token dataset: byte tokenizer over two tiny documents */
    seed_dir(root, "dataset", d, sizeof d);
    const char *txt = "/tmp/make_seeds_text.txt";
    FILE *f = fopen(txt, "w");
    fputs("First document, short.\n<|endoftext|>\nSecond one: also short.\n", f);
    fclose(f);
    const char *files[] = {txt};
    const char *specs[] = {"byte", "char"};
    for (int i = 0; i < 2; i++) {
        nb_prepare_opts o = {.train = files, .n_train = 1, .val_fraction = 0.3, .tokenizer = specs[i]};
        snprintf(p, sizeof p, "%s/%s.h5", d, specs[i]);
        if (nb_dataset_prepare(&o, p, NULL)) die(p);
    }
    remove(txt);
    return 0;
}
