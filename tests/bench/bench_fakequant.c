/* bench_fakequant.c: what weight fake-quant costs per training step. Times, for a 768x288 weight
   (int4, groups of 32): observer (min-max per group) + scales + fake-quant (the once-per-step
   forward), the LSQ backward, and per-token int8 activation fake-quant of a 4096x288 input; against
   one 4096x288x768 GEMM (the matmul that weight feeds, B*T = 4096 rows). Each SIMD level.
   Usage: bench_fakequant [repeats] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../core/quant.h"
#include "../../core/rng.h"
#include "../../core/simd.h"
#include "../../ops/fakequant.h"
#include "../../ops/kernels/gemm.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 50;
    const int64_t R = 768, K = 288, M = 4096; /* W (R, K): Cout = 768, Cin = 288 */
    float *W = nb_malloc((size_t)(R * K) * 4), *Wq = nb_malloc((size_t)(R * K) * 4), *dW = nb_malloc((size_t)(R * K) * 4);
    float *X = nb_malloc((size_t)(M * K) * 4), *Xq = nb_malloc((size_t)(M * K) * 4), *Y = nb_malloc((size_t)(M * R) * 4);
    int64_t ns = R * K / 32;
    float *lo = nb_malloc((size_t)ns * 4), *hi = nb_malloc((size_t)ns * 4), *sc = nb_malloc((size_t)ns * 4),
          *ds = nb_malloc((size_t)ns * 4);
    nb_rng r = nb_rng_make(1, 2);
    for (int64_t i = 0; i < R * K; i++) W[i] = 0.02f * nb_rng_normal(&r), dW[i] = 0;
    for (int64_t i = 0; i < M * K; i++) X[i] = nb_rng_normal(&r);
    nb_qspec s = {.bits = 4, .symmetric = 1, .gran = NB_QGRAN_GROUP, .group_size = 32};
    nb_qspec a8 = {.bits = 8, .symmetric = 1, .gran = NB_QGRAN_ROW};
    nb_qobs o = {.kind = NB_QOBS_MINMAX};
    nb_fq c = {.spec = s, .est = NB_QEST_LSQ, .lambda = 1};

    /* the GEMM once per level is enough: it does not depend on the quantizer */
    nb_sgemm(0, 1, M, R, K, X, K, W, K, 0.0f, Y, R);
    double t0 = now();
    int greps = reps / 10 > 2 ? reps / 10 : 3;
    for (int i = 0; i < greps; i++) nb_sgemm(0, 1, M, R, K, X, K, W, K, 0.0f, Y, R);
    double gemm = (now() - t0) / greps;
    printf("GEMM 4096x288x768 (nb_sgemm, %d threads): %.3f ms (%.1f GFLOP/s)\n", nb_threads_get(), gemm * 1e3,
           2.0 * M * K * R / gemm * 1e-9);
    printf("%-8s %14s %14s %14s %16s\n", "simd", "W fq fwd ms", "W LSQ bwd ms", "act int8 ms", "W fwd / GEMM");
    nb_simd_level top = nb_simd_detect();
    for (int l = NB_SIMD_SCALAR; l <= (int)top; l++) {
        nb_simd_force((nb_simd_level)l);
        double tf = 0, tb = 0, ta = 0;
        for (int i = 0; i < reps; i++) {
            double a = now();
            nb_quant_observe(&s, &o, W, R, K, lo, hi, 1);
            nb_quant_params(&s, lo, hi, ns, sc, NULL);
            nb_fakequant_mat(&s, W, R, K, sc, NULL, Wq);
            double b = now();
            nb_fakequant_backward_ref(&c, W, Wq, R, K, sc, NULL, dW, ds, NULL);
            double d = now();
            nb_fakequant_dynamic(&a8, X, M, K, Xq, NULL);
            double e = now();
            tf += b - a, tb += d - b, ta += e - d;
        }
        tf /= reps, tb /= reps, ta /= reps;
        printf("%-8s %14.4f %14.4f %14.4f %15.2f%%\n", nb_simd_name((nb_simd_level)l), tf * 1e3, tb * 1e3, ta * 1e3,
               100.0 * tf / gemm);
    }
    /* the llama.cpp presets go through the scalar block quantizers (no SIMD twin) */
    nb_qspec q4 = {.format = NB_QFMT_Q4_0}, q8 = {.format = NB_QFMT_Q8_0};
    double a = now();
    for (int i = 0; i < reps; i++) nb_fakequant_mat(&q4, W, R, K, NULL, NULL, Wq);
    double b = now();
    for (int i = 0; i < reps; i++) nb_fakequant_mat(&q8, W, R, K, NULL, NULL, Wq);
    double e = now();
    printf("preset Q4_0 W fq fwd: %.4f ms (%.2f%% of the GEMM), Q8_0: %.4f ms\n", (b - a) / reps * 1e3,
           100.0 * (b - a) / reps / gemm, (e - b) / reps * 1e3);
    nb_free(W), nb_free(Wq), nb_free(dW), nb_free(X), nb_free(Xq), nb_free(Y);
    nb_free(lo), nb_free(hi), nb_free(sc), nb_free(ds);
    return 0;
}
