/* fuzz_export_nb.c: libFuzzer target for the reader of nibble's HDF5 export (int8/int4/Q8_0/Q4_0/F16 tensors, vocab): nb_export_nb_read on the input written to a temp
   file. It must load or fail with a message; a model that loads is run for two tokens on the
   integer runtime (short KV cache) so that what the reader accepted is also safe to compute with. */
#include "../../train/export_nb.h"
#include "../../train/runtime.h"
#include "fuzz_util.h"
#include "fuzz_h5mut.h"
#include "fuzz_run.h"

FUZZ_HDF5_TARGET

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size, ".h5");
    nb_qmodel *m = NULL;
    if (nb_export_nb_read(path, &m) != NB_OK) {
        FUZZ_CHECK(m == NULL && fuzz_has_msg(nb_errmsg()));
        return 0;
    }
    fuzz_run_qmodel(m);
    nb_qmodel_free(m);
    return 0;
}
