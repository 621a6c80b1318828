/* params.h: named parameters living in one flat data block and one flat gradient block.
   The model's weights and the quantizers' learned scales are each a paramset; the optimizer,
   checkpoints and export walk them by name. */
#ifndef NB_PARAMS_H
#define NB_PARAMS_H

#include "../core/tensor.h"

typedef enum nb_param_kind {
    NB_PARAM_EMBED = 0,   /* token embedding (V, C) */
    NB_PARAM_NORM = 1,    /* RMSNorm/LayerNorm gains (C) */
    NB_PARAM_LINEAR = 2,  /* a linear weight (Cout, Cin) */
    NB_PARAM_CLASSIFIER = 3,
    NB_PARAM_QUANT = 4,   /* learned quantizer state: scales, offsets, clip values */
} nb_param_kind;

typedef struct nb_param_spec {
    char name[96];              /* "layers.3.attn.wq" */
    int ndim;
    int64_t shape[NB_MAX_DIMS];
    nb_param_kind kind;
} nb_param_spec;

typedef struct nb_param {
    char name[96];
    nb_tensor t;                /* data/grad point into the set's blocks; t.name = name */
    nb_param_kind kind;
    float lr_mult;              /* 1 for weights; quant.scale_lr_mult for quantizer state */
    float wd_mult;              /* 1 = weight decay applies, 0 = none (norms, embeddings...) */
    int64_t offset;             /* first element in the flat blocks */
} nb_param;

typedef struct nb_paramset {
    int n;
    nb_param *p;                /* (n) */
    float *data;                /* (numel) all parameters, in table order */
    float *grad;                /* (numel) */
    int64_t numel;
} nb_paramset;

/* Allocates both blocks (zeroed) and lays out the table. lr_mult = 1, wd_mult = 1 for LINEAR and
   CLASSIFIER, 0 otherwise (callers may change them). */
nb_status nb_paramset_build(nb_paramset *s, int n, const nb_param_spec *specs);
void nb_paramset_free(nb_paramset *s);
/* Index of a parameter by exact name, -1 if none. */
int nb_paramset_find(const nb_paramset *s, const char *name);
void nb_paramset_zero_grad(nb_paramset *s);

#endif
