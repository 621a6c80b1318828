/* bench_ops.c: forward + backward time of the fused non-GEMM ops at the shapes of the two
   benchmark models (tiny: C 64, nh 8, nkv 4, hidden 172, B 16, T 256; small: C 288, nh 6,
   hidden 768, B 8, T 256; V 512). Usage: bench_ops [tiny|small] [reps]. Not run by the suite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/simd.h"
#include "../../ops/ops.h"

/* process CPU time: on a shared machine wall time mostly measures the other processes; with
   one thread this is the op's own time (with N threads, the sum over threads) */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static nb_tensor *randn(nb_arena *a, int nd, const int64_t *shape, uint64_t seed) {
    nb_tensor *x = nb_tensor_new(a, NB_F32, nd, shape);
    nb_rng r = nb_rng_make(seed, 5);
    for (int64_t i = 0; i < nb_numel(x); i++) nb_f32(x)[i] = nb_rng_normal(&r);
    x->requires_grad = 1;
    return x;
}

typedef struct cfg {
    const char *name;
    int64_t B, T, C, NH, NKV, HID, V;
} cfg;

enum { OP_ATT, OP_RMS, OP_SWIGLU, OP_XENT, OP_ROPE, OP_EMB, N_OPS };
static const char *op_names[N_OPS] = {"attention", "rmsnorm", "swiglu", "cross_entropy", "rope(q)", "embedding"};

/* one forward + backward of op k; returns seconds */
static double run(const cfg *c, int op, nb_arena *a) {
    int64_t B = c->B, T = c->T, C = c->C, H = C / c->NH;
    nb_arena_reset(a);
    nb_tape t;
    nb_tape_init(&t, a);
    nb_tensor *y = NULL, *x1 = NULL, *x2 = NULL, *x3 = NULL, *ids = NULL;
    switch (op) {
    case OP_ATT:
        x1 = randn(a, 4, (int64_t[]){B, T, c->NH, H}, 1);
        x2 = randn(a, 4, (int64_t[]){B, T, c->NKV, H}, 2);
        x3 = randn(a, 4, (int64_t[]){B, T, c->NKV, H}, 3);
        break;
    case OP_RMS:
        x1 = randn(a, 3, (int64_t[]){B, T, C}, 1);
        x2 = randn(a, 1, (int64_t[]){C}, 2);
        break;
    case OP_SWIGLU:
        x1 = randn(a, 3, (int64_t[]){B, T, c->HID}, 1);
        x2 = randn(a, 3, (int64_t[]){B, T, c->HID}, 2);
        break;
    case OP_XENT:
    case OP_EMB:
        x1 = op == OP_XENT ? randn(a, 3, (int64_t[]){B, T, c->V}, 1) : randn(a, 2, (int64_t[]){c->V, C}, 1);
        ids = nb_tensor_new(a, NB_I32, 2, (int64_t[]){B, T});
        for (int64_t i = 0; i < B * T; i++) ((int32_t *)ids->data)[i] = (int32_t)(i * 31 % c->V);
        break;
    case OP_ROPE:
        x1 = randn(a, 4, (int64_t[]){B, T, c->NH, H}, 1);
        break;
    }
    double t0 = now();
    switch (op) {
    case OP_ATT: y = nb_attention(&t, x1, x2, x3); break;
    case OP_RMS: y = nb_rmsnorm(&t, x1, x2, 1e-5f); break;
    case OP_SWIGLU: y = nb_swiglu(&t, x1, x2); break;
    case OP_XENT: y = nb_cross_entropy(&t, x1, ids); break;
    case OP_ROPE: y = nb_rope(&t, x1, 10000.0f, 0); break;
    case OP_EMB: y = nb_embedding(&t, x1, ids); break;
    }
    /* seed the output gradient with ones (backward of sum(y)) */
    nb_tensor *seed = nb_tensor_new(a, NB_F32, y->ndim, y->shape);
    for (int64_t i = 0; i < nb_numel(y); i++) nb_f32(seed)[i] = 1.0f;
    if (nb_backward(&t, y, nb_f32(seed)) != NB_OK) {
        fprintf(stderr, "%s\n", nb_errmsg());
        exit(2);
    }
    double dt = now() - t0;
    nb_tape_free(&t);
    return dt;
}

int main(int argc, char **argv) {
    cfg tiny = {"tiny", 16, 256, 64, 8, 4, 172, 512}, small = {"small", 8, 256, 288, 6, 6, 768, 512};
    const cfg *c = argc > 1 && !strcmp(argv[1], "small") ? &small : &tiny;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    nb_arena a;
    nb_arena_init(&a, 64 << 20);
    printf("%s: B %lld T %lld C %lld nh %lld nkv %lld, %d threads, %s\n", c->name, (long long)c->B, (long long)c->T,
           (long long)c->C, (long long)c->NH, (long long)c->NKV, nb_threads_get(), nb_simd_name(nb_simd_active()));
    for (int op = 0; op < N_OPS; op++) {
        double best = 1e9;
        for (int r = 0; r < reps; r++) {
            double dt = run(c, op, &a);
            if (dt < best) best = dt;
        }
        printf("  %-14s fwd+bwd %8.3f ms cpu\n", op_names[op], best * 1e3);
    }
    nb_arena_free(&a);
    return 0;
}
