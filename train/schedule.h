/* schedule.h: learning rate as a function of the step: linear warm-up, then cosine, linear or
   constant decay down to min_lr at the last step (nanoGPT's rule). */
#ifndef NB_SCHEDULE_H
#define NB_SCHEDULE_H

#include "../core/status.h"

typedef enum nb_sched_kind {
    NB_SCHED_COSINE = 0,
    NB_SCHED_LINEAR = 1,
    NB_SCHED_CONSTANT = 2,
} nb_sched_kind;

typedef struct nb_schedule {
    nb_sched_kind kind;
    float lr;       /* peak learning rate */
    float min_lr;   /* reached at the last step (cosine, linear) */
    int warmup;     /* steps of linear warm-up */
    int total;      /* steps of the run */
} nb_schedule;

/* "cosine" | "linear" | "constant". */
nb_status nb_sched_kind_parse(const char *name, nb_sched_kind *out);

/* Learning rate of step (0-based):
     step < warmup:  lr * (step + 1) / (warmup + 1)
     else r = (step - warmup) / max(1, total - 1 - warmup) in [0, 1]:
       cosine:   min_lr + (lr - min_lr) * (1 + cos(pi r)) / 2
       linear:   lr - (lr - min_lr) * r
       constant: lr
   Steps past the end keep the last value. */
float nb_schedule_lr(const nb_schedule *s, int64_t step);

#endif
