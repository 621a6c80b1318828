/* fuzz_ckpt.c: libFuzzer target for the HDF5 checkpoint reader. The input is written to a temp
   file, opened as a checkpoint, and everything in it is read the way `nibble info` and a resume
   do: params (layout from the file's config), every extra set (layout listed from the file),
   generators, attributes, the tokenizer. Nothing may crash or leak; sizes come from the config,
   which is checked before any allocation. (Crashes inside libhdf5 itself on malformed metadata are
   libhdf5 bugs; report them with the input.) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../train/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[128];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_ckpt_%d.h5", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    nb_ckpt *c;
    if (nb_ckpt_open(path, &c) != NB_OK) return 0;
    nb_model m;
    if (nb_ckpt_load_model(c, &m) == NB_OK) nb_model_free(&m);
    int n = 0;
    char **names = NULL;
    if (nb_ckpt_set_names(c, &n, &names) == NB_OK) {
        for (int i = 0; i < n; i++) {
            int k = 0;
            nb_param_spec *specs = NULL;
            if (nb_ckpt_list_set(c, names[i], &k, &specs) != NB_OK) continue;
            int64_t total = 0;
            for (int j = 0; j < k; j++) {
                int64_t e = 1;
                for (int d = 0; d < specs[j].ndim; d++) e *= specs[j].shape[d];
                total += e;
            }
            nb_paramset s;
            if (total <= ((int64_t)1 << 24) && nb_paramset_build(&s, k, specs) == NB_OK) {
                nb_ckpt_read_set(c, names[i], &s);
                nb_paramset_free(&s);
            }
            nb_free(specs);
        }
        nb_ckpt_free_names(n, names);
    }
    if (nb_ckpt_attr_names(c, &n, &names) == NB_OK) {
        for (int i = 0; i < n; i++) {
            char *v = NULL;
            if (nb_ckpt_read_attr(c, names[i], &v) == NB_OK) nb_free(v);
        }
        nb_ckpt_free_names(n, names);
    }
    nb_rng r;
    nb_ckpt_read_rng(c, "data", &r);
    nb_tokenizer *t = NULL;
    if (nb_ckpt_has_tokenizer(c) && nb_ckpt_read_tokenizer(c, &t) == NB_OK) nb_tokenizer_free(t);
    nb_ckpt_close(c);
    return 0;
}
