/* bench_decode.c: decode speed (tokens/s) of nibble's runtime for fp32 vs int8, Q8_0, int4 g32
   and Q4_0 weights on a stories260K-shaped, a 'small' (dim 288, 6 layers, 6 heads, hidden 768,
   vocab 512; 24.5 MB in fp32, which fits in this machine's L3) and a 'medium' (dim 768, 8 layers,
   12 heads, hidden 2048: 57M weights, 230 MB in fp32, far beyond the L3) random model, 1 and 2
   threads. Usage: bench_decode [tokens=256] [rounds=3] [SHAPE] [TYPE] [THREADS] [nobase]. Each
   round decodes the tokens once with every type, fp32 first (interleaved, so that a slow spell of
   the machine hits every type); the best round of each is printed with its speedup over fp32 at
   the same thread count. SHAPE, TYPE and THREADS filter the cases ("all" matches everything;
   fp32 still runs as the baseline unless `nobase`), e.g. `bench_decode 256 5 small int4/g32 1`.
   Before the 2-thread cases it prints the core-to-core round trip (below). */
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/rng.h"
#include "../../core/simd.h"
#include "../../train/runtime.h"
#include "../../train/runtime_io.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* process CPU time (all threads): with other jobs on the cores, a steadier measure than wall time */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* round trip of a cache line between two threads (ns): about 60 when the two vCPUs share an L3,
   over 300 when the host places them on different L3s (then every barrier and every read of the
   other thread's rows costs that, and a decode step exchanges a few hundred lines) */
static double pingpong_ns(void) {
#ifndef _OPENMP
    return 0;
#else
    static _Alignas(64) volatile int flag;
    const int n = 100000;
    double t0 = 0, t1 = 0;
    flag = 0;
#pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num();
#pragma omp barrier
        if (t == 0) t0 = now();
        for (int i = 0; i < n && omp_get_num_threads() == 2; i++) {
            while (__atomic_load_n(&flag, __ATOMIC_ACQUIRE) != 2 * i + t) {}
            __atomic_store_n(&flag, 2 * i + t + 1, __ATOMIC_RELEASE);
        }
        if (t == 0) t1 = now();
    }
    return (t1 - t0) / n * 1e9;
#endif
}

static nb_qmodel *random_model(int dim, int hidden, int layers, int heads, int kv, int vocab, int seq) {
    nb_qconfig c = {dim, hidden, layers, heads, kv, vocab, seq, 1, 1e-5f, 10000.0f};
    nb_qmodel *m;
    if (nb_qmodel_new(&c, &m)) return NULL;
    nb_rng r = nb_rng_make(1, 1);
    nb_qtensor *ts[2 + 9 * 64];
    int n = 0;
    ts[n++] = &m->tok_emb;
    ts[n++] = &m->norm;
    for (int l = 0; l < layers; l++) {
        nb_qlayer *L = &m->layers[l];
        nb_qtensor *x[] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w1, &L->w2, &L->w3};
        for (int i = 0; i < 9; i++) ts[n++] = x[i];
    }
    for (int i = 0; i < n; i++) {
        int64_t k = ts[i]->rows * ts[i]->cols;
        float *d = nb_qmodel_alloc(m, (size_t)k * 4);
        for (int64_t j = 0; j < k; j++) d[j] = ts[i]->rows == 1 ? 1.0f : 0.05f * nb_rng_normal(&r);
        ts[i]->data = d;
    }
    m->classifier = m->tok_emb;
    return m;
}

/* seconds of wall and CPU time (all threads) to decode n tokens one at a time, after one token
   that builds the state (the int8/int4 packed copies, made once per state: about 1 ns a weight) */
static void decode_once(const nb_qmodel *m, int n, double *wall, double *cpu) {
    nb_qstate s;
    *wall = *cpu = 1e30;
    if (nb_qstate_init(&s, m, 1)) return;
    float *lg = malloc(sizeof(float) * m->cfg.vocab);
    int32_t tok = 1;
    nb_qmodel_forward(m, &s, &tok, 1, 0, lg, 0); /* warm-up: the state's packed int8/int4 copies are made here */
    double t0 = now(), c0 = cpu_now();
    for (int p = 0; p < n; p++) {
        nb_qmodel_forward(m, &s, &tok, 1, p, lg, 0);
        int b = 0;
        for (int i = 1; i < m->cfg.vocab; i++)
            if (lg[i] > lg[b]) b = i;
        tok = b;
    }
    *wall = now() - t0, *cpu = cpu_now() - c0;
    free(lg);
    nb_qstate_free(&s);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 256, reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *only_shape = argc > 3 ? argv[3] : "all", *only_type = argc > 4 ? argv[4] : "all";
    int only_th = argc > 5 ? atoi(argv[5]) : 0, nobase = argc > 6 && !strcmp(argv[6], "nobase");
    struct { const char *name; int dim, hidden, layers, heads, kv, vocab; } shapes[] = {
        {"stories260K", 64, 172, 5, 8, 4, 512}, {"shakespeare", 128, 352, 4, 4, 4, 65},
        {"small", 288, 768, 6, 6, 6, 512}, {"medium", 768, 2048, 8, 12, 12, 512}};
    struct { const char *name; nb_qtype t; int group; } types[] = {
        {"f32", NB_QT_F32, 0}, {"int8/row", NB_QT_I8, 0}, {"q8_0", NB_QT_Q8_0, 0},
        {"int4/g32", NB_QT_I4, 32}, {"q4_0", NB_QT_Q4_0, 0}};
    printf("simd %s, %d decode tokens, best of %d rounds (each round runs every type once, fp32 first)\n",
           nb_simd_name(nb_simd_active()), n, reps);
    enum { NT = sizeof types / sizeof *types };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        if (strcmp(only_shape, "all") && strcmp(only_shape, shapes[s].name)) continue;
        nb_qmodel *m = random_model(shapes[s].dim, shapes[s].hidden, shapes[s].layers, shapes[s].heads, shapes[s].kv, shapes[s].vocab,
                                    n + 1);
        nb_qmodel *q[NT] = {0};
        for (size_t t = 0; t < NT; t++) {
            if ((t || nobase) && strcmp(only_type, "all") && strcmp(only_type, types[t].name)) continue;
            if (nb_qmodel_quantize(m, types[t].t, types[t].group, NB_QT_F32, &q[t])) {
                fprintf(stderr, "%s\n", nb_errmsg());
                return 2;
            }
        }
        for (int th = 1; th <= 2; th++) {
            if (only_th && th != only_th) continue;
            nb_threads_set(th);
            if (th == 2) printf("core-to-core round trip %.0f ns\n", pingpong_ns());
            double wall[NT], cpu[NT];
            for (size_t t = 0; t < NT; t++) wall[t] = cpu[t] = 1e30;
            for (int r = 0; r < reps; r++) /* interleaved: a slow spell of the machine hits every type */
                for (size_t t = 0; t < NT; t++) {
                    if (!q[t]) continue;
                    double w, c;
                    decode_once(q[t], n, &w, &c);
                    wall[t] = w < wall[t] ? w : wall[t];
                    cpu[t] = c < cpu[t] ? c : cpu[t];
                }
            size_t b = 0; /* the baseline: fp32 unless left out (then the first type run) */
            while (b + 1 < NT && !q[b]) b++;
            for (size_t t = 0; t < NT; t++) {
                if (!q[t]) continue;
                printf("%-12s threads %d  %-9s %9.1f tok/s  %.2fx fp32   cpu %7.1f us/tok  %.2fx\n", shapes[s].name, th,
                       types[t].name, n / wall[t], wall[b] / wall[t], 1e6 * cpu[t] / n, cpu[b] / cpu[t]);
            }
        }
        for (size_t t = 0; t < NT; t++) nb_qmodel_free(q[t]);
        nb_qmodel_free(m);
    }
    return 0;
}
