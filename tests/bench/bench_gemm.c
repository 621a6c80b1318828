/* bench_gemm.c: nb_sgemm GFLOP/s at transformer shapes, 1 and 2 threads, against OpenBLAS and
   against a measured FP32 FMA peak. Built by meson, never run by the test suite.

     ninja -C build && ./build/bench_gemm            # all shapes
     ./build/bench_gemm 4096 288 768 0 1 [1]         # one shape: M N K ta tb [beta]
     NB_SIMD=avx2 ./build/bench_gemm                 # another level
     NB_BENCH_CPUTIME=1 ./build/bench_gemm           # on a loaded machine, 1 thread (see gemm_clock)
     chrt -f 1 ./build/bench_gemm                    # on a shared machine, as root: ahead of other work

   Each figure is the best call time over 3 rounds of ~0.1 s, alternating nibble and OpenBLAS.
   OpenBLAS (if built with NB_HAVE_OPENBLAS) runs with openblas_set_num_threads() equal to nibble's
   thread count; the header line names the kernel it picked (OPENBLAS_CORETYPE overrides it).
   Columns: GFLOP/s of nibble and OpenBLAS, and nibble's share of the FMA peak measured at start. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <immintrin.h>

#include "../../core/rng.h"
#include "../../core/simd.h"
#include "../../core/status.h"
#include "../../ops/kernels/gemm.h"

#if NB_HAVE_OPENBLAS
#include <cblas.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* NB_BENCH_CPUTIME=1: time GEMMs by process CPU time instead of wall time, one thread only (for a
   loaded machine: time other processes take is not counted). With two threads CPU time says
   nothing useful (a preempted thread's share is done by the other, barriers spin), so the
   two-thread columns are skipped in this mode. */
static int cputime_mode;
static int cur_threads = 1;

static double gemm_clock(void) {
    if (!cputime_mode) return now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (ts.tv_sec + ts.tv_nsec * 1e-9) / cur_threads;
}

/* Register-only FMA loop: 12 independent accumulators (FMA latency 4 x 2 pipes, hidden). */
#define FMA12(T, fma)                                                                   \
    T a0 = x, a1 = a0 + x, a2 = a1 + x, a3 = a2 + x, a4 = a3 + x, a5 = a4 + x, a6 = a5 + x; \
    T a7 = a6 + x, a8 = a7 + x, a9 = a8 + x, a10 = a9 + x, a11 = a10 + x;              \
    for (long it = 0; it < iters; it++) {                                               \
        a0 = fma(a0, m, d), a1 = fma(a1, m, d), a2 = fma(a2, m, d), a3 = fma(a3, m, d); \
        a4 = fma(a4, m, d), a5 = fma(a5, m, d), a6 = fma(a6, m, d), a7 = fma(a7, m, d); \
        a8 = fma(a8, m, d), a9 = fma(a9, m, d), a10 = fma(a10, m, d), a11 = fma(a11, m, d); \
    }                                                                                   \
    T s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;

__attribute__((target("avx512f,fma"), noinline)) static double fma_loop_avx512(long iters) {
    __m512 x = _mm512_set1_ps(1.0f), m = _mm512_set1_ps(1.0000001f), d = _mm512_set1_ps(1e-7f);
    FMA12(__m512, _mm512_fmadd_ps)
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"), noinline)) static double fma_loop_avx2(long iters) {
    __m256 x = _mm256_set1_ps(1.0f), m = _mm256_set1_ps(1.0000001f), d = _mm256_set1_ps(1e-7f);
    FMA12(__m256, _mm256_fmadd_ps)
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0];
}

/* CPU time of the calling thread (the peak loop's clock: time the thread was not running is not
   counted, so the peak is the core's, whatever else the machine does). */
static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Peak GFLOP/s of the active level with nt threads: each thread times its own loop by its own CPU
   time, the rates are summed, best of 12 runs. */
static double peak(int nt) {
    int wide = nb_simd_active() >= NB_SIMD_AVX512;
    long iters = 4000000;
    double best = 0;
    for (int rep = 0; rep < 12; rep++) {
        double rate = 0;
#pragma omp parallel num_threads(nt) reduction(+ : rate)
        {
            double t0 = thread_cpu();
            double sink = wide ? fma_loop_avx512(iters) : fma_loop_avx2(iters);
            double t = thread_cpu() - t0;
            if (sink == 12345.0) printf("%g", sink);
            rate += (double)iters * 12 * (wide ? 16 : 8) * 2 / t * 1e-9;
        }
        if (rate > best) best = rate;
    }
    return best;
}

typedef struct shape {
    const char *name;
    int ta, tb;
    int64_t M, N, K;
    float beta;
    int64_t batch; /* > 1: that many independent products (nb_sgemm_batched; OpenBLAS in a loop) */
} shape;

static int64_t nbatch(const shape *s) { return s->batch > 1 ? s->batch : 1; }

typedef void (*gemm_call)(const shape *s, const float *A, const float *B, float *C);

static void call_nb(const shape *s, const float *A, const float *B, float *C) {
    if (s->batch > 1)
        nb_sgemm_batched(s->ta, s->tb, s->batch, s->M, s->N, s->K, A, s->ta ? s->M : s->K, s->M * s->K, B,
                         s->tb ? s->K : s->N, s->K * s->N, s->beta, C, s->N, s->M * s->N);
    else
        nb_sgemm(s->ta, s->tb, s->M, s->N, s->K, A, s->ta ? s->M : s->K, B, s->tb ? s->K : s->N, s->beta, C, s->N);
}

#if NB_HAVE_OPENBLAS
static void call_blas(const shape *s, const float *A, const float *B, float *C) {
    for (int64_t z = 0; z < nbatch(s); z++)
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, (int)s->M,
                    (int)s->N, (int)s->K, 1.0f, A + z * s->M * s->K, (int)(s->ta ? s->M : s->K), B + z * s->K * s->N,
                    (int)(s->tb ? s->K : s->N), s->beta, C + z * s->M * s->N, (int)s->N);
}
#endif

/* Best time of one call over repeated calls filling about `budget` seconds. */
static double time_gemm(gemm_call f, const shape *s, const float *A, const float *B, float *C, double budget) {
    double flop = 2.0 * s->M * s->N * s->K * nbatch(s), best = 1e30, total = 0;
    int inner = flop < 1e7 ? 20 : 1;
    f(s, A, B, C); /* warm up: buffers, threads, caches */
    for (int rep = 0; rep < 100000 && (total < budget || rep < 3); rep++) {
        double t0 = gemm_clock();
        for (int i = 0; i < inner; i++) f(s, A, B, C);
        double t = (gemm_clock() - t0) / inner;
        total += t * inner;
        if (t < best) best = t;
    }
    return best;
}

static void run_shape(const shape *s, double *pk) {
    int64_t na = s->M * s->K * nbatch(s), nb = s->K * s->N * nbatch(s), nc = s->M * s->N * nbatch(s);
    float *A = nb_malloc(na * sizeof(float)), *B = nb_malloc(nb * sizeof(float)), *C = nb_malloc(nc * sizeof(float));
    nb_rng r = nb_rng_make(1, 2);
    for (int64_t i = 0; i < na; i++) A[i] = nb_rng_normal(&r);
    for (int64_t i = 0; i < nb; i++) B[i] = nb_rng_normal(&r);
    memset(C, 0, nc * sizeof(float));
    printf("%-18s %2s %5lld %5lld %5lld", s->name, s->ta ? (s->tb ? "TT" : "TN") : (s->tb ? "NT" : "NN"),
           (long long)s->M, (long long)s->N, (long long)s->K);
    double flop = 2.0 * s->M * s->N * s->K * nbatch(s);
    for (int nt = 1; nt <= (cputime_mode ? 1 : 2); nt++) {
        cur_threads = nt;
        /* alternate the two libraries for a few rounds (this VM is noisy), keep the best of each */
        double tn = 1e30, to = 1e30;
        for (int round = 0; round < 3; round++) {
            nb_threads_set(nt);
            double t = time_gemm(call_nb, s, A, B, C, 0.1);
            tn = t < tn ? t : tn;
#if NB_HAVE_OPENBLAS
            usleep(20000); /* let spinning OpenMP workers go to sleep */
            openblas_set_num_threads(nt);
            t = time_gemm(call_blas, s, A, B, C, 0.1);
            to = t < to ? t : to;
            usleep(20000); /* and OpenBLAS's */
#endif
        }
        double g = flop / tn * 1e-9, o = to < 1e30 ? flop / to * 1e-9 : 0;
        printf(" | %6.1f %6.1f %4.0f%%", g, o, 100.0 * g / pk[nt - 1]);
    }
    printf("\n");
    fflush(stdout);
    nb_free(A);
    nb_free(B);
    nb_free(C);
}

int main(int argc, char **argv) {
    cputime_mode = getenv("NB_BENCH_CPUTIME") && atoi(getenv("NB_BENCH_CPUTIME"));
    double pk[2];
    pk[0] = peak(1);
    pk[1] = peak(2);
    printf("nibble sgemm (%s)", nb_simd_name(nb_simd_active()));
#if NB_HAVE_OPENBLAS
    printf(" vs OpenBLAS %s (core %s, OPENBLAS_CORETYPE=%s)", openblas_get_config(), openblas_get_corename(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
#else
    printf(" (built without OpenBLAS)");
#endif
    printf("\nmeasured FMA peak: %.1f GFLOP/s on 1 thread, %.1f on 2\n", pk[0], pk[1]);
    printf("GFLOP/s (%s); peak%% = nibble / measured peak at the same thread count\n",
           cputime_mode ? "CPU time / threads" : "wall time");
    printf("%-18s %2s %5s %5s %5s | %6s %6s %5s | %6s %6s %5s\n", "shape", "op", "M", "N", "K", "nb 1t", "blas", "peak",
           "nb 2t", "blas", "peak");
    if (argc >= 4) {
        shape s = {"custom", argc > 4 ? atoi(argv[4]) : 0, argc > 5 ? atoi(argv[5]) : 0, atoll(argv[1]),
                   atoll(argv[2]), atoll(argv[3]), argc > 6 ? (float)atof(argv[6]) : 0.0f};
        run_shape(&s, pk);
        return 0;
    }
    /* linear y = x W^T is NT; its dX = dY W is NN (beta 1); its dW = dY^T X is TN (beta 1) */
    const shape shapes[] = {
        {"square", 0, 0, 512, 512, 512, 0},
        {"fwd 288<-768", 0, 1, 4096, 288, 768, 0},
        {"fwd 768<-288", 0, 1, 4096, 768, 288, 0},
        {"dX 768<-288", 0, 0, 4096, 768, 288, 1},
        {"dX 288<-768", 0, 0, 4096, 288, 768, 1},
        {"dW 288x768", 1, 0, 288, 768, 4096, 1},
        {"dW 768x288", 1, 0, 768, 288, 4096, 1},
        {"attn-like TT", 1, 1, 288, 288, 768, 0},
        {"tiny fwd 64<-64", 0, 1, 4096, 64, 64, 0},
        {"tiny fwd 172<-64", 0, 1, 4096, 172, 64, 0},
        {"tiny fwd 64<-172", 0, 1, 4096, 64, 172, 0},
        {"tiny dX 64<-172", 0, 0, 4096, 64, 172, 1},
        {"tiny dW 64x64", 1, 0, 64, 64, 4096, 1},
        {"tiny dW 172x64", 1, 0, 172, 64, 4096, 1},
        {"decode M=1", 0, 1, 1, 768, 288, 0},
        {"decode M=1 NN", 0, 0, 1, 288, 768, 0},
        {"odd", 0, 0, 100, 101, 99, 0},
        {"odd large", 1, 1, 1000, 517, 333, 0},
        /* attention of the tiny model as plain products: 16 x 8 heads of T = 256, head dim 8 */
        {"attn QK^T x128", 0, 1, 256, 256, 8, 0, 128},
        {"attn PV x128", 0, 0, 256, 8, 256, 0, 128},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(&shapes[i], pk);
    return 0;
}
