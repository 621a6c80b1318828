/* bench_matvec.c: the runtime's one-token matrix x vector kernels on the decode shapes, alone:
   G weights/s of fp32 rows (nb_dot_f32, the fp32 decode's kernel), int8 per row and int4 groups
   of 32 on the runtime's packed copies (nb_qpack + nb_matvec_qpack, the activation quantized
   once as the runtime does). Each matrix is small enough to stay in the caches, as in a
   small model's decode. Usage: bench_matvec [reps=20000]. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../core/rng.h"
#include "../../core/simd.h"
#include "../../ops/kernels/qdot.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    const int reps = argc > 1 ? atoi(argv[1]) : 20000;
    const int shapes[][2] = {{64, 64}, {172, 64}, {64, 172}, {128, 128}, {352, 128}, {128, 352},
                             {288, 288}, {768, 288}, {288, 768}};
    nb_rng r = nb_rng_make(7, 1);
    printf("simd %s; best of 5 x %d calls; G weights/s (ns per call)\n", nb_simd_name(nb_simd_active()), reps);
    printf("%-10s %16s %16s %16s\n", "rows x K", "fp32", "int8/row", "int4/g32");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int R = shapes[s][0], K = shapes[s][1], ng = K / 32;
        float *wf = malloc(sizeof(float) * R * K), *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * R);
        int8_t *w8 = malloc((size_t)R * K), *xq = malloc((size_t)K);
        uint8_t *w4 = malloc((size_t)R * K / 2);
        float *s8 = malloc(sizeof(float) * R), *s4 = malloc(sizeof(float) * R * (ng ? ng : 1));
        float xs8[1], xs4[64];
        int8_t xq4[1024];
        int32_t ls8[8 * 64], ls4[8 * 64];
        for (int i = 0; i < R * K; i++) wf[i] = nb_rng_normal(&r), w8[i] = (int8_t)(nb_rng_u32(&r) % 255 - 127);
        for (int i = 0; i < R * K / 2; i++) w4[i] = (uint8_t)nb_rng_u32(&r);
        for (int i = 0; i < R * (ng ? ng : 1); i++) s4[i] = 0.01f + 0.001f * (float)(i % 7);
        for (int i = 0; i < R; i++) s8[i] = 0.01f;
        for (int i = 0; i < K; i++) x[i] = nb_rng_normal(&r);
        nb_quantize_act_i8(x, xq, xs8, K, K);
        nb_act_lanesums(K, K, xq, ls8);
        const int lanes8 = nb_qpack_ok(K, K, 0), lanes4 = nb_qpack_ok(K, 32, 0);
        /* 64-byte aligned, as the runtime's (nb_malloc) */
        void *p8 = lanes8 ? aligned_alloc(64, (nb_qpack_bytes(0, R, K, K) + 63) & ~(size_t)63) : NULL;
        void *p4 = lanes4 ? aligned_alloc(64, (nb_qpack_bytes(1, R, K, 32) + 63) & ~(size_t)63) : NULL;
        if (p8) nb_qpack(0, R, K, K, w8, s8, p8);
        if (p4) nb_qpack(1, R, K, 32, w4, s4, p4);
        if (lanes4) {
            nb_quantize_act_i8(x, xq4, xs4, K, 32);
            nb_act_lanesums(K, 32, xq4, ls4);
        }
        double best[3] = {1e30, 1e30, 1e30};
        for (int round = 0; round < 5; round++)
            for (int k = 0; k < 3; k++) {
                if ((k == 1 && !lanes8) || (k == 2 && !lanes4)) continue;
                double t0 = now();
                for (int i = 0; i < reps; i++) {
                    if (k == 0)
                        for (int j = 0; j < R; j++) y[j] = nb_dot_f32(K, wf + (size_t)j * K, x);
                    else if (k == 1) nb_matvec_qpack(0, p8, R, K, K, 0, R, xq, xs8, ls8, y);
                    else nb_matvec_qpack(1, p4, R, K, 32, 0, R, xq4, xs4, ls4, y);
                    __asm__ volatile("" ::: "memory");
                }
                double t = (now() - t0) / reps;
                best[k] = t < best[k] ? t : best[k];
            }
        printf("%4d x %-4d", R, K);
        for (int k = 0; k < 3; k++)
            if (best[k] < 1e29) printf("   %6.1f (%5.0f)", (double)R * K / best[k] * 1e-9, best[k] * 1e9);
            else printf("   %14s", "-");
        printf("\n");
        free(wf), free(x), free(y), free(w8), free(xq), free(w4), free(s8), free(s4), free(p8), free(p4);
    }
    return 0;
}
