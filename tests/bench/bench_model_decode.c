/* bench_model_decode.c: fp32 token-by-token decode (nb_model_decode, KV cache) of a random llama model,
   tokens/s per SIMD level. Usage: bench_model_decode [dim n_layers n_heads n_kv hidden vocab tokens].
   Default: stories15M's shape (288, 6, 6, 6, 768, 32000), 256 tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../../core/simd.h"
#include "../../train/model.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    nb_model_config c;
    nb_model_config_defaults(&c);
    int v[7] = {288, 6, 6, 6, 768, 32000, 256};
    for (int i = 0; i < 7 && i + 1 < argc; i++) v[i] = atoi(argv[i + 1]);
    c.dim = v[0], c.n_layers = v[1], c.n_heads = v[2], c.n_kv_heads = v[3], c.hidden_dim = v[4];
    c.vocab_size = v[5], c.seq_len = v[6];
    int N = v[6];
    nb_model m;
    if (nb_model_init(&m, &c) != NB_OK) return fprintf(stderr, "%s\n", nb_errmsg()), 1;
    nb_model_init_random(&m, 0.02f, 1);
    printf("model: dim %d, %d layers, %d heads (%d kv), hidden %d, vocab %d; %lld params; %d tokens, %d threads\n",
           c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim, c.vocab_size, (long long)nb_model_numel(&m), N,
           nb_threads_get());
    nb_simd_level levels[] = {NB_SIMD_SCALAR, NB_SIMD_AVX2, NB_SIMD_AVX512};
    for (int l = 0; l < 3; l++) {
        if (nb_simd_force(levels[l]) != levels[l]) continue;
        nb_decoder d;
        if (nb_decoder_init(&d, &m, N) != NB_OK) return fprintf(stderr, "%s\n", nb_errmsg()), 1;
        const float *lg;
        int tok = 1;
        double t0 = now();
        for (int p = 0; p < N; p++) {
            if (nb_model_decode(&d, tok, p, &lg) != NB_OK) return fprintf(stderr, "%s\n", nb_errmsg()), 1;
            tok = nb_argmax(lg, c.vocab_size);
        }
        double dt = now() - t0;
        printf("%-7s %8.1f tokens/s\n", nb_simd_name(levels[l]), N / dt);
        nb_decoder_free(&d);
    }
    nb_model_free(&m);
    return 0;
}
