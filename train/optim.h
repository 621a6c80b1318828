/* optim.h: AdamW and SGD with momentum over one or more paramsets, deterministic global-norm
   gradient clipping, gradient accumulation and non-finite gradient detection.

   A step, with grad_accum micro-batches whose gradients were summed (+=) into the grad blocks:
       nb_optim_grad_norm(o, 1.0f / grad_accum, &norm);  // NB_ENAN names the first bad gradient
       float gs = nb_optim_clip_scale(norm, clip) / grad_accum;
       nb_optim_step(o, lr, gs);                          // one fused pass per parameter
       nb_optim_zero_grad(o);
   Optimizer state (m, v) lives in paramset-shaped blocks carrying the parameters' names, so a
   checkpoint saves "/optim/m/<name>" like it saves "/params/<name>". */
#ifndef NB_OPTIM_H
#define NB_OPTIM_H

#include "params.h"

#define NB_OPTIM_MAX_SETS 4

typedef enum nb_optim_kind {
    NB_OPTIM_ADAMW = 0,
    NB_OPTIM_SGD = 1,
} nb_optim_kind;

typedef struct nb_optim_config {
    nb_optim_kind kind;
    float beta1, beta2, eps; /* adamw */
    float weight_decay;      /* decoupled: p -= lr * lr_mult * weight_decay * wd_mult * p */
    float momentum;          /* sgd: buf = momentum * buf + g; p -= lr * buf (0 = plain SGD) */
} nb_optim_config;

/* A contiguous piece of one parameter: the unit of threading and of the norm's partial sums.
   Fixed at init (independent of the thread count), so norms are bit-identical for any threads. */
typedef struct nb_optim_chunk {
    int set, param;
    int64_t start, len; /* elements, relative to the set's flat blocks */
} nb_optim_chunk;

typedef struct nb_optim {
    nb_optim_config cfg;
    int n_sets;
    nb_paramset *sets[NB_OPTIM_MAX_SETS]; /* not owned */
    /* state: same table (names, shapes, offsets) as sets[i]; .grad is NULL. adamw: m = first
       moment, v = second moment; sgd: m = momentum buffer, v unused (numel 0). */
    nb_paramset m[NB_OPTIM_MAX_SETS];
    nb_paramset v[NB_OPTIM_MAX_SETS];
    int64_t step;                         /* updates applied so far (bias correction uses step+1) */
    int n_chunks;
    nb_optim_chunk *chunks;               /* (n_chunks) */
    double *partial;                      /* (n_chunks) sums of squares of the last norm */
} nb_optim;

/* Elements per chunk (a multiple of 16). */
#define NB_OPTIM_CHUNK 8192

/* Defaults: adamw, beta1 0.9, beta2 0.95, eps 1e-8, weight_decay 0.1, momentum 0.9. */
nb_optim_config nb_optim_config_default(nb_optim_kind kind);
/* "adamw" | "sgd". */
nb_status nb_optim_kind_parse(const char *name, nb_optim_kind *out);

/* Allocates zeroed state for the given sets (kept by pointer, not owned; they must outlive o). */
nb_status nb_optim_init(nb_optim *o, const nb_optim_config *cfg, int n_sets, nb_paramset *const *sets);
void nb_optim_free(nb_optim *o);

void nb_optim_zero_grad(nb_optim *o);

/* Global L2 norm of grad_scale * g over every parameter of every set: sums of squares per fixed
   chunk (double), chunks added in order. A NaN/Inf gradient gives NB_ENAN with a message naming the
   parameter and the element ("gradient of layers.1.attn.wq is nan at element 37 of (64, 64)"). */
nb_status nb_optim_grad_norm(nb_optim *o, float grad_scale, double *norm);
/* The factor that brings a norm down to max_norm: min(1, max_norm / norm); 1 when max_norm <= 0. */
float nb_optim_clip_scale(double norm, float max_norm);

/* One update of every parameter with gradient grad_scale * g and learning rate lr * lr_mult.
   AdamW (bias-corrected, decoupled decay), t = step + 1:
       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
       p -= lr (wd p + (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps))
   SGD: buf = mu buf + g;  p -= lr (wd p + buf). Increments step. */
void nb_optim_step(nb_optim *o, float lr, float grad_scale);

/* First parameter with a non-finite element in data (grad = 0) or grad (grad = 1), across the
   sets: NB_OK when all finite, else NB_ENAN with "<what> of NAME is nan at element i of (shape)". */
nb_status nb_paramsets_check_finite(nb_paramset *const *sets, int n_sets, int grad);

#endif
