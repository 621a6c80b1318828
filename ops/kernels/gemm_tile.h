/* gemm_tile.h: the cache-blocked GEMM driver and packing, shared by the SIMD files.
   Included (once) by gemm_avx512.c and gemm_avx2.c after they define MR, NR and the two
   micro-kernels, so that packing is compiled with the same instruction set:

     kernel_packed(kc, Ap, Bp, C, ldc, mr, nr, acc)     Ap: packed MR x kc micro-panel
     kernel_strided(kc, A, rs, cs, Bp, C, ldc, mr, nr, acc)  A(i, k) at A[i * rs + k * cs]

   Both compute the mr x nr tile  C = acc ? C + sum : sum,  sum[i][j] = fma chain over k in
   order (the packed B micro-panel Bp holds kc rows of NR floats, zero-padded past nr).
   Because every element's sum is formed the same way wherever the element sits in a tile, the
   result does not depend on how the caller splits M and N between threads. K is split into
   KC blocks by K alone (never by thread), and blocks are added to C in k order. */
#ifndef NB_GEMM_TILE_H
#define NB_GEMM_TILE_H

#include <stdint.h>
#include <string.h>

#include "../../core/status.h"

/* Block sizes. KC: depth of one pass (the B micro-panel KC x NR stays in L1d, 32 KiB);
   MC: rows of A per block (MC x KC stays in L2, 1 MiB); NC: columns of the packed B panel. */
#ifndef GEMM_KC
#define GEMM_KC 256
#endif
#ifndef GEMM_MC
#define GEMM_MC (MR * 24)
#endif
#ifndef GEMM_NC
#define GEMM_NC (NR * 64)
#endif

/* Per-thread packing buffers: grown once, kept for the life of the thread. */
static __thread float *ws_a, *ws_b;
static __thread size_t ws_na, ws_nb;

static float *ws_grow(float **p, size_t *cap, size_t n) {
    if (*cap >= n) return *p;
    float *q = nb_malloc(n * sizeof(float));
    if (!q) return NULL;
    nb_free(*p);
    *p = q;
    *cap = n;
    return q;
}

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* Pack op(A)[0:mc, 0:kc] into MR-row micro-panels: dst[p][k * MR + i], rows past mc zero. */
static void pack_a(int ta, int64_t mc, int64_t kc, const float *A, int64_t lda, float *dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += MR * kc) {
        int mr = (int)imin(MR, mc - i0);
        if (ta) { /* A(i, k) = A[k * lda + i]: each k is a contiguous run of mr floats */
            for (int64_t k = 0; k < kc; k++) {
                const float *s = A + k * lda + i0;
                float *d = dst + k * MR;
                for (int i = 0; i < mr; i++) d[i] = s[i];
                for (int i = mr; i < MR; i++) d[i] = 0.0f;
            }
        } else { /* A(i, k) = A[i * lda + k]: transpose, a chunk of k at a time */
            for (int64_t k0 = 0; k0 < kc; k0 += 64) {
                int64_t kn = imin(64, kc - k0);
                for (int i = 0; i < MR; i++) {
                    float *d = dst + k0 * MR + i;
                    if (i < mr) {
                        const float *s = A + (i0 + i) * lda + k0;
                        for (int64_t k = 0; k < kn; k++) d[k * MR] = s[k];
                    } else {
                        for (int64_t k = 0; k < kn; k++) d[k * MR] = 0.0f;
                    }
                }
            }
        }
    }
}

/* Pack op(B)[0:kc, 0:nc] into NR-column micro-panels: dst[p][k * NR + j], columns past nc zero. */
static void pack_b(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *dst) {
    for (int64_t j0 = 0; j0 < nc; j0 += NR, dst += NR * kc) {
        int nr = (int)imin(NR, nc - j0);
        if (!tb) { /* B(k, j) = B[k * ldb + j]: rows are contiguous */
            for (int64_t k = 0; k < kc; k++) {
                const float *s = B + k * ldb + j0;
                float *d = dst + k * NR;
                if (nr == NR) {
                    memcpy(d, s, NR * sizeof(float));
                } else {
                    for (int j = 0; j < nr; j++) d[j] = s[j];
                    for (int j = nr; j < NR; j++) d[j] = 0.0f;
                }
            }
        } else { /* B(k, j) = B[j * ldb + k]: transpose, a chunk of k at a time */
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
    /* Pack A when it is reused across enough column tiles to pay for the copy; otherwise the
       kernel reads A in place through row offsets. */
    int packa = N > 2 * NR;
    float *bp = ws_grow(&ws_b, &ws_nb, (size_t)KC * NC);
    float *ap = packa ? ws_grow(&ws_a, &ws_na, (size_t)KC * MC) : NULL;
    if (!bp || (packa && !ap)) return -1;
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
                if (packa) pack_a(ta, mc, kc, a0, lda, ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)imin(NR, nc - jr);
                    const float *b = bp + jr * kc;
                    float *c = C + ic * ldc + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int mr = (int)imin(MR, mc - ir);
                        if (packa)
                            kernel_packed(kc, ap + ir * kc, b, c + ir * ldc, ldc, mr, nr, acc);
                        else
                            kernel_strided(kc, a0 + ir * rs_a, rs_a, cs_a, b, c + ir * ldc, ldc, mr, nr, acc);
                    }
                }
            }
        }
    }
    return 0;
}

#endif
