/* fuzz_gguf.c: libFuzzer target for the reader of GGUF v3 (llama architecture, F32/F16/Q4_0/Q8_0): nb_gguf_read on the input written to a temp
   file. It must load or fail with a message; a model that loads is run for two tokens on the
   integer runtime (short KV cache) so that what the reader accepted is also safe to compute with. */
#include "../../train/gguf.h"
#include "../../train/runtime.h"
#include "fuzz_util.h"
#include "fuzz_run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".gguf");
    nb_qmodel *m = NULL;
    if (nb_gguf_read(path, &m) != NB_OK) {
        FUZZ_CHECK(m == NULL && fuzz_has_msg(nb_errmsg()));
        return 0;
    }
    fuzz_run_qmodel(m);
    nb_qmodel_free(m);
    return 0;
}
