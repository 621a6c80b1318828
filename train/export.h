/* export.h: `nibble export`, `nibble verify` and the export side of eval / generate / info.
   A checkpoint is exported as exactly the model that was trained: every weight its QAT policy
   quantizes is written as the integer codes and scales the fake-quant used (nb_qat_weight_quantize,
   or llama.cpp's Q8_0/Q4_0 blocks for the presets, fp16 for the presets' fallback), with no
   re-rounding; other tensors stay F32. A format that cannot hold a tensor's grid exactly is refused
   (the message names the tensor and the grid) unless requantize is set; then that tensor is
   requantized with the format's own quantizer, starting from its fake-quant values, and the error
   this adds is reported.
   Representable means bit-exact: dequantizing the written tensor gives the fake-quant weights.
     nibble   every grid (f32, f16, q8_0, q4_0, int8/int4 per tensor/row/group, zero points).
     gguf     F32, F16, Q8_0, Q4_0. An int grid maps to Q4_0 (codes -8..7) or Q8_0 (codes -127..127)
              blocks when it is symmetric, rows are a multiple of 32, each block of 32 lies within
              one scale group and every scale is an fp16 value (scale_dtype: f16).
     llama2c  int8 codes in groups of one size GS for the whole file (GS divides dim and hidden_dim),
              symmetric, fp32 scales: int grids (any bits) and Q8_0/Q4_0 blocks whose scale groups
              are multiples of GS; fp32/f16 matrices (an unquantized embedding) are not.
   This header does not include runtime.h (its nb_gen_opts clashes with evaluate.h's). */
#ifndef NB_EXPORT_H
#define NB_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"

struct nb_model;
struct nb_qat;
struct nb_tokenizer;
struct nb_qmodel;

typedef enum nb_export_format {
    NB_EXPORT_NIBBLE = 0, /* HDF5 (train/export_nb.h) */
    NB_EXPORT_GGUF = 1,   /* GGUF v3 (train/gguf.h) */
    NB_EXPORT_LLAMA2C = 2 /* llama2.c version 2 int8 (train/llama2c.h) */
} nb_export_format;
/* "nibble", "gguf", "llama2c" -> format, -1 if unknown. */
int nb_export_format_parse(const char *s);
const char *nb_export_format_name(nb_export_format f);

typedef struct nb_export_opts {
    nb_export_format format;
    int requantize;        /* requantize tensors the format cannot hold exactly */
    const char *type;      /* checkpoints without a policy: "q8_0", "q4_0", "int8", "int4", "f16" or
                              NULL (f32; llama2c: its int8) */
    int group;             /* int8/int4 --type: elements per scale, 0 = per row */
    const char *tokenizer; /* tokenizer for a llama2.c .bin input (else NULL) */
} nb_export_opts;

/* What happened to one tensor: its trained grid, how it is stored, and how far its dequantized
   values moved from the trained (fake-quant) ones: 0 when exported exactly. */
typedef struct nb_export_tensor {
    char name[96];
    char grid[64];     /* "int4 sym g32", "Q4_0", "fp32", ... (the policy's grid) */
    char stored[24];   /* "q4_0", "int8 g32", "f32", ... */
    int changed;       /* requantized (values differ from the trained ones) */
    double max_abs;    /* max |w_export - w_trained| */
    double rel_rms;    /* sqrt(sum d^2 / sum w^2) */
    int64_t numel;
} nb_export_tensor;

typedef struct nb_export_report {
    int n;
    nb_export_tensor *t;     /* (n), nb_malloc'ed */
    int quantized;           /* the checkpoint carried a policy */
    int n_changed;
    double max_abs, rel_rms; /* over every tensor */
    int64_t ckpt_bytes;      /* size of the checkpoint file */
    int64_t fp32_bytes;      /* its parameters as fp32 */
    int64_t out_bytes;       /* size of the export */
    int llama2c_gs;          /* group size written (llama2c) */
} nb_export_report;
void nb_export_report_free(nb_export_report *r);
/* Human-readable report (requantized tensors, overall error, sizes) to f. */
void nb_export_report_print(FILE *f, const nb_export_report *r, const char *out_path);

/* The runtime model holding exactly the trained grid of m under policy q (NULL: fp32): codes and
   scales from the policy, blocks for presets. tok may be NULL. *out owned by the caller. */
nb_status nb_export_build(struct nb_model *m, struct nb_qat *q, const struct nb_tokenizer *tok, struct nb_qmodel **out);

/* The whole of `nibble export`: load ckpt (policy and learned quantizer state included), build,
   check / convert for o->format, write out atomically (temp + rename). NB_EINVAL with a message
   naming the tensor and the grid when the format cannot hold it and o->requantize is 0.
   r (may be NULL) receives the report; free it with nb_export_report_free. */
nb_status nb_export_checkpoint(const char *ckpt, const char *out, const nb_export_opts *o, nb_export_report *r);

/* nb_model_open_any (evaluate.h) for files that cannot include evaluate.h next to runtime.h. */
nb_status nb_export_open_model(const char *path, const char *tok_path, struct nb_model *m, struct nb_tokenizer **tok);

/* ---- exported files in eval / generate / info / verify ---- */

/* 1 when path is an export the integer runtime reads (GGUF, nibble export, llama2.c version 2),
   by its magic bytes / HDF5 root attribute; a nibble checkpoint or a llama2.c fp32 .bin is 0. */
int nb_export_is_file(const char *path);

/* Mean cross-entropy of an exported model on a text or token file, with the same windows, BOS /
   document rules and loss definition as nb_eval_tokens on a checkpoint (windows of T + 1 tokens at
   0, T, 2T, ..., the tail window, or max_windows evenly spread). tok_path: tokenizer for files
   without a vocabulary (llama2.c .bin). T 0 = the model's seq_len. */
nb_status nb_export_eval(const char *path, const char *data, const char *split, const char *tok_path, int T,
                         int64_t max_windows, double *loss, int64_t *tokens);

/* Generation from an exported model with nb_generate's rules (prompt with BOS, the same sampler
   and seed stream, context shift at seq_len, stop at BOS/EOS). */
typedef struct nb_export_gen {
    int n_tokens;
    float temperature, top_p;
    uint64_t seed;
    int stop_at_eos;
} nb_export_gen;
nb_status nb_export_generate(const char *path, const char *tok_path, const char *prompt, const nb_export_gen *g,
                             int32_t **out, int *n_out, char **text);

/* `nibble info` for an export: nb_runtime_info text or JSON (with "file" and "format"). */
nb_status nb_export_info(FILE *f, const char *path, int json);

/* ---- verify ---- */
typedef struct nb_verify_result {
    double max_abs_logit_diff;
    double loss_model, loss_export;
    double top1_agreement;     /* fraction of positions whose argmax agrees */
    double max_abs_weight_diff;/* dequantized export vs the fake-quant weights the model reads */
    int64_t positions;         /* predicted tokens compared */
    int64_t windows;
    int quantized;             /* the checkpoint carries a policy */
} nb_verify_result;
/* Runs the checkpoint as trained (fake-quant through its policy, tape forward) and the exported
   file (integer runtime) on the same windows of data (max_windows > 0: that many evenly spaced;
   T 0 = seq_len). The checkpoint's linears are computed as the integer kernels sum them
   (linear_exact.h: the runtime tensors of the trained grid, built from the checkpoint, applied to
   the fake-quantized inputs), unless flags has NB_VERIFY_GEMM: then with the training forward's
   fp32 GEMM, whose different summation order shows up as rare flips of activation codes. */
enum { NB_VERIFY_GEMM = 1 };
nb_status nb_export_verify(const char *ckpt, const char *exported, const char *data, const char *tok_path, int T,
                           int64_t max_windows, int flags, nb_verify_result *r);

#endif
