/* tensor.c: shapes, strides and views. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t nb_dtype_size_bits(nb_dtype t) {
    switch (t) {
    case NB_F32: case NB_I32: return 32;
    case NB_F16: case NB_BF16: return 16;
    case NB_I8: return 8;
    case NB_I4: return 4;
    }
    return 0;
}

const char *nb_dtype_name(nb_dtype t) {
    switch (t) {
    case NB_F32: return "f32";
    case NB_F16: return "f16";
    case NB_I8: return "i8";
    case NB_I4: return "i4";
    case NB_I32: return "i32";
    case NB_BF16: return "bf16";
    }
    return "?";
}

int64_t nb_numel(const nb_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t nb_nbytes(const nb_tensor *t) { return (size_t)((nb_numel(t) * (int64_t)nb_dtype_size_bits(t->dtype) + 7) / 8); }

int nb_is_contiguous(const nb_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

int64_t nb_rows(const nb_tensor *t) {
    int64_t c = nb_cols(t);
    return c ? nb_numel(t) / c : 0;
}

nb_status nb_tensor_setup(nb_tensor *t, nb_dtype dt, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    if (ndim < 1 || ndim > NB_MAX_DIMS) return nb_fail(NB_EINVAL, "tensor: %d dims (expected 1..%d)", ndim, NB_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return nb_fail(NB_EINVAL, "tensor: dimension %d is negative (%lld)", i, (long long)shape[i]);
        if (shape[i] > 0 && n > ((int64_t)1 << 40) / shape[i])
            return nb_fail(NB_ENOMEM, "tensor: more than 2^40 elements requested");
        n *= shape[i];
    }
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < NB_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    int64_t s = 1;
    for (int i = NB_MAX_DIMS - 1; i >= 0; i--) {
        t->stride[i] = s;
        if (i < ndim) s *= t->shape[i];
    }
    return NB_OK;
}

nb_tensor *nb_tensor_new(nb_arena *a, nb_dtype dt, int ndim, const int64_t *shape) {
    nb_tensor tmp;
    if (nb_tensor_setup(&tmp, dt, ndim, shape) != NB_OK) return NULL;
    nb_tensor *t = nb_arena_alloc(a, sizeof *t);
    if (!t) return NULL;
    *t = tmp;
    t->data = nb_arena_alloc(a, nb_nbytes(t));
    return t->data ? t : NULL;
}

nb_tensor *nb_tensor_zeros(nb_arena *a, nb_dtype dt, int ndim, const int64_t *shape) {
    nb_tensor *t = nb_tensor_new(a, dt, ndim, shape);
    if (t) memset(t->data, 0, nb_nbytes(t));
    return t;
}

nb_tensor *nb_tensor_like(nb_arena *a, const nb_tensor *t) { return nb_tensor_new(a, t->dtype, t->ndim, t->shape); }

nb_tensor nb_tensor_wrap(void *data, nb_dtype dt, int ndim, const int64_t *shape) {
    nb_tensor t;
    NB_ASSERT(nb_tensor_setup(&t, dt, ndim, shape) == NB_OK);
    t.data = data;
    return t;
}

nb_status nb_view_reshape(const nb_tensor *t, int ndim, const int64_t *shape, nb_tensor *out) {
    if (!nb_is_contiguous(t)) return nb_fail(NB_ESHAPE, "reshape: tensor %s is not contiguous", t->name ? t->name : "");
    nb_tensor v;
    NB_TRY(nb_tensor_setup(&v, t->dtype, ndim, shape));
    if (nb_numel(&v) != nb_numel(t)) {
        char b1[64], b2[64];
        return nb_fail(NB_ESHAPE, "reshape: %s has %lld elements, %s has %lld", nb_shape_str(t, b1, 64),
                       (long long)nb_numel(t), nb_shape_str(&v, b2, 64), (long long)nb_numel(&v));
    }
    v.data = t->data;
    v.grad = t->grad;
    v.requires_grad = t->requires_grad;
    v.name = t->name;
    *out = v;
    return NB_OK;
}

void nb_view_transpose(const nb_tensor *t, nb_tensor *out) {
    NB_ASSERT(t->ndim >= 2);
    *out = *t;
    int a = t->ndim - 2, b = t->ndim - 1;
    out->shape[a] = t->shape[b];
    out->shape[b] = t->shape[a];
    out->stride[a] = t->stride[b];
    out->stride[b] = t->stride[a];
}

nb_status nb_view_slice0(const nb_tensor *t, int64_t start, int64_t len, nb_tensor *out) {
    if (start < 0 || len < 0 || start + len > t->shape[0])
        return nb_fail(NB_ERANGE, "slice: rows [%lld, %lld) outside 0..%lld", (long long)start,
                       (long long)(start + len), (long long)t->shape[0]);
    *out = *t;
    out->shape[0] = len;
    size_t off = (size_t)(start * t->stride[0]);
    NB_ASSERT(t->dtype != NB_I4 || off % 2 == 0);
    out->data = (char *)t->data + off * nb_dtype_size_bits(t->dtype) / 8;
    if (t->grad) out->grad = t->grad + off;
    return NB_OK;
}

int nb_same_shape(const nb_tensor *a, const nb_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *nb_shape_str(const nb_tensor *t, char *buf, size_t n) {
    size_t k = 0;
    k += snprintf(buf + k, n - k, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

nb_status nb_check_finite(const nb_tensor *t) {
    if (t->dtype != NB_F32) return NB_OK;
    int64_t n = nb_numel(t);
    const float *x = t->data;
    NB_ASSERT(nb_is_contiguous(t));
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return nb_fail(NB_ENAN, "tensor %s: element %lld is %s", t->name ? t->name : "(unnamed)", (long long)i,
                           isnan(x[i]) ? "NaN" : "Inf");
    return NB_OK;
}
