/* runtime.h: nibble's integer inference runtime. An nb_qmodel holds a llama-style model whose
   matrices stay in their stored type (F32, F16, ggml Q8_0/Q4_0 blocks, nibble int8/int4 codes with
   per-row or per-group scales): there is no fp32 copy of a quantized weight. The forward pass is
   llama2.c run.c's math (RMSNorm, RoPE on pairs (2i, 2i+1), GQA attention, SwiGLU, tied or untied
   classifier) with a KV cache; prompts are prefilled in batches with the same kernels.
   Activation schemes follow the weight type: F32/F16 use fp32 activations; Q8_0/Q4_0 quantize each
   activation row to Q8_0 blocks as llama.cpp's CPU path does; I8/I4 quantize activations to int8 on
   the weight's own groups (per token when the group is the whole row), as llama2.c's runq.c does. */
#ifndef NB_RUNTIME_H
#define NB_RUNTIME_H

#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"

/* Weight storage types. On-disk values (nibble export attribute "qtype"): explicit, append-only. */
typedef enum nb_qtype {
    NB_QT_F32 = 0,
    NB_QT_F16 = 1,
    NB_QT_Q8_0 = 2, /* ggml block_q8_0, rows of cols/32 blocks */
    NB_QT_Q4_0 = 3, /* ggml block_q4_0 */
    NB_QT_I8 = 4,   /* int8 codes (rows, cols), scales (rows, ngroups), optional zero points */
    NB_QT_I4 = 5,   /* int4 codes, each row packed to ceil(cols/2) bytes: element 2k low nibble */
} nb_qtype;

const char *nb_qtype_name(nb_qtype t);
/* Parse "f32", "f16", "q8_0", "q4_0", "int8", "int4" (-1 if unknown). */
int nb_qtype_parse(const char *s);

typedef struct nb_qtensor {
    nb_qtype type;
    int64_t rows;      /* output features (1 for a norm vector) */
    int64_t cols;      /* input features */
    int64_t group;     /* I8/I4: elements per scale along a row (== cols: per row); else 0 */
    void *data;        /* rows * nb_qtensor_row_bytes bytes (owned by the model) */
    float *scales;     /* I8/I4: (rows, ngroups) */
    int8_t *zeros;     /* I8/I4: (rows, ngroups) zero points, w = s * (q - z); NULL = symmetric */
    int64_t act_group; /* I8/I4: inputs per int8 activation scale: 0 = the weight's group; cols =
                          one scale per token (what the QAT policy trained with; exports record it) */
} nb_qtensor;

int64_t nb_qtensor_ngroups(const nb_qtensor *t);
size_t nb_qtensor_row_bytes(nb_qtype type, int64_t cols);
/* Dequantize row r into out (cols floats). */
void nb_qtensor_dequant_row(const nb_qtensor *t, int64_t r, float *out);

typedef struct nb_qconfig {
    int dim;        /* C */
    int hidden_dim; /* FFN width */
    int n_layers;   /* L */
    int n_heads;
    int n_kv_heads;
    int vocab;      /* V */
    int seq_len;    /* max T (KV cache length) */
    int tied;       /* classifier shares the token embedding */
    float norm_eps; /* RMSNorm epsilon (1e-5 in llama2.c) */
    float rope_theta;
} nb_qconfig;

typedef struct nb_qlayer {
    nb_qtensor attn_norm, wq, wk, wv, wo; /* norms are F32 (1, C) */
    nb_qtensor ffn_norm, w1, w2, w3;      /* w1 gate, w2 down, w3 up */
} nb_qlayer;

/* Vocabulary carried by the model file (GGUF / nibble export / llama2.c tokenizer.bin). Pieces
   are stored as llama2.c writes them (plain spaces); types: 1 normal, 2 unknown, 3 control, 6 byte. */
typedef struct nb_qvocab {
    int n;
    char **pieces;   /* (n) NUL-terminated */
    float *scores;   /* (n) */
    int32_t *types;  /* (n) */
    int bos, eos, unk;
    int max_len;
} nb_qvocab;

typedef struct nb_qmodel {
    nb_qconfig cfg;
    nb_qtensor tok_emb;    /* (V, C) */
    nb_qlayer *layers;     /* (L) */
    nb_qtensor norm;       /* (1, C) F32 */
    nb_qtensor classifier; /* (V, C); a copy of tok_emb's header when tied (same data) */
    nb_qvocab vocab;       /* n == 0 when the file has none */
    struct nb_tokenizer *tok; /* owned; NULL until set or built from vocab (nb_qmodel_tokenizer) */
    char *policy;          /* export policy text, or NULL */
    char *source;          /* path it was loaded from */
    void **allocs;         /* every block the model owns */
    int n_allocs, cap_allocs;
    uint8_t *arena;        /* where the next big block goes (inside a huge-page chunk of allocs) */
    size_t arena_left;
} nb_qmodel;

void nb_qmodel_free(nb_qmodel *m); /* NULL is fine */

/* The model's tokenizer (data/tokenizer.h): the one set with nb_qmodel_set_tokenizer or read from a
   nibble export, else a llama2.c tokenizer built from the file's vocabulary (GGUF, llama2.c
   tokenizer.bin). NB_EINVAL when the model carries no vocabulary. The model keeps ownership. */
nb_status nb_qmodel_tokenizer(nb_qmodel *m, struct nb_tokenizer **out);
/* Give the model a tokenizer (ownership moves to m) and fill m->vocab from it (piece types as
   llama.cpp wants them: 2 unknown, 3 control, 6 byte, 1 normal). Its size must equal cfg.vocab. */
nb_status nb_qmodel_set_tokenizer(nb_qmodel *m, struct nb_tokenizer *t);

/* Which model file format is at path (by magic, and for HDF5 by the "format" attribute, so a
   nibble checkpoint is not mistaken for an export). */
typedef enum nb_model_format {
    NB_FMT_UNKNOWN = 0,
    NB_FMT_GGUF = 1,
    NB_FMT_LLAMA2C_Q80 = 2,   /* llama2.c version-2 int8 export */
    NB_FMT_NIBBLE_EXPORT = 3, /* nibble HDF5 export */
    NB_FMT_LLAMA2C_FP32 = 4,  /* llama2.c legacy checkpoint (size matches its header) */
} nb_model_format;
nb_model_format nb_runtime_detect(const char *path);
const char *nb_model_format_name(nb_model_format f);

/* Allocation owned by the model (freed by nb_qmodel_free). NULL + nb_errmsg on failure. */
void *nb_qmodel_alloc(nb_qmodel *m, size_t bytes);
/* An empty model with cfg set, layers allocated and all tensors typed F32 but without data. */
nb_status nb_qmodel_new(const nb_qconfig *cfg, nb_qmodel **out);
/* Check config sanity (positive sizes, heads divide dim, ...). */
nb_status nb_qconfig_check(const nb_qconfig *c, const char *what);

/* llama2.c legacy fp32 checkpoint (7 x int32 header, negative vocab = untied) and, when tok_path
   is not NULL, its tokenizer.bin. Every size is checked against the file length. */
nb_status nb_qmodel_from_llama2c(const char *path, const char *tok_path, nb_qmodel **out);
/* Load a llama2.c tokenizer.bin into v (vocab entries expected). */
nb_status nb_qvocab_load_llama2c(const char *path, int n, nb_qvocab *v, nb_qmodel *owner);

/* An fp32 nb_qmodel from a training model (train/model.h): parameters are copied (the result does
   not borrow m), the tokenizer tok (may be NULL) is copied in too. Quantize it afterwards with
   nb_qmodel_quantize, or replace tensors with exactly-on-grid codes from the QAT policy. */
struct nb_model;
nb_status nb_qmodel_from_model(const struct nb_model *m, const struct nb_tokenizer *tok, nb_qmodel **out);

/* Open any exported model: GGUF, llama2.c version-2 int8, nibble HDF5 export, or a llama2.c legacy
   fp32 checkpoint (then tok_path, if not NULL, names its tokenizer.bin). */
nb_status nb_qmodel_open(const char *path, const char *tok_path, nb_qmodel **out);

/* Requantize every matrix of src into a new model: `type` for matrices whose width allows it
   (Q8_0/Q4_0 need cols % 32 == 0), `fallback` (F32 or F16) for the others; group is the I8/I4
   group size (0 = per row). Norms stay F32. Uses the reference quantizers (ggml's rounding for
   Q8_0/Q4_0; symmetric round-half-even for I8/I4). */
nb_status nb_qmodel_quantize(const nb_qmodel *src, nb_qtype type, int64_t group, nb_qtype fallback,
                             nb_qmodel **out);

/* ---- running ---- */

typedef struct nb_qstate {
    int max_batch;        /* rows per forward chunk */
    float *x, *xb, *xb2;  /* (B, C) */
    float *hb, *hb2;      /* (B, hidden) */
    float *q;             /* (B, C) */
    float *att;           /* (2, head size): RoPE cos and sin tables of the position being rotated */
    float *key_cache;     /* (L, seq_len, kv_dim) */
    float *value_cache;   /* (L, seq_len, kv_dim) */
    float *key_cache_t;   /* (L, kv heads, head size, seq_len): the keys again, transposed for decode */
    void *qbuf;           /* quantized activations */
    size_t qcap;
    void *plans;          /* one-token decode: each layer's activation plans, made at its first token */
    size_t plan_bytes;    /* the largest quantized activation they need */
    /* 16-row packed copies of the symmetric int8/int4 matrices this state has multiplied
       (nb_qpack, made at first use on AVX-512 VNNI CPUs): a state belongs to one model, whose
       weights must not change while it lives (free it and init a new one after changing them) */
    void *packs;
    int n_packs, cap_packs;
} nb_qstate;

nb_status nb_qstate_init(nb_qstate *s, const nb_qmodel *m, int max_batch);
void nb_qstate_free(nb_qstate *s);

/* A one-token decode step uses the second thread only when the model's work pays for the step's
   barriers at the measured core-to-core latency (forward_token in runtime.c). Tests that check the
   threaded step on small models turn that choice off: on = 1 decodes on every thread. */
void nb_qdecode_all_threads(int on);

/* Run T tokens at positions pos..pos+T-1 (pos + T <= seq_len), filling the KV cache. logits gets
   (T, V) when all_logits, else the last row's V values. Prefill in chunks of s->max_batch. */
nb_status nb_qmodel_forward(const nb_qmodel *m, nb_qstate *s, const int32_t *tokens, int T, int pos,
                            float *logits, int all_logits);

/* Y (T, W->rows) = X (T, W->cols) W^T with W's activation scheme; scratch grows in s.
   OpenMP over output rows. */
nb_status nb_qmatmul(const nb_qtensor *W, const float *X, int64_t T, float *Y, nb_qstate *s);

/* Y[i] (T, W[i]->rows) = X (T, K) W[i]^T for n (1..4) matrices reading the same input, e.g. wq,
   wk, wv or w1, w3: the activation is quantized once per scheme and all their rows share one
   parallel region. Results equal n calls of nb_qmatmul bit for bit. */
nb_status nb_qmatmul_n(const nb_qtensor *const *W, float *const *Y, int n, const float *X, int64_t T, nb_qstate *s);

/* Greedy (temperature <= 0) or sampled generation after a prompt; out receives up to max_new ids
   (stops early at EOS when stop_at_eos); *n_out set. emit (may be NULL) is called per token. */
typedef struct nb_gen_opts {
    int max_new;
    float temperature;
    float top_p;          /* 0 or 1 = off */
    uint64_t seed;
    int stop_at_eos;
    void (*emit)(void *ctx, int token);
    void *ctx;
} nb_gen_opts;
nb_status nb_runtime_generate(const nb_qmodel *m, const int32_t *prompt, int n_prompt, const nb_gen_opts *o,
                              int32_t *out, int *n_out);

/* Mean next-token cross-entropy (nats) over non-overlapping windows of `window` tokens (each window
   starts a fresh KV cache, predicting tokens 1..window-1 of it); also top-1 accuracy. */
nb_status nb_runtime_eval_tokens(const nb_qmodel *m, const int32_t *tokens, int64_t n, int window,
                                 double *loss, double *top1, int64_t *count);

/* Text description of the model (config, per-tensor type and bytes, total size), nb_malloc'ed.
   json != 0 gives one JSON object. */
nb_status nb_runtime_info(const nb_qmodel *m, int json, char **text);

/* The bytes of token `id` printed after `prev` (llama2.c rules: leading space stripped after BOS,
   <0xXX> gives the byte). Points into the model or a static buffer; *len set. */
const char *nb_qvocab_piece(const nb_qvocab *v, int prev, int id, size_t *len);

#endif
