/* model.h: the llama-style decoder (same math as llama2.c's run.c): token embedding, L x (RMSNorm,
   attention with RoPE and grouped kv heads, residual, RMSNorm, SwiGLU FFN, residual), final RMSNorm,
   classifier tied to the embedding or untied. One copy of the math: the training forward is built
   from ops/ops.h on a tape and the quantized variant is the same code through the train/qat.h
   hooks; the no-tape decode path (generation) repeats it token by token with a KV cache and is
   tested against the tape forward. */
#ifndef NB_MODEL_H
#define NB_MODEL_H

#include "../autograd/tape.h"
#include "params.h"
#include "qat.h"
#include "recipe.h"

/* Sanity limits: configs from files beyond these are refused before anything is allocated. */
#define NB_MODEL_MAX_DIM 65536
#define NB_MODEL_MAX_LAYERS 1024
#define NB_MODEL_MAX_HEADS 1024
#define NB_MODEL_MAX_VOCAB (1 << 22)
#define NB_MODEL_MAX_SEQ (1 << 20)
#define NB_MODEL_MAX_PARAMS ((int64_t)1 << 33) /* 8 G floats */

typedef struct nb_model_config {
    int dim;          /* model width C */
    int n_layers;     /* L */
    int n_heads;      /* query heads; head dim H = dim / n_heads */
    int n_kv_heads;   /* key/value heads (divides n_heads) */
    int hidden_dim;   /* FFN width */
    int vocab_size;   /* V */
    int seq_len;      /* max T (RoPE positions, KV cache) */
    float norm_eps;   /* RMSNorm epsilon, 1e-5 */
    float rope_theta; /* 10000 */
    int tied;         /* 1: the classifier is the token embedding */
    float dropout;    /* after the embedding, attention output and FFN output (training only) */
} nb_model_config;

/* Parameter indices of one layer in the model's paramset. */
typedef struct nb_layer_params {
    int attn_norm, wq, wk, wv, wo; /* wq (C, C), wk/wv (nkv*H, C), wo (C, C) */
    int ffn_norm, w1, w2, w3;      /* w1/w3 (hidden, C), w2 (C, hidden) */
} nb_layer_params;

typedef struct nb_model {
    nb_model_config cfg;
    nb_paramset params;      /* "tok_emb", "layers.N.attn_norm", "layers.N.attn.wq", ..., "norm",
                                "classifier" (untied only); table order = this order */
    nb_layer_params *layers; /* (L) indices into params */
    int tok_emb;             /* index of "tok_emb" (V, C) */
    int norm;                /* index of "norm" (C) */
    int classifier;          /* index of "classifier" (V, C); == tok_emb when tied */
    nb_qat *qat;             /* quantization policy for the hooks; NULL = fp32. Not owned. */
    struct nb_exact *exact;  /* NULL, or: a no-grad forward computes the linears with the integer
                                runtime's matmul (train/linear_exact.h), as the export does. Not owned. */
} nb_model;

/* Defaults (norm_eps 1e-5, rope_theta 10000, n_kv_heads = n_heads, tied) for the given sizes. */
void nb_model_config_defaults(nb_model_config *c);
/* llama2.c's FFN width rule: 4C -> 2/3 of it -> rounded up to a multiple of 32. */
int nb_model_default_hidden(int dim);
/* Checks a config (positive sizes, heads divide dim, kv heads divide heads, even head dim, limits
   above, finite eps/theta, dropout in [0, 1)). `what` names the source in messages (a file). */
nb_status nb_model_config_check(const nb_model_config *c, const char *what);
/* Config from a recipe's model section; vocab_size 0 takes `tokenizer_vocab`, hidden_dim 0 the
   llama2.c rule, n_kv_heads 0 = n_heads. Checked. */
nb_status nb_model_config_from_recipe(const nb_recipe_model *rm, int tokenizer_vocab, nb_model_config *c);
/* Total number of parameters (floats) of a config (tied classifier counted once). */
int64_t nb_model_config_numel(const nb_model_config *c);
/* Config as a one-line JSON object {"dim": ..., ...} into buf. */
const char *nb_model_config_json(const nb_model_config *c, char *buf, size_t n);

/* Builds the parameter table for c (checked) with every parameter zero. Kinds: tok_emb EMBED,
   norms NORM (no weight decay), wq..w3 LINEAR, classifier CLASSIFIER. m->qat = NULL. */
nb_status nb_model_init(nb_model *m, const nb_model_config *c);
void nb_model_free(nb_model *m); /* NULL-safe, idempotent */
/* The parameter table of c (names, shapes, kinds in model order) without allocating the
   parameters; *specs is nb_malloc'ed (caller frees). For info, export and checkpoint tools. */
nb_status nb_model_specs(const nb_model_config *c, int *n, nb_param_spec **specs);
/* Random init: every matrix normal(0, std) (wo and w2 scaled by 1/sqrt(2L)), norms 1. Draws come
   from nb_rng(seed, NB_RNG_STREAM_INIT, ...), in table order, so the same seed gives the same model. */
#define NB_RNG_STREAM_INIT 0x696e6974ULL /* "init" */
void nb_model_init_random(nb_model *m, float std, uint64_t seed);
/* Number of parameters (floats; tied classifier counted once). */
int64_t nb_model_numel(const nb_model *m);
/* The parameter tensor at index i (data and grad point into the paramset's blocks). */
static inline nb_tensor *nb_model_param(nb_model *m, int i) { return &m->params.p[i].t; }

/* Forward on the tape. ids (B, T) I32 with T <= seq_len and every id in [0, V); targets (B, T) I32
   or NULL (a target < 0 is ignored). Sets *logits (B, T, V) and, when targets are given, *loss
   (shape (1), mean cross-entropy); loss may be NULL when targets is. Tensors come from the tape's
   arena. Dropout is active when t->training. On failure returns the tape's status (message names
   the problem) and sets the outputs to NULL.
   QAT hooks: every linear weight goes through nb_qat_weight(t, m->qat, index, W) and every linear
   input through nb_qat_act(t, m->qat, index, x), with index = the weight's param index. The tied
   classifier passes m->classifier, which equals m->tok_emb. The embedding table also goes through
   nb_qat_weight(t, m->qat, m->tok_emb, table) before the lookup (the identity unless the policy
   quantizes it: quantize_embeddings, or a quantized tied classifier, since a deployed tied model
   stores one table), so the lookup reads what export writes. */
nb_status nb_model_forward(nb_tape *t, nb_model *m, const nb_tensor *ids, const nb_tensor *targets,
                           nb_tensor **logits, nb_tensor **loss);

/* ---- decoding without a tape (generation) ---- */

/* Decoder state: fp32 KV cache for max_T positions and per-token scratch. With m->qat set, the
   weights are fake-quantized once at init (nb_qat_weight on a no-grad, non-training tape) and each
   linear input goes through nb_qat_act, so generation sees what the quantized model computes. The
   model must outlive the decoder and not change while it is used (re-init after training steps). */
typedef struct nb_decoder {
    nb_model *m;
    int max_T;           /* positions the cache holds (<= seq_len) */
    float *key_cache;    /* (L, max_T, nkv * H) */
    float *value_cache;  /* (L, max_T, nkv * H) */
    float *x, *xb, *xb2; /* (C) residual stream and scratch */
    float *q;            /* (C) */
    float *hb, *hb2;     /* (hidden) gate w1 h, up w3 h */
    float *hs;           /* (hidden) silu(gate) * up */
    float *att;          /* (n_heads, max_T) attention scores */
    float *prob;         /* (n_heads, max_T) their softmax */
    float *logits;       /* (V) output of the last nb_model_decode */
    float **w;           /* (params.n) weight each linear reads: the param data or a fake-quant copy */
    float *wq_block;     /* owned fake-quantized copies (NULL without qat) */
    nb_arena arena;      /* hook scratch (reset per linear call) */
    nb_tape tape;
} nb_decoder;

nb_status nb_decoder_init(nb_decoder *d, nb_model *m, int max_T);
void nb_decoder_free(nb_decoder *d); /* NULL-safe, idempotent */
/* Runs token `token` at position pos (0 <= pos < max_T; positions 0..pos-1 must have been decoded
   before in this decoder) and returns the logits (V) in *logits (points into d, valid until the
   next call). */
nb_status nb_model_decode(nb_decoder *d, int token, int pos, const float **logits);

/* ---- sampling ---- */

/* temperature 0: greedy argmax (ties: lowest id). Otherwise softmax(logits / temperature), then,
   with 0 < top_p < 1, nucleus sampling over the smallest set of most likely tokens whose mass
   reaches top_p (as llama2.c's sample_topp). Draws from nb_rng(seed, NB_RNG_STREAM_SAMPLE, k). */
#define NB_RNG_STREAM_SAMPLE 0x73616d70ULL /* "samp" */
typedef struct nb_sampler {
    int vocab;          /* V */
    float temperature;
    float top_p;        /* >= 1 or <= 0: plain sampling */
    nb_rng rng;
    float *probs;       /* (V) scratch */
    int *order;         /* (V) scratch for top-p */
} nb_sampler;

nb_status nb_sampler_init(nb_sampler *s, int vocab, float temperature, float top_p, uint64_t seed);
void nb_sampler_free(nb_sampler *s);
/* The next token from logits (V); logits are not modified. */
int nb_sampler_sample(nb_sampler *s, const float *logits);
/* Index of the largest value (first one on ties). */
int nb_argmax(const float *x, int n);

#endif
