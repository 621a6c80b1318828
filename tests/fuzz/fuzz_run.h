/* fuzz_run.h: run a loaded nb_qmodel for a couple of tokens (fuzz targets of the export readers). */
#ifndef NB_FUZZ_RUN_H
#define NB_FUZZ_RUN_H

#include "../../core/status.h"
#include "../../train/runtime.h"
#include "fuzz_util.h"

static void fuzz_run_qmodel(nb_qmodel *m) {
    FUZZ_CHECK(m->cfg.dim > 0 && m->cfg.vocab > 0 && m->cfg.n_layers > 0);
    /* the forward allocates (B, V) logits and a (L, seq_len, kv) cache: keep it small; a cap on
       the work, not on what the reader may accept */
    if ((int64_t)m->cfg.vocab * m->cfg.dim > (1 << 20) || (int64_t)m->cfg.seq_len * m->cfg.n_layers * m->cfg.dim > (1 << 22))
        return;
    nb_qstate s;
    if (nb_qstate_init(&s, m, 2) != NB_OK) return;
    int32_t tok[2] = {0, m->cfg.vocab - 1};
    float *lg = nb_malloc(sizeof(float) * 2 * (size_t)m->cfg.vocab);
    if (lg) {
        int T = m->cfg.seq_len < 2 ? m->cfg.seq_len : 2;
        (void)nb_qmodel_forward(m, &s, tok, T, 0, lg, 1);
        nb_free(lg);
    }
    nb_qstate_free(&s);
}

#endif
