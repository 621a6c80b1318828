/* export_nb.c: nibble's HDF5 export of an nb_qmodel: writer and checked reader. */
#include "export_nb.h"

#include <hdf5.h>
#include <string.h>

#include "../data/tokenizer.h"
#include "../ops/kernels/qdot.h"
#include "runtime_io.h"

/* IEEE half as an HDF5 type (h5py reads it as float16). */
static hid_t half_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

static int attr_int(hid_t o, const char *name, long long v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_LLONG, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return ok;
}
static int attr_float(hid_t o, const char *name, double v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_DOUBLE, &v) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return ok;
}
static int attr_str(hid_t o, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, t, s) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return ok;
}
static int write_ds(hid_t g, const char *name, hid_t ftype, hid_t mtype, int nd, hsize_t d0, hsize_t d1, const void *p) {
    hsize_t dims[2] = {d0, d1};
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t ds = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0 && H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) >= 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return ok;
}

static char *read_attr_str(hid_t o, const char *name, nb_qmodel *m);

typedef struct wctx {
    hid_t tg;
    const char *path;
} wctx;

static nb_status write_tensor(void *vctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    wctx *w = vctx;
    hid_t g = H5Gcreate2(w->tg, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return nb_fail(NB_EIO, "%s: cannot create group tensors/%s", w->path, name);
    int ok = attr_int(g, "qtype", t->type) && attr_str(g, "qtype_name", nb_qtype_name(t->type)) &&
             attr_int(g, "rows", t->rows) && attr_int(g, "cols", t->cols) && attr_int(g, "group", t->group) &&
             attr_int(g, "act_group", t->act_group);
    hsize_t R = (hsize_t)t->rows, K = (hsize_t)t->cols;
    switch (t->type) {
    case NB_QT_F32: ok = ok && write_ds(g, "data", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, R, K, t->data); break;
    case NB_QT_F16: {
        hid_t ht = half_type();
        ok = ok && write_ds(g, "data", ht, ht, 2, R, K, t->data);
        H5Tclose(ht);
        break;
    }
    case NB_QT_I8: ok = ok && write_ds(g, "data", H5T_STD_I8LE, H5T_NATIVE_INT8, 2, R, K, t->data); break;
    default:
        ok = ok && write_ds(g, "data", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, R, nb_qtensor_row_bytes(t->type, t->cols), t->data);
        break;
    }
    int64_t ng = nb_qtensor_ngroups(t);
    if (ok && ng) {
        ok = write_ds(g, "scales", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, R, (hsize_t)ng, t->scales);
        if (ok && t->zeros) ok = write_ds(g, "zeros", H5T_STD_I8LE, H5T_NATIVE_INT8, 2, R, (hsize_t)ng, t->zeros);
    }
    H5Gclose(g);
    return ok ? NB_OK : nb_fail(NB_EIO, "%s: writing tensor %s failed", w->path, name);
}

nb_status nb_export_nb_write(const nb_qmodel *m, const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return nb_fail(NB_EIO, "create %s: HDF5 cannot create the file", path);
    const nb_qconfig *c = &m->cfg;
    int ok = attr_str(f, "format", "nibble-export") && attr_int(f, "version", 1) && attr_int(f, "dim", c->dim) &&
             attr_int(f, "hidden_dim", c->hidden_dim) && attr_int(f, "n_layers", c->n_layers) &&
             attr_int(f, "n_heads", c->n_heads) && attr_int(f, "n_kv_heads", c->n_kv_heads) &&
             attr_int(f, "vocab_size", c->vocab) && attr_int(f, "seq_len", c->seq_len) && attr_int(f, "tied", c->tied) &&
             attr_float(f, "norm_eps", c->norm_eps) && attr_float(f, "rope_theta", c->rope_theta) &&
             attr_str(f, "policy", m->policy ? m->policy : "");
    nb_status st = ok ? NB_OK : nb_fail(NB_EIO, "%s: writing attributes failed", path);
    hid_t tg = st ? -1 : H5Gcreate2(f, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!st) {
        wctx w = {tg, path};
        st = nb_rt_visit((nb_qmodel *)m, write_tensor, &w);
        H5Gclose(tg);
    }
    if (!st && m->vocab.n) {
        const nb_qvocab *v = &m->vocab;
        int64_t *offs = nb_malloc((size_t)(v->n + 1) * sizeof(int64_t));
        size_t total = 0;
        for (int i = 0; offs && i < v->n; i++) offs[i] = (int64_t)total, total += strlen(v->pieces[i]);
        uint8_t *bytes = nb_malloc(total + 1);
        if (!offs || !bytes) st = NB_ENOMEM;
        if (!st) {
            offs[v->n] = (int64_t)total;
            for (int i = 0; i < v->n; i++) memcpy(bytes + offs[i], v->pieces[i], strlen(v->pieces[i]));
            hid_t vg = H5Gcreate2(f, "vocab", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            ok = vg >= 0 && write_ds(vg, "bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, total, 0, bytes) &&
                 write_ds(vg, "offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, (hsize_t)v->n + 1, 0, offs) &&
                 write_ds(vg, "scores", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, (hsize_t)v->n, 0, v->scores) &&
                 write_ds(vg, "types", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, (hsize_t)v->n, 0, v->types) &&
                 attr_int(vg, "bos", v->bos) && attr_int(vg, "eos", v->eos) && attr_int(vg, "unk", v->unk);
            if (vg >= 0) H5Gclose(vg);
            if (!ok) st = nb_fail(NB_EIO, "%s: writing the vocabulary failed", path);
        }
        nb_free(offs);
        nb_free(bytes);
    }
    if (!st && (m->tok || m->vocab.n)) {
        nb_tokenizer *tok;
        st = nb_qmodel_tokenizer((nb_qmodel *)m, &tok);
        hid_t tg2 = st ? -1 : H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (!st) st = tg2 >= 0 ? nb_tokenizer_save_h5(tok, tg2) : nb_fail(NB_EIO, "%s: cannot create /tokenizer", path);
        if (tg2 >= 0) H5Gclose(tg2);
    }
    if (H5Fclose(f) < 0 && !st) st = nb_fail(NB_EIO, "%s: closing failed", path);
    return st;
}

int nb_export_nb_is_export(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    nb_qmodel tmp = {0};
    char *fmt = read_attr_str(f, "format", &tmp);
    int yes = fmt && !strcmp(fmt, "nibble-export");
    for (int i = 0; i < tmp.n_allocs; i++) nb_free(tmp.allocs[i]);
    nb_free(tmp.allocs);
    H5Fclose(f);
    return yes;
}

/* ---- reader ---- */

static int read_attr_ll(hid_t o, const char *name, long long *v) {
    if (H5Aexists(o, name) <= 0) return 0;
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t sp = H5Aget_space(a);
    int ok = H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_LLONG, v) >= 0;
    H5Sclose(sp);
    H5Aclose(a);
    return ok;
}
static int read_attr_d(hid_t o, const char *name, double *v) {
    if (H5Aexists(o, name) <= 0) return 0;
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t sp = H5Aget_space(a);
    int ok = H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0;
    H5Sclose(sp);
    H5Aclose(a);
    return ok;
}
/* string attribute into a model-owned buffer (NULL if absent) */
static char *read_attr_str(hid_t o, const char *name, nb_qmodel *m) {
    if (H5Aexists(o, name) <= 0) return NULL;
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    char *s = NULL;
    if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t)) {
        size_t n = H5Tget_size(t);
        if (n < ((size_t)1 << 24)) {
            s = nb_qmodel_alloc(m, n + 1);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, n);
            if (s && H5Aread(a, mt, s) < 0) s = NULL;
            if (s) s[n] = 0;
            H5Tclose(mt);
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return s;
}

/* Read dataset name of g with exactly dims (d0, d1) (nd 1 or 2) into dst. */
static nb_status read_ds(hid_t g, const char *path, const char *tname, const char *name, hid_t mtype, int nd, hsize_t d0,
                         hsize_t d1, void *dst) {
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return nb_fail(NB_EFORMAT, "%s: %s has no dataset %s", path, tname, name);
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0) return nb_fail(NB_EFORMAT, "%s: %s/%s cannot be opened", path, tname, name);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[4] = {0};
    int r = H5Sget_simple_extent_ndims(sp);
    nb_status st = NB_OK;
    if (r != nd || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 || dims[0] != d0 || (nd == 2 && dims[1] != d1))
        st = nb_fail(NB_EFORMAT, "%s: %s/%s has shape (%llu, %llu), expected (%llu, %llu)", path, tname, name,
                     (unsigned long long)dims[0], (unsigned long long)(r > 1 ? dims[1] : 0), (unsigned long long)d0,
                     (unsigned long long)(nd == 2 ? d1 : 0));
    if (!st && d0 * (nd == 2 ? d1 : 1) > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        st = nb_fail(NB_EFORMAT, "%s: %s/%s cannot be read (corrupted?)", path, tname, name);
    H5Sclose(sp);
    H5Dclose(ds);
    return st;
}

typedef struct rctx {
    hid_t tg;
    const char *path;
    nb_qmodel *m;
} rctx;

static nb_status read_tensor(void *vctx, const char *name, nb_qtensor *t, int layer) {
    (void)layer;
    rctx *c = vctx;
    if (H5Lexists(c->tg, name, H5P_DEFAULT) <= 0) return nb_fail(NB_EFORMAT, "%s: missing tensor %s", c->path, name);
    hid_t g = H5Gopen2(c->tg, name, H5P_DEFAULT);
    if (g < 0) return nb_fail(NB_EFORMAT, "%s: tensor %s is not a group", c->path, name);
    long long qt = -1, rows = -1, cols = -1, group = 0, act_group = 0;
    nb_status st = NB_OK;
    if (H5Aexists(g, "act_group") > 0 && !read_attr_ll(g, "act_group", &act_group)) act_group = -1;
    if (!read_attr_ll(g, "qtype", &qt) || !read_attr_ll(g, "rows", &rows) || !read_attr_ll(g, "cols", &cols) ||
        !read_attr_ll(g, "group", &group))
        st = nb_fail(NB_EFORMAT, "%s: tensor %s lacks one of the attributes qtype, rows, cols, group", c->path, name);
    else if (qt < 0 || qt > NB_QT_I4)
        st = nb_fail(NB_EFORMAT, "%s: tensor %s has unknown qtype %lld", c->path, name, qt);
    else if (rows != t->rows || cols != t->cols)
        st = nb_fail(NB_EFORMAT, "%s: tensor %s is (%lld, %lld), the config wants (%lld, %lld)", c->path, name, rows, cols,
                     (long long)t->rows, (long long)t->cols);
    else if ((qt == NB_QT_Q8_0 || qt == NB_QT_Q4_0) && cols % NB_QK)
        st = nb_fail(NB_EFORMAT, "%s: tensor %s: %lld columns is not a multiple of 32 for %s", c->path, name, cols,
                     nb_qtype_name((nb_qtype)qt));
    else if ((qt == NB_QT_I8 || qt == NB_QT_I4) && (group <= 0 || group > cols))
        st = nb_fail(NB_EFORMAT, "%s: tensor %s: group %lld outside 1..%lld", c->path, name, group, cols);
    else if ((qt == NB_QT_I8 || qt == NB_QT_I4) && act_group != 0 && act_group != group && act_group != cols)
        st = nb_fail(NB_EFORMAT, "%s: tensor %s: act_group %lld is neither 0, its group %lld nor its %lld columns",
                     c->path, name, act_group, group, cols);
    else if (t->rows == 1 && qt != NB_QT_F32)
        st = nb_fail(NB_EUNSUPPORTED, "%s: norm %s must be f32, is %s", c->path, name, nb_qtype_name((nb_qtype)qt));
    if (!st) {
        t->type = (nb_qtype)qt;
        t->group = (qt == NB_QT_I8 || qt == NB_QT_I4) ? group : 0;
        t->act_group = (qt == NB_QT_I8 || qt == NB_QT_I4) ? act_group : 0;
        size_t rb = nb_qtensor_row_bytes(t->type, t->cols);
        t->data = nb_qmodel_alloc(c->m, rb * (size_t)rows);
        if (!t->data) st = NB_ENOMEM;
    }
    if (!st) {
        hsize_t R = (hsize_t)rows, K = (hsize_t)cols;
        switch (t->type) {
        case NB_QT_F32: st = read_ds(g, c->path, name, "data", H5T_NATIVE_FLOAT, 2, R, K, t->data); break;
        case NB_QT_F16: {
            hid_t ht = half_type();
            st = read_ds(g, c->path, name, "data", ht, 2, R, K, t->data);
            H5Tclose(ht);
            break;
        }
        case NB_QT_I8: st = read_ds(g, c->path, name, "data", H5T_NATIVE_INT8, 2, R, K, t->data); break;
        default:
            st = read_ds(g, c->path, name, "data", H5T_NATIVE_UINT8, 2, R, nb_qtensor_row_bytes(t->type, t->cols), t->data);
        }
    }
    int64_t ng = st ? 0 : nb_qtensor_ngroups(t);
    if (ng) {
        t->scales = nb_qmodel_alloc(c->m, (size_t)(rows * ng) * sizeof(float));
        st = t->scales ? read_ds(g, c->path, name, "scales", H5T_NATIVE_FLOAT, 2, (hsize_t)rows, (hsize_t)ng, t->scales)
                       : NB_ENOMEM;
        if (!st && !nb_rt_all_finite(t->scales, rows * ng))
            st = nb_fail(NB_EFORMAT, "%s: tensor %s has non-finite scales", c->path, name);
        t->zeros = NULL;
        if (!st && H5Lexists(g, "zeros", H5P_DEFAULT) > 0) {
            t->zeros = nb_qmodel_alloc(c->m, (size_t)(rows * ng));
            st = t->zeros ? read_ds(g, c->path, name, "zeros", H5T_NATIVE_INT8, 2, (hsize_t)rows, (hsize_t)ng, t->zeros)
                          : NB_ENOMEM;
        }
    }
    if (!st && t->type == NB_QT_F32 && !nb_rt_all_finite(t->data, rows * cols))
        st = nb_fail(NB_EFORMAT, "%s: tensor %s contains NaN or Inf", c->path, name);
    H5Gclose(g);
    return st;
}

nb_status nb_export_nb_read(const char *path, nb_qmodel **out) {
    *out = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return nb_fail(NB_EFORMAT, "%s: not a readable HDF5 file (truncated or corrupted?)", path);
    nb_qmodel *m = NULL, tmp = {0};
    nb_status st = NB_OK;
    char *fmt = read_attr_str(f, "format", &tmp);
    long long ver = 0, v[8];
    double eps = 0, theta = 0;
    const char *keys[8] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len", "tied"};
    if (!fmt || strcmp(fmt, "nibble-export")) {
        st = nb_fail(NB_EFORMAT, "%s: an HDF5 file but not a nibble export (attribute format is '%s')", path,
                     fmt ? fmt : "missing");
        goto done;
    }
    if (!read_attr_ll(f, "version", &ver) || ver != 1) {
        st = nb_fail(NB_EUNSUPPORTED, "%s: nibble export version %lld (this build reads 1)", path, ver);
        goto done;
    }
    for (int i = 0; i < 8; i++)
        if (!read_attr_ll(f, keys[i], &v[i]) || v[i] < 0 || v[i] > (1 << 30)) {
            st = nb_fail(NB_EFORMAT, "%s: attribute %s is missing or out of range", path, keys[i]);
            goto done;
        }
    if (!read_attr_d(f, "norm_eps", &eps) || !read_attr_d(f, "rope_theta", &theta)) {
        st = nb_fail(NB_EFORMAT, "%s: attribute norm_eps or rope_theta is missing", path);
        goto done;
    }
    nb_qconfig c = {(int)v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4], (int)v[5], (int)v[6], v[7] != 0, (float)eps,
                    (float)theta};
    if ((st = nb_qmodel_new(&c, &m))) {
        st = nb_fail_prefix(st, "%s", path);
        goto done;
    }
    if (H5Lexists(f, "tensors", H5P_DEFAULT) <= 0) {
        st = nb_fail(NB_EFORMAT, "%s: no /tensors group", path);
        goto done;
    }
    hid_t tg = H5Gopen2(f, "tensors", H5P_DEFAULT);
    rctx rc = {tg, path, m};
    st = nb_rt_visit(m, read_tensor, &rc);
    H5Gclose(tg);
    if (st) goto done;
    if (c.tied) m->classifier = m->tok_emb;
    char *pol = read_attr_str(f, "policy", m);
    m->policy = pol && pol[0] ? pol : NULL;
    if (H5Lexists(f, "vocab", H5P_DEFAULT) > 0) {
        hid_t vg = H5Gopen2(f, "vocab", H5P_DEFAULT);
        int n = c.vocab;
        int64_t *offs = nb_malloc((size_t)(n + 1) * sizeof(int64_t));
        float *sc = nb_malloc((size_t)n * 4);
        int32_t *ty = nb_malloc((size_t)n * 4);
        uint8_t *bytes = NULL;
        if (!offs || !sc || !ty) st = NB_ENOMEM;
        if (!st) st = read_ds(vg, path, "vocab", "offsets", H5T_NATIVE_INT64, 1, (hsize_t)n + 1, 0, offs);
        if (!st) st = read_ds(vg, path, "vocab", "scores", H5T_NATIVE_FLOAT, 1, (hsize_t)n, 0, sc);
        if (!st) st = read_ds(vg, path, "vocab", "types", H5T_NATIVE_INT32, 1, (hsize_t)n, 0, ty);
        if (!st) {
            for (int i = 0; i < n && !st; i++)
                if (offs[0] != 0 || offs[i + 1] < offs[i] || offs[i + 1] - offs[i] > 4096)
                    st = nb_fail(NB_EFORMAT, "%s: vocab/offsets are not increasing at %d", path, i);
        }
        if (!st) {
            bytes = nb_malloc((size_t)offs[n] + 1);
            st = bytes ? read_ds(vg, path, "vocab", "bytes", H5T_NATIVE_UINT8, 1, (hsize_t)offs[n], 0, bytes) : NB_ENOMEM;
        }
        if (!st) st = nb_rt_vocab_init(m, n);
        for (int i = 0; i < n && !st; i++)
            st = nb_rt_vocab_set(m, i, (const char *)bytes + offs[i], (size_t)(offs[i + 1] - offs[i]), sc[i], ty[i]);
        long long b = 1, e = 2, u = 0;
        read_attr_ll(vg, "bos", &b);
        read_attr_ll(vg, "eos", &e);
        read_attr_ll(vg, "unk", &u);
        if (!st) m->vocab.bos = (int)b, m->vocab.eos = (int)e, m->vocab.unk = (int)u;
        nb_free(offs);
        nb_free(sc);
        nb_free(ty);
        nb_free(bytes);
        H5Gclose(vg);
        if (st) goto done;
    }
    if (H5Lexists(f, "tokenizer", H5P_DEFAULT) > 0) {
        hid_t tg2 = H5Gopen2(f, "tokenizer", H5P_DEFAULT);
        nb_tokenizer *tok = NULL;
        st = nb_tokenizer_load_h5(tg2, &tok);
        H5Gclose(tg2);
        if (st) {
            st = nb_fail_prefix(st, "%s: /tokenizer", path);
            goto done;
        }
        if (nb_tokenizer_vocab(tok) != c.vocab) {
            st = nb_fail(NB_EFORMAT, "%s: /tokenizer has %d entries, vocab_size is %d", path, nb_tokenizer_vocab(tok), c.vocab);
            nb_tokenizer_free(tok);
            goto done;
        }
        m->tok = tok;
    }
    m->source = nb_qmodel_alloc(m, strlen(path) + 1);
    if (m->source) strcpy(m->source, path);
done:
    for (int i = 0; i < tmp.n_allocs; i++) nb_free(tmp.allocs[i]);
    nb_free(tmp.allocs);
    H5Fclose(f);
    if (st) {
        nb_qmodel_free(m);
        return st;
    }
    *out = m;
    return NB_OK;
}
