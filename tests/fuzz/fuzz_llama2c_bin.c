/* fuzz_llama2c_bin.c: libFuzzer target for llama2.c's legacy model .bin (7 int32 header + fp32
   weights), through both readers: the training importer (nb_llama2c_read_config / nb_llama2c_load)
   and the runtime's (nb_qmodel_from_llama2c). Each must accept the file or return an error with a
   message; never crash, over-read, leak or allocate more than the file can back. */
#include "../../train/import_llama2c.h"
#include "../../train/runtime.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".bin");
    nb_model_config c;
    if (nb_llama2c_read_config(path, &c) != NB_OK) FUZZ_CHECK(fuzz_has_msg(nb_errmsg()));
    nb_model m;
    if (nb_llama2c_load(path, &m) == NB_OK) {
        FUZZ_CHECK(m.cfg.dim > 0 && m.cfg.vocab_size > 0);
        nb_model_free(&m);
    } else {
        FUZZ_CHECK(fuzz_has_msg(nb_errmsg()));
    }
    nb_qmodel *q = NULL;
    if (nb_qmodel_from_llama2c(path, NULL, &q) == NB_OK) {
        FUZZ_CHECK(q != NULL && q->cfg.dim > 0);
        nb_qmodel_free(q);
    } else {
        FUZZ_CHECK(fuzz_has_msg(nb_errmsg()));
    }
    return 0;
}
