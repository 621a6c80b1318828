/* bench.h: the training-step benchmark behind `nibble bench train`: a llama model of a fixed
   config (tiny or small) with random weights, random token batches, a QAT policy (none, int8
   per-channel weights, or int4 g32 weights + int8 per-token activations, STE), AdamW, timed over
   full steps (arena reset, forward, backward, optimizer). The PyTorch twin is
   tests/bench/torch_step.py (same configs, policies, FLOP formula); tests/bench/compare_torch.sh
   runs both side by side. */
#ifndef NB_BENCH_H
#define NB_BENCH_H

#include "model.h"

typedef struct nb_bench_config {
    const char *model; /* "tiny" | "small" */
    const char *quant; /* "none" | "w8" | "w4g32a8" */
    int steps;         /* timed steps (>= 1) */
    int warmup;        /* untimed steps first (the arena coalesces after the first) */
    int threads;       /* 0 = leave the current setting */
    uint64_t seed;
    int profile;       /* 1: per-op timers (adds a little overhead) */
} nb_bench_config;

#define NB_BENCH_MAX_OPS 24

typedef struct nb_bench_result {
    nb_model_config mc;
    int B, T;                  /* batch */
    int threads;
    int64_t params;            /* floats */
    double flops;              /* per step: 6 * matrix params * B*T + 6 * L * B * T^2 * C */
    double step_ms;            /* median over the timed steps */
    double min_ms;
    double cpu_ms;             /* median CPU time of a step, all threads (robust on a busy machine) */
    double tokens_per_s;       /* B*T / median step */
    double gflops;             /* flops / median step */
    double peak_rss_mb;        /* getrusage ru_maxrss at the end */
    double fwd_ms, bwd_ms;     /* medians of the phases */
    double opt_ms;             /* zero_grad + AdamW */
    double fq_ms;              /* fake-quant ops, forward + backward (inside fwd/bwd; profile only) */
    float first_loss, last_loss;
    size_t arena_peak;         /* bytes of activations + tape of one step */
    long arena_mallocs;        /* heap allocations of the arena over the timed steps (0 = none) */
    int n_ops;                 /* profile: per-op medians, forward and backward */
    char op_name[NB_BENCH_MAX_OPS][24];
    double op_fwd_ms[NB_BENCH_MAX_OPS], op_bwd_ms[NB_BENCH_MAX_OPS];
} nb_bench_result;

/* The model config and batch size of a benchmark model ("tiny", "small"); NB_EINVAL otherwise. */
nb_status nb_bench_model(const char *name, nb_model_config *mc, int *batch);
/* The quant: section of a policy ("none" -> enabled 0, "w8", "w4g32a8") for config mc: weights
   symmetric STE with minmax observers on every linear (never the embedding/classifier); int4
   groups of 32 where the row length allows it, per output channel otherwise (torch_step.py's rule). */
nb_status nb_bench_quant(const char *policy, const nb_model_config *mc, nb_recipe_quant *rq);
/* Runs the benchmark (allocates and frees everything it uses). */
nb_status nb_bench_train(const nb_bench_config *c, nb_bench_result *r);

#endif
