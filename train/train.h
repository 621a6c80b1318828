/* train.h: the training loop behind `nibble train`: a validated recipe in; data preparation,
   model init/import/resume, AdamW/SGD with clipping and accumulation, evaluation, metrics.jsonl,
   atomic checkpoints, guarded (NaN-aware) steps and a final sample out. Never prints: progress and
   messages go to the caller's callbacks. */
#ifndef NB_TRAIN_H
#define NB_TRAIN_H

#include <signal.h>
#include <stdint.h>

#include "../data/tokenizer.h"
#include "model.h"
#include "recipe.h"

/* Random streams of a run (nb_rng(seed, stream, counter)); every draw is a function of the step. */
#define NB_RNG_STREAM_DATA 0x64617461ULL    /* "data": window starts, counter = global row */
#define NB_RNG_STREAM_DROPOUT 0x64726f70ULL /* "drop": dropout masks, counter base = micro-step << 32 */

/* What the loop reports after each optimizer step. */
typedef struct nb_train_progress {
    int64_t step;        /* optimizer steps done, 1..total */
    int64_t total;       /* recipe steps */
    float loss;          /* training loss of this step (mean over micro-batches) */
    float val_loss;      /* NAN unless this step evaluated */
    float lr;
    float grad_norm;     /* before clipping */
    double tokens_per_s; /* training tokens / training time of this process (eval excluded) */
    double elapsed_s;    /* wall time since nb_train started */
    double eta_s;        /* estimated time to the last step */
    int logged;          /* this step went to metrics.jsonl (log_every, eval steps, last step) */
} nb_train_progress;

typedef struct nb_train_opts {
    void *ud;
    /* after every optimizer step (may be NULL) */
    void (*on_step)(void *ud, const nb_train_progress *p);
    /* one-line messages: level 0 info ("preparing data ..."), 1 warning (NaN skip, divergence) */
    void (*on_message)(void *ud, int level, const char *msg);
    /* transient progress lines of long setup work (distill.data_free: sequences generated, tokens/s,
       ETA), at most every 0.5 s; the CLI shows them on stderr (may be NULL) */
    void (*on_status)(void *ud, const char *line);
    /* polled before each step: when non-zero, save a checkpoint and return NB_EINTR */
    volatile sig_atomic_t *stop;
    /* stop (checkpoint, NB_OK) once this many steps are done, without changing the schedule;
       0 = run to the recipe's steps */
    int64_t stop_at;
    /* tests: make the gradient of the first parameter NaN at this step (0-based; -1 = never) */
    int64_t inject_nan_step;
} nb_train_opts;

typedef struct nb_train_result {
    int64_t start_step;    /* 0, or the step resumed from */
    int64_t steps_done;    /* optimizer steps done at the end */
    float train_loss;      /* last training loss (NAN if no step ran) */
    float val_loss;        /* last validation loss (NAN if never evaluated) */
    float first_loss;      /* first training loss of this process */
    double wall_s;         /* whole call, data preparation included */
    double train_s;        /* time spent in training steps */
    double tokens_per_s;   /* training tokens / train_s */
    int64_t n_params;
    int64_t skipped;       /* steps skipped on NaN */
    long step_mallocs;     /* heap allocations of the step arena after the second step (0 expected) */
    char ckpt[2048];       /* last checkpoint written ("" if none) */
    char *sample;          /* generated text (nb_malloc'ed) or NULL */
} nb_train_result;

/* Defaults for opts (no callbacks, no stop flag, stop_at 0, inject_nan_step -1). */
void nb_train_opts_init(nb_train_opts *o);

/* Runs the recipe. Returns NB_OK (finished or stop_at reached), NB_EINTR (stop flag: checkpoint
   saved), NB_ENAN (on_nan stop or too many skips: checkpoint of the last good state saved; the
   message names the step and the parameter), or the failing status of setup (bad data, model,
   resume checkpoint ...). *res is filled in every case; free with nb_train_result_free. */
nb_status nb_train(const nb_recipe *r, const nb_train_opts *o, nb_train_result *res);
void nb_train_result_free(nb_train_result *res);

/* Path of the prepared dataset for a text file (cache_dir or out_dir, named after the text and
   the tokenizer spec) into buf. */
void nb_train_dataset_path(const nb_recipe *r, const char *text_path, char *buf, size_t n);

#endif
