/* qat.h: the quantization policy applied during training. The model's forward calls these two
   hooks on every linear weight and every linear input; with qat == NULL (or the policy off for
   that tensor at this step) they return their input unchanged.

   Life of a policy: nb_qat_build (from the recipe's quant: section and the model's paramset) ->
   each step nb_qat_begin_step(q, step, &events) before the forward -> the hooks -> backward ->
   the optimizer also updates nb_qat_params(q) (learned scales, offsets, clips) -> checkpoints
   save nb_qat_params plus the nb_qat_state arrays -> nb_qat_free. */
#ifndef NB_QAT_H
#define NB_QAT_H

#include "../autograd/tape.h"
#include "../ops/fakequant.h"
#include "params.h"
#include "recipe.h"

typedef struct nb_qat nb_qat; /* opaque: policy, per-tensor quantizer state, schedule position */

/* W (Cout, Cin), the parameter at index `param` of the model's paramset: returns the tensor the
   matmul should read (fake-quantized once per step) or W itself. */
nb_tensor *nb_qat_weight(nb_tape *t, nb_qat *q, int param, nb_tensor *w);
/* x (..., Cin), the input of the linear weight `param`: fake-quantized activations or x. */
nb_tensor *nb_qat_act(nb_tape *t, nb_qat *q, int param, nb_tensor *x);

/* Do the linear weights a and b (param indices) quantize their input the same way: both not at
   all, or both dynamically (per token / group / q8_0) on the same grid? Then a model whose a and
   b read the same x (QKV, FFN w1/w3) may pass one nb_qat_act result to both: the fake-quant of x
   runs once instead of per weight. Static (observed) activations are never shared. q NULL: 1. */
int nb_qat_act_shared(const nb_qat *q, int a, int b);

/* Builds the policy for `model` from the recipe section. Rules are matched on parameter names
   with fnmatch globs, first match wins; only LINEAR parameters are candidates, plus EMBED /
   CLASSIFIER when quantize_embeddings / quantize_classifier. A rule that matches no candidate,
   bad bits / group sizes / names of estimators..., a row length that is not a multiple of the
   group size (tail: error) are NB_EINVAL with a message naming the rule and the tensor.
   Presets (quant.preset q8_0 | q4_0, no quant.weights then): every candidate whose rows are a
   multiple of 32 gets llama.cpp's block grid exactly (quant_blocks.h: fp16 block scale, ggml's
   rounding); the others get F16 (values rounded to fp16 in the fake-quant), a type GGUF can store.
   Activation rules may be added to a preset (granularity q8_0 = llama.cpp's activation blocks).
   weight_decay: the optimizer's base weight decay (scales get wd_mult = scale_weight_decay /
   weight_decay). *out = NULL (and NB_OK) when rq->enabled is 0: the hooks accept NULL.
   The model paramset must outlive q. */
nb_status nb_qat_build(const nb_recipe_quant *rq, const nb_paramset *model, float weight_decay, nb_qat **out);
void nb_qat_free(nb_qat *q); /* NULL is fine */

/* The learned quantizer parameters (kind NB_PARAM_QUANT, names "<param>.qscale", "<param>.qzero",
   "<param>.act_qscale", "<param>.act_qzero", "<param>.act_alpha"; lr_mult = scale_lr_mult):
   optimise them with the model. NULL when there are none (or q is NULL). */
nb_paramset *nb_qat_params(nb_qat *q);

/* Schedule transitions that happened at a step (for metrics). */
enum {
    NB_QAT_EV_WEIGHTS_ON = 1,     /* weight fake-quant starts (quant.start_step) */
    NB_QAT_EV_ACTS_ON = 2,        /* activation fake-quant starts (act_start_step) */
    NB_QAT_EV_OBSERVERS_FROZEN = 4,
    NB_QAT_EV_BITS = 8,           /* annealed weight bit-width changed */
    NB_QAT_EV_LSQ_LEARNING = 16,  /* learned scales stop following the observers (end of warm-up) */
    NB_QAT_EV_LAMBDA_START = 32,  /* lambda leaves 0 */
    NB_QAT_EV_LAMBDA_FULL = 64,   /* lambda reaches 1 */
};
#define NB_QAT_MAX_EVENTS 8
typedef struct nb_qat_events {
    unsigned flags;               /* NB_QAT_EV_* that happened at this step */
    int n;                        /* lines in text */
    char text[NB_QAT_MAX_EVENTS][128]; /* "weight fake-quant on (12 tensors)", ... */
    int weights_on, acts_on;      /* current state (every step) */
    int weight_bits;              /* annealed bits now (0 when not annealing) */
    float lambda;                 /* current lambda */
} nb_qat_events;

/* Call at the top of every training step (before the forward), also when resuming: sets the
   schedule position, invalidates the per-step weight cache and reports what changed between
   step - 1 and step. ev may be NULL. Returns ev->n (0 when q is NULL). */
int nb_qat_begin_step(nb_qat *q, long step, nb_qat_events *ev);
/* Weights changed outside a training step (checkpoint loaded, PTQ): drop the cache. */
void nb_qat_invalidate(nb_qat *q);

/* The schedule as pure functions of the step (tests, plots). */
int nb_qat_bits_at(const nb_qat *q, int rule_bits, long step);
float nb_qat_lambda_at(const nb_qat *q, long step);

/* ---- weight oscillations (Nagel et al. 2022) ----
   With quant.osc_track, quant.freeze_threshold > 0 or quant.osc_damp > 0, every weight on an INT
   grid is tracked from quant.osc_start_step (-1: when learned scales start learning). After each
   optimizer step, nb_qat_end_step computes each weight's code on the grid of that moment and,
   in the zero-free domain v = code - z:
     - a move of v whose direction is opposite to v's previous move is an oscillation (o = 1);
     - freq = m o + (1 - m) freq and ema = m v + (1 - m) ema, m = quant.osc_momentum;
     - freq > the threshold (nb_qat_freeze_threshold_at): the weight is frozen at v_f = rint(ema) (clamped to the grid):
       W = v_f * scale now and after every later step (its gradient updates are discarded);
     - else with osc_damp: W -= lr * osc_damp * (W - v * scale) (decoupled dampening).
   The first tracked step only records codes. State arrays (checkpointed with nb_qat_state):
   "<param>.osc_prev", "osc_dir", "osc_freq", "osc_ema", "osc_frozen", "osc_n". */
typedef struct nb_qat_osc_stats {
    long step;              /* the step the stats belong to */
    int active;             /* tracking ran at this step */
    int64_t tracked;        /* weights tracked */
    int64_t flips;          /* codes that changed at this step */
    int64_t oscillations;   /* ... against their previous move */
    int64_t frozen;         /* frozen weights (all so far) */
    int64_t newly_frozen;   /* frozen at this step */
    double freq_sum;        /* sum of the (unfrozen) frequencies */
} nb_qat_osc_stats;
/* The freezing threshold at a step: freeze_threshold, or with freeze_anneal_end > 0 a cosine from
   freeze_threshold (up to freeze_anneal_start) to freeze_threshold_final (from freeze_anneal_end on). */
float nb_qat_freeze_threshold_at(const nb_qat *q, long step);
/* Call after every optimizer step (lr: the step's base learning rate); q NULL: nothing. */
nb_status nb_qat_end_step(nb_qat *q, float lr);
/* The stats of the last nb_qat_end_step (zeros when q is NULL or tracking is off). */
void nb_qat_osc_get(const nb_qat *q, nb_qat_osc_stats *out);
/* Is element i of the (quantized) parameter `param` frozen? */
int nb_qat_osc_frozen(const nb_qat *q, int param, int64_t i);

/* ---- what export needs ---- */
typedef struct nb_qat_winfo {
    int quantized;      /* 0: the parameter stays fp32 */
    nb_qspec spec;      /* grid at the current step (annealed bits) */
    nb_qest est;
    int rule;           /* index in quant.weights (-1: preset fallback rule) */
    int64_t nscales;
    int act_quantized;  /* the weight's input is fake-quantized ... */
    int act_dynamic;    /* ... per token / per group from its own range (not a static observer) */
    nb_qspec act_spec;  /* ... on this grid */
} nb_qat_winfo;
void nb_qat_weight_info(const nb_qat *q, int param, nb_qat_winfo *info);
/* Codes, scales and zero points (nscales each; zeros may be NULL for symmetric grids) of the
   model's current W for `param`, exactly the grid the fake-quant used at the current step
   (frozen observers or learned scales included). NB_QFMT_INT only: the block formats use
   quant_blocks.h on W directly; F16 rounds. NB_EINVAL when param is not quantized. */
nb_status nb_qat_weight_quantize(nb_qat *q, int param, int8_t *codes, float *scales, float *zeros);

/* PTQ: replace every quantized weight of `model` (the paramset q was built on) by its fake-quant
   value, observers run once on the weights themselves (round to nearest; an observer "mse" in
   the rule gives the MSE clip search). The PTQ baseline of `nibble ptq`. */
nb_status nb_qat_apply_ptq(nb_qat *q);

/* ---- checkpoint state: observer ranges (and counts) besides nb_qat_params ----
   The arrays also form a paramset (kind NB_PARAM_QUANT, lr_mult 0, no gradient): a checkpoint
   can store it as one more extra set (e.g. "quant.state" beside "quant") and load it back in
   place; call nb_qat_invalidate afterwards. Never give it to the optimizer. NULL when empty. */
nb_paramset *nb_qat_state(nb_qat *q);
typedef struct nb_qat_array {
    char name[112];     /* "<param>.obs_lo", "<param>.obs_hi", "<param>.obs_n", "<param>.act_obs_lo", ... */
    float *data;        /* owned by q */
    int64_t n;
} nb_qat_array;
int nb_qat_state_count(const nb_qat *q);
void nb_qat_state_get(nb_qat *q, int i, nb_qat_array *out);
/* Restore one array by name; NB_EINVAL for an unknown name or a wrong length (named). */
nb_status nb_qat_state_set(nb_qat *q, const char *name, const float *data, int64_t n);

/* ---- diagnostics (nibble eval --per-layer) ---- */
typedef struct nb_qat_diag {
    char name[96];
    char grid[48];          /* "int4 sym g32", "Q4_0", ... */
    int64_t numel;
    double sqnr_db;         /* 10 log10(|W|^2 / |W - Q(W)|^2) */
    double clip_frac;       /* elements whose rounded code fell outside qmin..qmax (INT grids) */
    double vs_ref;          /* |Q(W) - Q(W_ref)| / |Q(W_ref)|, -1 without a reference */
    double code_diff_frac;  /* fraction of codes that differ from the reference's, -1 without */
} nb_qat_diag;
/* One row per quantized weight (at most max; *n gets the count). ref: the PTQ baseline's
   weights (a paramset with the same names, e.g. the checkpoint `nibble ptq` started from),
   quantized by this policy as PTQ would (observers on ref itself); NULL for no comparison. */
nb_status nb_qat_diagnose(nb_qat *q, const nb_paramset *ref, nb_qat_diag *out, int max, int *n);

#endif
