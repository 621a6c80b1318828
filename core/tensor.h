/* tensor.h: the plain tensor struct, dtypes and views. A tensor never owns its data. */
#ifndef NB_TENSOR_H
#define NB_TENSOR_H

#include <stdint.h>

#include "arena.h"
#include "status.h"

#define NB_MAX_DIMS 4

/* On-disk values: explicit and append-only. */
typedef enum nb_dtype {
    NB_F32 = 0,
    NB_F16 = 1,
    NB_I8 = 2,
    NB_I4 = 3, /* packed two per byte: element 2k in the low nibble, 2k+1 in the high nibble */
    NB_I32 = 4,
    NB_BF16 = 5,
} nb_dtype;

typedef struct nb_tensor {
    nb_dtype dtype;
    int ndim;
    int64_t shape[NB_MAX_DIMS];  /* unused trailing dims are 1 */
    int64_t stride[NB_MAX_DIMS]; /* in elements; a transposed view swaps the last two */
    void *data;                  /* first element (not owned) */
    float *grad;                 /* same layout as data (f32 only); NULL until first accumulated */
    int requires_grad;           /* leaf parameter or result of an op on one */
    const char *name;            /* optional, for messages ("layers.3.attn.wq") */
} nb_tensor;

size_t nb_dtype_size_bits(nb_dtype t); /* 32, 16, 8, 4 ... */
const char *nb_dtype_name(nb_dtype t);

int64_t nb_numel(const nb_tensor *t);
/* Bytes of the data (packed types rounded up). */
size_t nb_nbytes(const nb_tensor *t);
int nb_is_contiguous(const nb_tensor *t);
/* Number of rows when viewed as (numel / last dim, last dim). */
int64_t nb_rows(const nb_tensor *t);
static inline int64_t nb_cols(const nb_tensor *t) { return t->shape[t->ndim - 1]; }
static inline float *nb_f32(const nb_tensor *t) { return (float *)t->data; }

/* Fill in shape and contiguous strides; data untouched. Returns NB_EINVAL for ndim outside
   1..4, a negative dimension or a product over 2^40 elements. */
nb_status nb_tensor_setup(nb_tensor *t, nb_dtype dt, int ndim, const int64_t *shape);
/* A tensor header and its data from an arena (data uninitialised). NULL + nb_errmsg on failure. */
nb_tensor *nb_tensor_new(nb_arena *a, nb_dtype dt, int ndim, const int64_t *shape);
nb_tensor *nb_tensor_zeros(nb_arena *a, nb_dtype dt, int ndim, const int64_t *shape);
/* Same dtype and shape as t, contiguous. */
nb_tensor *nb_tensor_like(nb_arena *a, const nb_tensor *t);
/* Wrap existing memory (contiguous). */
nb_tensor nb_tensor_wrap(void *data, nb_dtype dt, int ndim, const int64_t *shape);

/* Views (no copy; grad pointer follows the same offsets when it exists). */
nb_status nb_view_reshape(const nb_tensor *t, int ndim, const int64_t *shape, nb_tensor *out);
void nb_view_transpose(const nb_tensor *t, nb_tensor *out); /* swap last two dims */
nb_status nb_view_slice0(const nb_tensor *t, int64_t start, int64_t len, nb_tensor *out);

/* Same shapes? (ignores dtype) */
int nb_same_shape(const nb_tensor *a, const nb_tensor *b);
/* "(2, 3, 4)" into buf. */
const char *nb_shape_str(const nb_tensor *t, char *buf, size_t n);
/* NB_ENAN with the tensor's name and the first bad index if any element is NaN or Inf. */
nb_status nb_check_finite(const nb_tensor *t);

#endif
