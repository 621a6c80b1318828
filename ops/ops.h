/* ops.h: every differentiable op. Each takes the tape first, returns a new tensor from the
   tape's arena (NULL after a failure; the tape's status says why), records a node when the tape
   records and an input requires grad, and has its forward, backward and scalar reference in one
   file under ops/. Inputs are contiguous f32 unless stated. Shape letters: B batch, T time,
   C channels, V vocabulary, H head dim, L layers. */
#ifndef NB_OPS_H
#define NB_OPS_H

#include "../autograd/tape.h"

/* ---- elementwise.c ---- */
/* numpy-style broadcasting over up to 4 dims (shapes aligned at the right) */
nb_tensor *nb_add(nb_tape *t, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_sub(nb_tape *t, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_mul(nb_tape *t, nb_tensor *a, nb_tensor *b);
nb_tensor *nb_scale(nb_tape *t, nb_tensor *a, float s);
nb_tensor *nb_sum(nb_tape *t, nb_tensor *a);  /* all elements -> shape (1) */
nb_tensor *nb_mean(nb_tape *t, nb_tensor *a); /* all elements -> shape (1) */
/* view ops: share data, gradient flows back through the node */
nb_tensor *nb_reshape(nb_tape *t, nb_tensor *a, int ndim, const int64_t *shape);

/* ---- matmul.c ---- */
/* a (..., M, K) [ta: (..., K, M)] times b (K, N) [tb: (N, K)] or batched b with the same
   leading dims as a. */
nb_tensor *nb_matmul(nb_tape *t, nb_tensor *a, nb_tensor *b, int ta, int tb);
/* x (..., Cin) @ w (Cout, Cin)^T -> (..., Cout): a linear layer without bias. */
nb_tensor *nb_linear(nb_tape *t, nb_tensor *x, nb_tensor *w);

/* ---- embed.c ---- */
/* table (V, C), ids I32 of any shape S -> (S..., C). Ids outside [0, V) fail the tape.
   Backward scatters (adds) rows into the table's gradient. */
nb_tensor *nb_embedding(nb_tape *t, nb_tensor *table, nb_tensor *ids);

/* ---- norm.c ---- */
/* y = x / sqrt(mean(x^2) + eps) * w, over the last dim C; w (C) */
nb_tensor *nb_rmsnorm(nb_tape *t, nb_tensor *x, nb_tensor *w, float eps);
/* y = (x - mean) / sqrt(var + eps) * w + b over the last dim; b may be NULL */
nb_tensor *nb_layernorm(nb_tape *t, nb_tensor *x, nb_tensor *w, nb_tensor *b, float eps);

/* ---- rope.c ---- */
/* x (B, T, nh, H): rotate pairs (2i, 2i+1) of each head by angle (pos0 + t) * theta^(-2i/H),
   as llama2.c's run.c does. */
nb_tensor *nb_rope(nb_tape *t, nb_tensor *x, float theta, int64_t pos0);
/* The tables nb_rope multiplies with, (T, H) each, for positions pos0..pos0+T-1: c = cos, s = the
   signed sin of the forward rotation, si (may be NULL) = that of the inverse. The integer runtime
   uses them too, so both rotate with the same bits. */
void nb_rope_tables(float *c, float *s, float *si, int64_t T, int64_t H, float theta, int64_t pos0);

/* ---- activation.c ---- */
nb_tensor *nb_silu(nb_tape *t, nb_tensor *x);
nb_tensor *nb_gelu(nb_tape *t, nb_tensor *x); /* tanh approximation, as GPT-2 */
/* silu(gate) * up, same shapes */
nb_tensor *nb_swiglu(nb_tape *t, nb_tensor *gate, nb_tensor *up);
nb_tensor *nb_softmax(nb_tape *t, nb_tensor *x); /* over the last dim */
/* inverted dropout with probability p while t->training; identity otherwise. Mask from t->rng. */
nb_tensor *nb_dropout(nb_tape *t, nb_tensor *x, float p);

/* ---- attention.c ---- */
/* Causal self-attention with grouped kv heads: q (B, T, nh, H), k and v (B, T, nkv, H) with
   nh % nkv == 0; query head h uses kv head h / (nh / nkv). Scale 1/sqrt(H). -> (B, T, nh, H) */
nb_tensor *nb_attention(nb_tape *t, nb_tensor *q, nb_tensor *k, nb_tensor *v);

/* ---- loss.c ---- */
/* Mean over rows of -log softmax(logits)[target]; logits (N, V) (or (B, T, V)), targets I32 with
   N elements; a target < 0 is ignored (not counted). -> shape (1). Fused stable log-softmax. */
nb_tensor *nb_cross_entropy(nb_tape *t, nb_tensor *logits, nb_tensor *targets);
/* Distillation: mean over rows of T^2 KL(softmax(teacher / T) || softmax(student / T)), logits
   (..., V) of the same shape, T = temperature > 0. -> shape (1). Only the student gets a gradient
   (T (q - p) / rows); the teacher is a constant even if it requires grad. */
nb_tensor *nb_kl_div(nb_tape *t, nb_tensor *student_logits, nb_tensor *teacher_logits, float temperature);

#endif
