/* bench_attention.c: forward and backward time of the fused causal attention at the shapes of
   the two benchmark models (tiny: B 16, T 256, nh 8, nkv 4, H 8; small: B 8, T 256, nh 6, H 48),
   best of N, process CPU time and wall time. Usage: bench_attention [tiny|small] [reps].
   Not run by the suite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/simd.h"
#include "../../ops/ops.h"

static double clk(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static nb_tensor *randn(nb_arena *a, const int64_t *shape, uint64_t seed) {
    nb_tensor *x = nb_tensor_new(a, NB_F32, 4, shape);
    nb_rng r = nb_rng_make(seed, 5);
    for (int64_t i = 0; i < nb_numel(x); i++) nb_f32(x)[i] = nb_rng_normal(&r);
    x->requires_grad = 1;
    return x;
}

int main(int argc, char **argv) {
    int small = argc > 1 && !strcmp(argv[1], "small");
    int64_t B = small ? 8 : 16, T = 256, NH = small ? 6 : 8, NKV = small ? 6 : 4, H = small ? 48 : 8;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    nb_arena a;
    nb_arena_init(&a, 256 << 20);
    double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}}; /* [fwd, bwd][cpu, wall] */
    for (int r = 0; r < reps; r++) {
        nb_arena_reset(&a);
        nb_tape t;
        nb_tape_init(&t, &a);
        nb_tensor *q = randn(&a, (int64_t[]){B, T, NH, H}, 1);
        nb_tensor *k = randn(&a, (int64_t[]){B, T, NKV, H}, 2);
        nb_tensor *v = randn(&a, (int64_t[]){B, T, NKV, H}, 3);
        nb_tensor *seed = nb_tensor_new(&a, NB_F32, 4, q->shape);
        nb_rng rg = nb_rng_make(4, 5);
        for (int64_t i = 0; i < nb_numel(seed); i++) nb_f32(seed)[i] = nb_rng_normal(&rg);
        double c0 = clk(CLOCK_PROCESS_CPUTIME_ID), w0 = clk(CLOCK_MONOTONIC);
        nb_tensor *y = nb_attention(&t, q, k, v);
        double c1 = clk(CLOCK_PROCESS_CPUTIME_ID), w1 = clk(CLOCK_MONOTONIC);
        if (!y || nb_backward(&t, y, nb_f32(seed)) != NB_OK) {
            fprintf(stderr, "%s\n", nb_errmsg());
            return 2;
        }
        double c2 = clk(CLOCK_PROCESS_CPUTIME_ID), w2 = clk(CLOCK_MONOTONIC);
        double d[2][2] = {{c1 - c0, w1 - w0}, {c2 - c1, w2 - w1}};
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                if (d[i][j] < best[i][j]) best[i][j] = d[i][j];
        nb_tape_free(&t);
    }
    /* causal flops: QK^T and PV forward, five products backward, each T(T+1)/2 H 2 per head */
    double f = (double)B * NH * T * (T + 1) / 2 * H * 2;
    printf("%s attention B %lld T %lld nh %lld nkv %lld H %lld, %d threads, %s, best of %d\n", small ? "small" : "tiny",
           (long long)B, (long long)T, (long long)NH, (long long)NKV, (long long)H, nb_threads_get(),
           nb_simd_name(nb_simd_active()), reps);
    printf("  forward  %8.3f ms cpu %8.3f ms wall (%.1f GFLOP/s wall)\n", best[0][0] * 1e3, best[0][1] * 1e3,
           2 * f / best[0][1] * 1e-9);
    printf("  backward %8.3f ms cpu %8.3f ms wall (%.1f GFLOP/s wall)\n", best[1][0] * 1e3, best[1][1] * 1e3,
           5 * f / best[1][1] * 1e-9);
    nb_arena_free(&a);
    return 0;
}
