/* fuzz_checkpoint.c: libFuzzer target for HDF5 training checkpoints (train/checkpoint.c): the input
   is written to a temp file and read the way `nibble info` and resume do: open (format, config),
   list and read params and every extra set, rngs, root attributes and the tokenizer. Every failure
   must be an error with a message; nothing may crash, over-read, leak or allocate more than the
   file can back. */
#include "../../train/checkpoint.h"
#include "fuzz_util.h"
#include "fuzz_h5mut.h"

static void read_set(nb_ckpt *c, const char *name) {
    int n = 0;
    nb_param_spec *specs = NULL;
    if (nb_ckpt_list_set(c, name, &n, &specs) != NB_OK) {
        FUZZ_CHECK(fuzz_has_msg(nb_errmsg()));
        return;
    }
    nb_free(specs);
}

FUZZ_HDF5_TARGET

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".h5");
    /* structure-aware mode: the mutator edits the HDF5 behind the seal, so re-seal it to reach the
       checks past it (raw byte mode leaves the seal stale: that tests the seal check itself) */
    static int raw = -1;
    if (raw < 0) raw = getenv("NB_FUZZ_HDF5_RAW") && getenv("NB_FUZZ_HDF5_RAW")[0] == '1';
    if (!raw) (void)nb_ckpt_seal_file(path);
    nb_ckpt *c = NULL;
    if (nb_ckpt_open(path, &c) != NB_OK) {
        FUZZ_CHECK(c == NULL && fuzz_has_msg(nb_errmsg()));
        return 0;
    }
    const nb_model_config *cfg = nb_ckpt_config(c);
    FUZZ_CHECK(cfg->dim > 0 && cfg->vocab_size > 0);
    (void)nb_ckpt_step(c);
    read_set(c, "params");
    int ns = 0;
    char **names = NULL;
    if (nb_ckpt_set_names(c, &ns, &names) == NB_OK) {
        for (int i = 0; i < ns; i++) read_set(c, names[i]);
        nb_ckpt_free_names(ns, names);
    }
    nb_rng r;
    (void)nb_ckpt_read_rng(c, "data", &r);
    char *v = NULL;
    if (nb_ckpt_read_attr(c, "recipe", &v) == NB_OK) nb_free(v);
    if (nb_ckpt_attr_names(c, &ns, &names) == NB_OK) {
        for (int i = 0; i < ns; i++) {
            v = NULL;
            if (nb_ckpt_read_attr(c, names[i], &v) == NB_OK) nb_free(v);
        }
        nb_ckpt_free_names(ns, names);
    }
    if (nb_ckpt_has_tokenizer(c)) {
        nb_tokenizer *t = NULL;
        if (nb_ckpt_read_tokenizer(c, &t) == NB_OK) nb_tokenizer_free(t);
    }
    /* the whole model, with optimizer state as resume reads it (only small configs: the
       parameter block is sized by the config, which nb_ckpt_open checked against the limits) */
    if (nb_model_config_numel(cfg) <= (1 << 20)) {
        nb_model m;
        if (nb_ckpt_load_model(c, &m) == NB_OK) {
            if (nb_ckpt_has_set(c, "optim.m")) (void)nb_ckpt_read_set(c, "optim.m", &m.params);
            nb_model_free(&m);
        } else {
            FUZZ_CHECK(fuzz_has_msg(nb_errmsg()));
        }
    }
    nb_ckpt_close(c);
    return 0;
}
