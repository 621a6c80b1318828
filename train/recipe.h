/* recipe.h: a training run described by a YAML file, parsed with libyaml into this plain, fully
   defaulted struct. Every key is declared once in a table (recipe.c) that drives parsing,
   validation, `key=value` overrides, --print-config and the README's key reference. */
#ifndef NB_RECIPE_H
#define NB_RECIPE_H

#include "../core/status.h"

#define NB_MAX_QRULES 32

/* model: architecture (llama-style) and how to initialise it */
typedef struct nb_recipe_model {
    int dim;            /* C */
    int n_layers;       /* L */
    int n_heads;
    int n_kv_heads;     /* 0 = n_heads */
    int hidden_dim;     /* FFN width; 0 = llama2.c rule from dim */
    int vocab_size;     /* 0 = from the tokenizer */
    int seq_len;        /* max T */
    float norm_eps;     /* 1e-5 */
    float rope_theta;   /* 10000 */
    int tied_embeddings;
    float dropout;
    char init[1024];    /* "random" (default), "llama2c:PATH" or "checkpoint:PATH" */
    float init_std;     /* 0.02 */
} nb_recipe_model;

/* data: text in, token dataset (HDF5) out, and how batches are drawn */
typedef struct nb_recipe_data {
    char train[1024];       /* text file or .h5 token dataset */
    char val[1024];         /* optional separate validation text/.h5; "" = split from train */
    float val_fraction;     /* 0.1: tail of train when val is "" */
    char tokenizer[1024];   /* "byte", "char" or "llama2c:PATH" (tokenizer.bin) */
    char cache_dir[1024];   /* where prepared .h5 datasets go; "" = out_dir */
    int batch_size;         /* B sequences per micro-batch */
} nb_recipe_data;

typedef struct nb_recipe_optim {
    char name[16];          /* "adamw" | "sgd" */
    float lr;
    float min_lr;           /* floor of the decay */
    float beta1, beta2, eps;
    float weight_decay;     /* decoupled; not applied to norms/embeddings unless decay_all */
    int decay_embeddings;
    float momentum;         /* sgd */
    float grad_clip;        /* global-norm clip, 0 = off */
    int grad_accum;         /* micro-batches per step */
} nb_recipe_optim;

typedef struct nb_recipe_schedule {
    char kind[16];          /* "cosine" | "linear" | "constant" */
    int warmup_steps;
} nb_recipe_schedule;

/* one quantization rule: the first rule whose glob matches a parameter name applies */
typedef struct nb_qrule {
    char match[128];        /* glob on parameter names, e.g. "layers.*.attn.w?" */
    int bits;               /* 2..8; 0 = leave in fp32 */
    int symmetric;          /* 1: zero point 0 */
    int restrict_range;     /* symmetric only: -(2^(b-1)-1)..2^(b-1)-1 instead of -2^(b-1).. */
    int ternary;            /* {-1,0,1} x scale (bits ignored) */
    char granularity[16];   /* "tensor" | "channel" | "group" (weights); "token" | "tensor" (acts) */
    int group_size;         /* 32, 64, 128 for "group" */
    char estimator[16];     /* "ste" | "clipped_ste" | "lsq" | "lsq+" | "pact" (acts) */
    char observer[16];      /* "minmax" | "ema_minmax" | "mse" | "percentile" */
    float percentile;       /* for observer percentile, e.g. 99.99 */
    float ema_decay;        /* for ema_minmax, 0.99 */
    char scale_dtype[8];    /* "f32" | "f16" (scale rounded to fp16, as llama.cpp stores it) */
    char tail[16];          /* row length not a multiple of group_size: "error" | "short_group" */
} nb_qrule;

typedef struct nb_recipe_quant {
    int enabled;
    char preset[16];        /* "" | "q8_0" | "q4_0": llama.cpp grids (rules then come from it) */
    int start_step;         /* fake-quant of weights starts here (fp32 warm-up before) */
    int act_start_step;     /* activations start here (-1 = with weights) */
    int freeze_observers_step; /* observers stop updating here (-1 = never) */
    int lambda_start, lambda_end; /* x + lambda (Q(x) - x), lambda 0 -> 1 over these steps (0,0 = off) */
    int anneal_from_bits;   /* 0 = off; else bits go from this to the rule's bits ... */
    int anneal_start, anneal_end; /* ... over these steps */
    float scale_lr_mult;    /* learning-rate multiplier of learned scales/offsets */
    float scale_weight_decay;
    int lsq_warmup_steps;   /* learned scales frozen (observer-driven) for these steps */
    /* weight oscillation (Nagel et al. 2022): per-weight integer-code flips tracked from
       osc_start_step, frequency = EMA (osc_momentum) of "the code moved against its last move";
       weights above freeze_threshold are frozen on the grid point of their EMA code */
    int osc_track;          /* track (and report) oscillations even without freezing */
    int osc_start_step;     /* -1 = when learned scales start learning (start_step + lsq_warmup_steps) */
    float osc_momentum;     /* 0.01 */
    float freeze_threshold; /* 0 = off */
    float freeze_threshold_final; /* with freeze_anneal_end > 0: cosine from freeze_threshold to this ... */
    int freeze_anneal_start, freeze_anneal_end; /* ... over these steps (end 0 = constant threshold) */
    float osc_damp;         /* decoupled dampening W -= lr * osc_damp * (W - Q(W)); 0 = off */
    int quantize_embeddings; /* opt-in for the token embedding */
    int quantize_classifier; /* opt-in for an untied classifier */
    int n_weight_rules;
    nb_qrule weights[NB_MAX_QRULES];
    int n_act_rules;
    nb_qrule acts[NB_MAX_QRULES]; /* activations on the inputs of matching linear weights */
} nb_recipe_quant;

typedef struct nb_recipe_distill {
    int enabled;
    char teacher[1024];     /* "" = frozen copy of the starting model, else a checkpoint path */
    float alpha;            /* loss = alpha CE + (1 - alpha) T^2 KL(teacher || student) */
    float temperature;
    int data_free;          /* teacher generates the training text itself (LLM-QAT); needs enabled */
    int gen_sequences;      /* data_free: sequences N the teacher writes */
    int gen_length;         /* data_free: tokens per sequence; 0 = training window + 1 */
    float gen_temperature;  /* data_free: sampling temperature (0 = greedy) */
    float gen_top_p;        /* data_free: nucleus sampling when < 1 */
    int gen_greedy_tokens;  /* data_free: K tokens after the start taken top-1, then sampled */
    char gen_start[16];     /* data_free: "bos" | "random" (BOS + a uniformly random token) */
} nb_recipe_distill;

typedef struct nb_recipe {
    char path[1024];        /* file it came from ("" for defaults) */
    char *text;             /* the full recipe text after overrides (owned; for checkpoints) */
    char name[128];
    char out_dir[1024];
    unsigned long long seed;
    int threads;            /* 0 = OMP_NUM_THREADS or all cores */
    int steps;              /* optimizer steps */
    int eval_every;         /* 0 = only at the end */
    int eval_batches;       /* 0 = whole validation split */
    int log_every;
    int ckpt_every;         /* 0 = only at the end */
    int keep_last;          /* keep this many ckpt-STEP.h5 (0 = all) */
    int resume;
    char on_nan[16];        /* "stop" | "skip" */
    int max_skips;          /* stop after this many skipped steps */
    int sample_tokens;      /* print a sample of this many tokens at the end (0 = none) */
    char sample_prompt[256];
    nb_recipe_model model;
    nb_recipe_data data;
    nb_recipe_optim optim;
    nb_recipe_schedule schedule;
    nb_recipe_quant quant;
    nb_recipe_distill distill;
} nb_recipe;

/* Defaults for every key (no rules; text NULL). Ignores what r held before. */
void nb_recipe_defaults(nb_recipe *r);
/* Parse a YAML file (path) onto the defaults, then apply overrides "a.b=value" in order, then
   validate. Errors name "file:line:column: key: expected ..., got ..." and, for an unknown key,
   the closest valid key (NB_EINVAL; NB_EIO when the file cannot be read). r is initialised first
   (its old text is not freed); on failure r->text is NULL and nb_recipe_free(r) is still fine.
   Relative paths in the recipe are resolved against the current directory. Recipes are at most
   1 MiB and nest [ and { at most 64 deep. */
nb_status nb_recipe_load(const char *path, int n_overrides, char **overrides, nb_recipe *r);
/* The same from a YAML string (name is used in messages and stored in r->path). */
nb_status nb_recipe_parse(const char *name, const char *yaml, int n_overrides, char **overrides, nb_recipe *r);
/* Apply one "key=value" override to an already loaded recipe and refresh r->text; on failure r is
   unchanged. Forms: model.dim=64, optim.lr=3e-4, name="a b" (quotes stripped), data.val= (empty);
   rules by index: quant.weights.0.bits=4 or quant.weights[0].bits=4 (index == count appends a
   rule of defaults); a whole list as YAML: quant.weights=[{match: "*", bits: 4}], quant.activations=[].
   Checks the value's type and range, not the cross-key rules (call nb_recipe_validate). */
nb_status nb_recipe_set(nb_recipe *r, const char *assignment);
/* Checks cross-key rules (n_heads divides dim, group sizes, estimators per list, ...) and that the
   files the recipe names exist. Messages start with r->path (no line: use nb_recipe_load for that). */
nb_status nb_recipe_validate(const nb_recipe *r);
/* The resolved recipe as YAML (every key, including defaults). Caller frees with nb_free. */
char *nb_recipe_to_yaml(const nb_recipe *r);
/* Markdown table of every key: path, type, default, range, help (for the README). Caller frees
   with nb_free. */
char *nb_recipe_reference(void);
/* Every key path, i in 0..nb_recipe_key_count()-1 ("model.dim", ..., "quant.weights[].bits"); NULL
   past the end. For --help listings and tests. */
int nb_recipe_key_count(void);
const char *nb_recipe_key_path(int i);
void nb_recipe_free(nb_recipe *r);

#endif
