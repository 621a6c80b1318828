/* gemm_tile.h: the cache-blocked GEMM driver and packing, shared by the SIMD files.
   Included (once) by gemm_avx512.c and gemm_avx2.c after they define MR, NR and the
   micro-kernel, so that packing is compiled with the same instruction set:

     kernel(kc, A, rs, cs, Bp, C, ldc, mr, nr, acc)      A(i, k) at A[i * rs + k * cs]

   It computes the mr x nr tile  C = acc ? C + sum : sum,  sum[i][j] = fma chain over k in
   order (the packed B micro-panel Bp holds kc rows of NR floats, zero-padded past nr).
   Because every element's sum is formed the same way wherever the element sits in a tile, the
   result does not depend on how the caller splits M and N between threads. K is split into
   KC blocks by K alone (never by thread), and blocks are added to C in k order. */
#ifndef NB_GEMM_TILE_H
#define NB_GEMM_TILE_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "../../core/status.h"

/* Block sizes (Zen 4: L1d 32 KiB, L2 1 MiB per core; tuned by tests/bench/bench_gemm).
   KC: depth of one pass; 384 measured a little faster than 256 or 512 (fewer passes over C, and the
   KC x NR micro-panel of B streams well from L2 even when it overflows L1).
   MC: rows of A per block (MC x KC, read in place, stays in L2). NC: columns of the packed B panel. */
#ifndef GEMM_KC
#define GEMM_KC 384
#endif
#ifndef GEMM_MC
#define GEMM_MC (MR * 24)
#endif
#ifndef GEMM_NC
#define GEMM_NC (NR * 64)
#endif

/* Per-thread buffers (packed B; a copied row of A): grown once, kept for the life of the thread
   and freed when it exits (a pthread key destructor; OpenMP workers live as long as the process). */
typedef struct gemm_ws {
    float *a, *b;
    size_t na, nb; /* capacities in floats */
} gemm_ws;
static __thread gemm_ws ws;
static pthread_key_t ws_key;
static pthread_once_t ws_once = PTHREAD_ONCE_INIT;

static void ws_release(void *p) {
    gemm_ws *w = p;
    nb_free(w->a);
    nb_free(w->b);
    memset(w, 0, sizeof *w);
}

static void ws_key_make(void) { (void)pthread_key_create(&ws_key, ws_release); }

static float *ws_grow(float **p, size_t *cap, size_t n) {
    if (*cap >= n) return *p;
    float *q = nb_malloc(n * sizeof(float));
    if (!q) return NULL;
    nb_free(*p);
    *p = q;
    *cap = n;
    pthread_once(&ws_once, ws_key_make);
    pthread_setspecific(ws_key, &ws);
    return q;
}

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* Pack op(B)[0:kc, 0:nc] into NR-column micro-panels: dst[p][k * NR + j], columns past nc zero. */
static __attribute__((noinline)) void pack_b(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *dst) {
    if (!tb) { /* B(k, j) = B[k * ldb + j]: walk each row of B once, left to right (streams well) */
        int64_t nfull = nc / NR * NR;
        for (int64_t k = 0; k < kc; k++) {
            const float *s = B + k * ldb;
            float *d = dst + k * NR;
            for (int64_t j0 = 0; j0 < nfull; j0 += NR) memcpy(d + j0 * kc, s + j0, NR * sizeof(float));
            if (nfull < nc) {
                float *e = d + nfull * kc;
                int nr = (int)(nc - nfull);
                for (int j = 0; j < nr; j++) e[j] = s[nfull + j];
                for (int j = nr; j < NR; j++) e[j] = 0.0f;
            }
        }
        return;
    }
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
        int nr = (int)imin(NR, nc - j0);
#ifdef HAVE_PACK_BT_PANEL /* the ISA file transposes in registers */
        pack_bt_panel(kc, nr, B + j0 * ldb, ldb, dst);
        continue;
#endif
        /* B(k, j) = B[j * ldb + k]: transpose, a chunk of k at a time */
        for (int64_t k0 = 0; k0 < kc; k0 += 64) {
            int64_t kn = imin(64, kc - k0);
            for (int j = 0; j < NR; j++) {
                float *d = dst + k0 * NR + j;
                if (j < nr) {
                    const float *s = B + (j0 + j) * ldb + k0;
                    for (int64_t k = 0; k < kn; k++) d[k * NR] = s[k];
                } else {
                    for (int64_t k = 0; k < kn; k++) d[k * NR] = 0.0f;
                }
            }
        }
    }
}

/* Depth of each K block: K split into ceil(K / GEMM_KC) near-equal blocks (a function of K only). */
static inline int64_t gemm_kc(int64_t K) {
    int64_t nblk = (K + GEMM_KC - 1) / GEMM_KC;
    return (K + nblk - 1) / nblk;
}

/* C[0:M, 0:N] (beta 0 or 1) += op(A) op(B), one thread. Returns -1 if a buffer could not be had. */
static int gemm_blocked(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    int64_t KC = gemm_kc(K);
    int64_t NC = imin(GEMM_NC, (N + NR - 1) / NR * NR);
    int64_t MC = imin(GEMM_MC, (M + MR - 1) / MR * MR);
    /* Only B is packed: the kernel reads A in place through row offsets (broadcasts need no
       particular layout, and measured no slower than packing A, whose transpose costs ~8%). */
    float *bp = ws_grow(&ws.b, &ws.nb, (size_t)KC * NC);
    if (!bp) return -1;
    int64_t rs_a = ta ? 1 : lda, cs_a = ta ? lda : 1; /* op(A)(i, k) = A[i * rs_a + k * cs_a] */
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = imin(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = imin(KC, K - pc);
            int acc = beta != 0.0f || pc > 0;
            pack_b(tb, kc, nc, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, bp);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = imin(MC, M - ic);
                const float *a0 = A + ic * rs_a + pc * cs_a;
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)imin(NR, nc - jr);
                    const float *b = bp + jr * kc;
                    float *c = C + ic * ldc + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)imin(MR, mc - ir);
                        kernel(kc, a0 + ir * rs_a, rs_a, cs_a, b, c + ir * ldc, ldc, mr, nr, acc);
                    }
                }
            }
        }
    }
    return 0;
}

static void gemv_dot(int64_t N, int64_t K, const float *a, const float *B, int64_t ldb, float beta, float *c);
static void gemv_axpy(int64_t N, int64_t K, const float *a, int64_t as, const float *B, int64_t ldb, float beta,
                      float *c);

/* Small M (decode-like): one row of C at a time, no packing of B. */
static int gemv_rows(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    for (int64_t m = 0; m < M; m++) {
        const float *a = ta ? A + m : A + m * lda; /* a(k) = a[k * as] */
        int64_t as = ta ? lda : 1;
        if (!tb) {
            gemv_axpy(N, K, a, as, B, ldb, beta, C + m * ldc);
            continue;
        }
        if (ta) { /* the dot products want a contiguous row of A */
            float *t = ws_grow(&ws.a, &ws.na, (size_t)K);
            if (!t) return -1;
            for (int64_t k = 0; k < K; k++) t[k] = a[k * as];
            a = t;
        }
        gemv_dot(N, K, a, B, ldb, beta, C + m * ldc);
    }
    return 0;
}

#endif
