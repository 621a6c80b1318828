/* h5io.c: typed HDF5 attribute and 1-D dataset helpers with checked lengths. */
#include "h5io.h"

#include <string.h>

/* Scalar attribute of file type ftype written from memory type mtype. */
static nb_status put_scalar(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    nb_status s = NB_OK;
    hid_t sp = -1, a = -1;
    H5E_BEGIN_TRY {
        if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
        sp = H5Screate(H5S_SCALAR);
        a = sp < 0 ? -1 : H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, mtype, v) < 0) s = nb_fail(NB_EIO, "writing attribute '%s' failed", name);
        if (a >= 0) H5Aclose(a);
        if (sp >= 0) H5Sclose(sp);
    }
    H5E_END_TRY;
    return s;
}

nb_status nb_h5io_put_i64(hid_t obj, const char *name, int64_t v) {
    return put_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

nb_status nb_h5io_put_f64(hid_t obj, const char *name, double v) {
    return put_scalar(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

nb_status nb_h5io_put_str(hid_t obj, const char *name, const char *s) {
    hid_t t = vlen_utf8();
    if (t < 0) return nb_fail(NB_EIO, "writing attribute '%s' failed", name);
    nb_status st = put_scalar(obj, name, t, t, &s);
    H5Tclose(t);
    return st;
}

nb_status nb_h5io_put_strs(hid_t obj, const char *name, const char *const *s, int n) {
    nb_status st = NB_OK;
    hid_t t = -1, sp = -1, a = -1;
    hsize_t dim = (hsize_t)n;
    H5E_BEGIN_TRY {
        if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
        t = vlen_utf8();
        sp = H5Screate_simple(1, &dim, NULL);
        a = (t < 0 || sp < 0) ? -1 : H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, t, s) < 0) st = nb_fail(NB_EIO, "writing attribute '%s' failed", name);
        if (a >= 0) H5Aclose(a);
        if (sp >= 0) H5Sclose(sp);
        if (t >= 0) H5Tclose(t);
    }
    H5E_END_TRY;
    return st;
}

int nb_h5io_has_attr(hid_t obj, const char *name) {
    htri_t r;
    H5E_BEGIN_TRY { r = H5Aexists(obj, name); }
    H5E_END_TRY;
    return r > 0;
}

int nb_h5io_has_link(hid_t loc, const char *name) {
    htri_t r;
    H5E_BEGIN_TRY { r = H5Lexists(loc, name, H5P_DEFAULT); }
    H5E_END_TRY;
    return r > 0;
}

/* Opens a scalar (or 1-element) attribute of the given type class. */
static nb_status open_attr(hid_t obj, const char *what, const char *name, H5T_class_t cls, hid_t *out) {
    if (!nb_h5io_has_attr(obj, name)) return nb_fail(NB_EFORMAT, "%s: missing attribute '%s'", what, name);
    hid_t a, t, sp;
    H5E_BEGIN_TRY { a = H5Aopen(obj, name, H5P_DEFAULT); }
    H5E_END_TRY;
    if (a < 0) return nb_fail(NB_EFORMAT, "%s: cannot open attribute '%s'", what, name);
    t = H5Aget_type(a);
    sp = H5Aget_space(a);
    hssize_t npts = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    H5T_class_t c = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    if (c != cls || npts != 1) {
        H5Aclose(a);
        return nb_fail(NB_EFORMAT, "%s: attribute '%s' has the wrong type or shape", what, name);
    }
    *out = a;
    return NB_OK;
}

nb_status nb_h5io_get_i64(hid_t obj, const char *what, const char *name, int64_t *v) {
    hid_t a;
    NB_TRY(open_attr(obj, what, name, H5T_INTEGER, &a));
    herr_t r;
    H5E_BEGIN_TRY { r = H5Aread(a, H5T_NATIVE_INT64, v); }
    H5E_END_TRY;
    H5Aclose(a);
    return r < 0 ? nb_fail(NB_EFORMAT, "%s: cannot read attribute '%s'", what, name) : NB_OK;
}

nb_status nb_h5io_get_f64(hid_t obj, const char *what, const char *name, double *v) {
    hid_t a;
    NB_TRY(open_attr(obj, what, name, H5T_FLOAT, &a));
    herr_t r;
    H5E_BEGIN_TRY { r = H5Aread(a, H5T_NATIVE_DOUBLE, v); }
    H5E_END_TRY;
    H5Aclose(a);
    return r < 0 ? nb_fail(NB_EFORMAT, "%s: cannot read attribute '%s'", what, name) : NB_OK;
}

nb_status nb_h5io_get_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap) {
    hid_t a;
    NB_TRY(open_attr(obj, what, name, H5T_STRING, &a));
    nb_status st = NB_OK;
    hid_t ft = H5Aget_type(a);
    H5E_BEGIN_TRY {
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            hid_t mt = vlen_utf8();
            if (H5Aread(a, mt, &s) < 0 || !s) {
                st = nb_fail(NB_EFORMAT, "%s: cannot read attribute '%s'", what, name);
            } else {
                snprintf(buf, cap, "%s", s);
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(ft);
            /* fixed-length strings are small in practice; refuse absurd ones */
            char *tmp = (n > 0 && n < (1u << 20)) ? nb_malloc(n + 1) : NULL;
            hid_t mt = H5Tcopy(ft);
            if (!tmp || H5Aread(a, mt, tmp) < 0) {
                st = nb_fail(NB_EFORMAT, "%s: cannot read attribute '%s'", what, name);
            } else {
                tmp[n] = 0;
                snprintf(buf, cap, "%s", tmp);
            }
            H5Tclose(mt);
            nb_free(tmp);
        }
    }
    H5E_END_TRY;
    H5Tclose(ft);
    H5Aclose(a);
    return st;
}

nb_status nb_h5io_write_1d(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *data, int64_t n) {
    nb_status st = NB_OK;
    hsize_t dim = (hsize_t)n;
    hid_t sp = -1, d = -1;
    H5E_BEGIN_TRY {
        sp = H5Screate_simple(1, &dim, NULL);
        d = sp < 0 ? -1 : H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (d < 0 || (n > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0))
            st = nb_fail(NB_EIO, "writing dataset '%s' failed", name);
        if (d >= 0) H5Dclose(d);
        if (sp >= 0) H5Sclose(sp);
    }
    H5E_END_TRY;
    return st;
}

/* Opens dataset `name`, checks it is 1-D, returns its length. */
static nb_status open_1d(hid_t loc, const char *what, const char *name, hid_t *out, int64_t *n) {
    if (!nb_h5io_has_link(loc, name)) return nb_fail(NB_EFORMAT, "%s: missing dataset '%s'", what, name);
    hid_t d;
    H5E_BEGIN_TRY { d = H5Dopen2(loc, name, H5P_DEFAULT); }
    H5E_END_TRY;
    if (d < 0) return nb_fail(NB_EFORMAT, "%s: '%s' is not a dataset", what, name);
    hid_t sp = H5Dget_space(d);
    hsize_t dim = 0;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd == 1) H5Sget_simple_extent_dims(sp, &dim, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (nd != 1) {
        H5Dclose(d);
        return nb_fail(NB_EFORMAT, "%s: dataset '%s' should be 1-D, has %d dimensions", what, name, nd);
    }
    /* The extent is only a claim: an unallocated dataset reads as fill values, so a small file
       could announce 10^12 elements and have us allocate them. Without filters the stored bytes
       must cover every element; with filters (compression) they must at least exist. */
    hid_t ft = H5Dget_type(d), dcpl = H5Dget_create_plist(d);
    size_t es = ft >= 0 && H5Tget_class(ft) != H5T_VLEN && !H5Tis_variable_str(ft) ? H5Tget_size(ft) : 0;
    int nfilters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    if (ft >= 0) H5Tclose(ft);
    if (dcpl >= 0) H5Pclose(dcpl);
    hsize_t stored = H5Dget_storage_size(d);
    if (dim > 0 && es > 0 && (nfilters > 0 ? stored == 0 : stored / es < dim)) {
        H5Dclose(d);
        return nb_fail(NB_EFORMAT, "%s: dataset '%s' claims %llu elements but the file stores %llu bytes of them",
                       what, name, (unsigned long long)dim, (unsigned long long)stored);
    }
    *out = d;
    *n = (int64_t)dim;
    return NB_OK;
}

nb_status nb_h5io_len_1d(hid_t loc, const char *what, const char *name, int64_t *n) {
    hid_t d;
    NB_TRY(open_1d(loc, what, name, &d, n));
    H5Dclose(d);
    return NB_OK;
}

nb_status nb_h5io_read_1d(hid_t loc, const char *what, const char *name, hid_t mtype, void *data, int64_t n) {
    hid_t d;
    int64_t have;
    NB_TRY(open_1d(loc, what, name, &d, &have));
    if (have != n) {
        H5Dclose(d);
        return nb_fail(NB_EFORMAT, "%s: dataset '%s' has %lld elements, expected %lld", what, name, (long long)have,
                       (long long)n);
    }
    hid_t ft = H5Dget_type(d);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    if (ft >= 0) H5Tclose(ft);
    if (cls != H5Tget_class(mtype)) {
        H5Dclose(d);
        return nb_fail(NB_EFORMAT, "%s: dataset '%s' has the wrong element type", what, name);
    }
    herr_t r = 0;
    H5E_BEGIN_TRY {
        if (n > 0) r = H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    }
    H5E_END_TRY;
    H5Dclose(d);
    return r < 0 ? nb_fail(NB_EFORMAT, "%s: cannot read dataset '%s' (corrupted or wrong type)", what, name) : NB_OK;
}
