/* checkpoint.h: HDF5 checkpoints that h5py can read.
   The file starts with a 512-byte HDF5 user block holding nibble's seal (magic "NBCKPT\1\n", file
   size, 64-bit hash of the rest; see checkpoint.c): the loader verifies it before libhdf5 parses
   anything, so truncated or corrupted files are refused with a message, never parsed. h5py and
   HDF5 tools skip the user block. Editing a checkpoint in place (e.g. with h5py) breaks the seal.
   Layout (format "nibble-checkpoint", version 1):
     /                      attrs: format, version, step (int64), recipe (string, optional),
                            free-form string attributes (nb_ckpt_contents.attrs)
     /config                attrs: dim, n_layers, n_heads, n_kv_heads, hidden_dim, vocab_size, seq_len,
                            tied (int32); norm_eps, rope_theta, dropout (float32); json (string)
     /params/<name>         float32 dataset per model parameter, shaped as the tensor
     /<set path>/<name>     extra paramsets: set "optim.m" is stored under /optim/m, "quant" under /quant
     /rng/<name>            uint64 (3): seed, stream, counter of a named generator
     /tokenizer             group written by nb_tokenizer_save_h5 (optional)
   Strings are fixed-length NUL-padded UTF-8 (h5py returns bytes); variable-length strings are
   refused when reading (HDF5's global heap parser hangs on corrupted files). Writes are atomic (PATH.tmp-<pid>, flush, close, fsync, rename); a failed write leaves any old
   PATH untouched. Reads validate every dataset's type and shape against what the caller expects:
   sizes are never taken from the file on trust. */
#ifndef NB_CHECKPOINT_H
#define NB_CHECKPOINT_H

#include "../core/rng.h"
#include "../data/tokenizer.h"
#include "model.h"
#include "params.h"

#define NB_CKPT_FORMAT "nibble-checkpoint"
#define NB_CKPT_VERSION 1
#define NB_CKPT_MAX_SETS 8
#define NB_CKPT_MAX_RNGS 8
#define NB_CKPT_MAX_ATTRS 16
#define NB_CKPT_MAX_STRING 60000 /* bytes of one string attribute (HDF5 header message limit) */

/* An extra paramset: name is [A-Za-z0-9_] words joined by '.', e.g. "optim.m", "optim.v", "quant";
   not "params", "config", "rng" or "tokenizer". Its tensors keep their own names and shapes. */
typedef struct nb_ckpt_set {
    const char *name;
    const nb_paramset *set;
} nb_ckpt_set;

typedef struct nb_ckpt_rng {
    const char *name; /* [A-Za-z0-9_.]: "data", "dropout", ... */
    nb_rng rng;
} nb_ckpt_rng;

typedef struct nb_ckpt_attr {
    const char *key;   /* [A-Za-z0-9_.]; not a reserved root attribute (format, version, step, recipe) */
    const char *value; /* any UTF-8 text (JSON welcome), at most NB_CKPT_MAX_STRING bytes */
} nb_ckpt_attr;

/* What a checkpoint holds. Everything is borrowed; only config and params are required. */
typedef struct nb_ckpt_contents {
    nb_model_config config;
    const nb_paramset *params;        /* the model's parameters (layout from nb_model_init) */
    int64_t step;                     /* optimizer steps done */
    int n_sets;
    nb_ckpt_set sets[NB_CKPT_MAX_SETS];
    int n_rngs;
    nb_ckpt_rng rngs[NB_CKPT_MAX_RNGS];
    const char *recipe;               /* recipe text or NULL (at most NB_CKPT_MAX_STRING bytes) */
    const nb_tokenizer *tokenizer;    /* or NULL */
    int n_attrs;
    nb_ckpt_attr attrs[NB_CKPT_MAX_ATTRS];
} nb_ckpt_contents;

/* Writes c to path atomically. NB_EIO (message names the path and the HDF5/OS error) when the
   write fails, NB_EINVAL for bad names; in both cases no PATH.tmp-<pid> is left behind. */
nb_status nb_ckpt_save(const char *path, const nb_ckpt_contents *c);

/* Recomputes the seal of a checkpoint edited on purpose outside nibble (e.g. attributes changed
   with h5py; HDF5 keeps the user block). NB_EFORMAT when the file has no nibble header. */
nb_status nb_ckpt_seal_file(const char *path);

/* ---- reading ---- */

typedef struct nb_ckpt nb_ckpt; /* an open checkpoint (opaque) */

/* Opens path, verifies the seal (size and hash), checks it is a nibble checkpoint and reads its
   config (checked with nb_model_config_check). Missing file: NB_EIO; not HDF5, truncated,
   corrupted, foreign, bad config: NB_EFORMAT naming the file. */
nb_status nb_ckpt_open(const char *path, nb_ckpt **out);
void nb_ckpt_close(nb_ckpt *c); /* NULL is fine */
const char *nb_ckpt_path(const nb_ckpt *c);
const nb_model_config *nb_ckpt_config(const nb_ckpt *c);
int64_t nb_ckpt_step(const nb_ckpt *c);

/* Reads /params into dst, whose layout says what must be there: every tensor present, float32,
   of exactly its shape, and no tensor the layout does not know. NB_EFORMAT naming file and tensor. */
nb_status nb_ckpt_read_params(nb_ckpt *c, nb_paramset *dst);
/* Does the checkpoint hold the extra set `name` ("optim.m")? */
int nb_ckpt_has_set(nb_ckpt *c, const char *name);
/* Reads extra set `name` into dst with the same checks as nb_ckpt_read_params. */
nb_status nb_ckpt_read_set(nb_ckpt *c, const char *name, nb_paramset *dst);
/* Names and shapes of the tensors of a set ("params" or an extra set), for callers that build
   the layout from the file (info, quantizer state). Kinds are NB_PARAM_LINEAR for 2-D, NB_PARAM_NORM
   for 1-D. *specs is nb_malloc'ed (caller frees). Ranks and sizes are checked (ndim 1..4,
   at most 2^40 elements, float32 only). */
nb_status nb_ckpt_list_set(nb_ckpt *c, const char *name, int *n, nb_param_spec **specs);
/* Names of the extra sets present ("optim.m", "quant", ...: every group below the root holding
   datasets, except params, rng and tokenizer); free with nb_ckpt_free_names. */
nb_status nb_ckpt_set_names(nb_ckpt *c, int *n, char ***names);
/* Generator `name`: NB_OK, or NB_EFORMAT when absent or malformed. */
nb_status nb_ckpt_read_rng(nb_ckpt *c, const char *name, nb_rng *r);
/* Root string attribute `key` ("recipe" or a free-form key): *value is nb_malloc'ed, or NULL
   when the attribute is absent (still NB_OK). */
nb_status nb_ckpt_read_attr(nb_ckpt *c, const char *key, char **value);
/* Names of the free-form root attributes (not format/version/step), nb_malloc'ed array of
   nb_malloc'ed strings; free with nb_ckpt_free_names. */
nb_status nb_ckpt_attr_names(nb_ckpt *c, int *n, char ***names);
void nb_ckpt_free_names(int n, char **names);
int nb_ckpt_has_tokenizer(nb_ckpt *c);
/* The stored tokenizer (NB_EFORMAT when there is none, or when it has more tokens than the
   model's vocab_size: a model may have a padded vocabulary, never a smaller one). */
nb_status nb_ckpt_read_tokenizer(nb_ckpt *c, nb_tokenizer **out);

/* ---- whole models ---- */

/* Builds *m from the checkpoint's config and reads its parameters. On failure *m is freed. */
nb_status nb_ckpt_load_model(nb_ckpt *c, nb_model *m);
/* A model from a file of any known kind: a nibble checkpoint (HDF5) or a llama2.c .bin. */
nb_status nb_model_load_file(const char *path, nb_model *m);
/* Is the file an HDF5 file (by its signature)? 0 when it is not or cannot be read. */
int nb_file_is_hdf5(const char *path);

/* Silences HDF5's own error printing (idempotent). Every function here calls it. */
void nb_h5_quiet(void);
/* The innermost message of HDF5's current error stack (for nb_fail), or "HDF5 error". */
const char *nb_h5_errmsg(char *buf, size_t n);

#endif
