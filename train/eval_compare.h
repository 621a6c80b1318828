/* eval_compare.h: what `nibble eval` adds for quantization: the side-by-side table of several
   models (text or JSON), the fraction of the PTQ gap QAT recovered (--compare FP32 PTQ QAT) and
   the per-layer diagnostics of a quantized checkpoint (--per-layer). */
#ifndef NB_EVAL_COMPARE_H
#define NB_EVAL_COMPARE_H

#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"

typedef struct nb_eval_row {
    const char *model;  /* the path as the user gave it */
    double loss;        /* mean cross-entropy, nats per token */
    int64_t tokens;     /* predicted tokens */
    int quantized;      /* 1: through a quantization policy (fake-quant on); 2: an export run by the integer runtime */
} nb_eval_row;

/* (loss_ptq - loss_qat) / (loss_ptq - loss_fp32): 1 = QAT matches fp32, 0 = no better than PTQ,
   negative = worse than PTQ. NAN when PTQ is no worse than fp32 (there is no gap to recover). */
double nb_eval_recovered(double loss_fp32, double loss_ptq, double loss_qat);

/* The table (model, loss, perplexity, tokens, and a "fake-quant"/"fp32" column), or with json one
   object {"models": [{"model", "loss", "perplexity", "tokens"}, ...]} (a single model without
   compare: just its object). compare: rows are FP32, PTQ, QAT (n == 3) and "recovered" is added
   (a line after the table; a key in JSON, null when undefined). */
void nb_eval_print(FILE *f, const nb_eval_row *rows, int n, int compare, int json);

/* Per quantized weight of the checkpoint at `path` (its stored policy): grid, SQNR (dB), fraction
   of clipped codes, and the distance from PTQ: |Q(W) - PTQ(W_ref)| / |PTQ(W_ref)| and the
   fraction of codes that differ, where W_ref is the weights of `ref_path` (e.g. the fp32
   fine-tune the PTQ baseline came from) or, when ref_path is NULL, the checkpoint's own weights
   (then the difference is what learned scales changed against round-to-nearest). NB_EINVAL when
   the checkpoint carries no policy. json: {"model", "layers": [{"name", "grid", "sqnr_db",
   "clipped", "vs_ptq", "codes_changed"}, ...]}. */
nb_status nb_eval_per_layer(FILE *f, const char *path, const char *ref_path, int json);

#endif
