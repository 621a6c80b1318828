/* schedule.c: learning-rate schedules. */
#include "schedule.h"

#include <math.h>
#include <string.h>

nb_status nb_sched_kind_parse(const char *name, nb_sched_kind *out) {
    if (!strcmp(name, "cosine")) *out = NB_SCHED_COSINE;
    else if (!strcmp(name, "linear")) *out = NB_SCHED_LINEAR;
    else if (!strcmp(name, "constant")) *out = NB_SCHED_CONSTANT;
    else return nb_fail(NB_EINVAL, "schedule.kind: expected cosine, linear or constant, got '%s'", name);
    return NB_OK;
}

float nb_schedule_lr(const nb_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup) return (float)((double)s->lr * (double)(step + 1) / (double)(s->warmup + 1));
    if (s->kind == NB_SCHED_CONSTANT) return s->lr;
    int64_t span = (int64_t)s->total - 1 - s->warmup;
    if (span < 1) span = 1;
    double r = (double)(step - s->warmup) / (double)span;
    if (r > 1.0) r = 1.0;
    double lr = s->lr, lo = s->min_lr;
    if (s->kind == NB_SCHED_COSINE) return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(M_PI * r)));
    return (float)(lr - (lr - lo) * r);
}
