/* fuzz_h5mut.h: a structure-aware mutator for the HDF5 fuzz targets. libhdf5 1.10 itself crashes
   on many corrupted files (NULL dereference in H5A__close, overflows in H5HG_read: h5py crashes
   the same way; see tests/fuzz/known_hdf5/README), which nibble cannot prevent, so byte-level
   mutation mostly tests libhdf5. Instead each mutation opens the input as an in-memory HDF5 image
   (core driver), makes one edit through the HDF5 API and returns the new image: a random
   attribute gets an extreme integer, a foreign string or is deleted; a dataset is replaced by one
   of another type or rank, an absurd extent (up to 2^40 elements, never allocated) or random
   contents; a link is deleted. Files stay well-formed HDF5 while everything nibble reads from
   them (formats, versions, sizes, names, shapes, values) is attacked. Inputs that are not HDF5
   get libFuzzer's byte mutation. NB_FUZZ_HDF5_RAW=1 restores plain byte mutation (to hunt
   libhdf5 bugs; expect crashes inside libhdf5). */
#ifndef NB_FUZZ_H5MUT_H
#define NB_FUZZ_H5MUT_H

#include <hdf5.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

typedef struct h5m_obj {
    char names[64][256];
    int is_ds[64];
    int n;
} h5m_obj;

static herr_t h5m_visit(hid_t o, const char *name, const H5O_info_t *info, void *data) {
    h5m_obj *x = data;
    (void)o;
    if (x->n < 64 && strlen(name) < 255) {
        strcpy(x->names[x->n], name);
        x->is_ds[x->n] = info->type == H5O_TYPE_DATASET;
        x->n++;
    }
    return 0;
}

static uint64_t h5m_rand(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static const int64_t h5m_ints[] = {0, 1, -1, -5, 2, 3, 7, 8, 31, 32, 33, 255, 256, 65535, 65536, 1 << 20, 1 << 30,
                                   2147483647, (int64_t)-2147483647 - 1, (int64_t)1 << 40, (int64_t)1 << 62};
static const char *h5m_strs[] = {"nibble-checkpoint", "nibble-tokens", "nibble-export", "", "x", "byte", "char",
                                 "llama2c", "q4_0", "{\"dim\": -1}", "\xff\xfe"};

static void h5m_edit(hid_t f, uint64_t *rs) {
    h5m_obj x = {.n = 0};
    H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, h5m_visit, &x, H5O_INFO_BASIC);
    if (x.n == 0) return;
    int k = (int)(h5m_rand(rs) % (uint64_t)x.n);
    hid_t o = H5Oopen(f, x.names[k], H5P_DEFAULT);
    if (o < 0) return;
    int op = (int)(h5m_rand(rs) % 8);
    H5O_info_t oi;
    if (op < 4 && H5Oget_info2(o, &oi, H5O_INFO_NUM_ATTRS) >= 0 && oi.num_attrs > 0) {
        /* attribute edit */
        hsize_t ai = h5m_rand(rs) % oi.num_attrs;
        char an[256];
        if (H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, ai, an, sizeof an, H5P_DEFAULT) > 0) {
            H5Adelete(o, an);
            hid_t sp = H5Screate(H5S_SCALAR);
            if (op == 0) {
                int64_t v = h5m_ints[h5m_rand(rs) % (sizeof h5m_ints / sizeof h5m_ints[0])];
                hid_t a = H5Acreate2(o, an, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
                if (a >= 0) H5Awrite(a, H5T_NATIVE_INT64, &v), H5Aclose(a);
            } else if (op == 1) {
                int32_t v = (int32_t)h5m_ints[h5m_rand(rs) % (sizeof h5m_ints / sizeof h5m_ints[0])];
                hid_t a = H5Acreate2(o, an, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
                if (a >= 0) H5Awrite(a, H5T_NATIVE_INT32, &v), H5Aclose(a);
            } else if (op == 2) {
                const char *s = h5m_strs[h5m_rand(rs) % (sizeof h5m_strs / sizeof h5m_strs[0])];
                hid_t t = H5Tcopy(H5T_C_S1);
                H5Tset_size(t, H5T_VARIABLE);
                hid_t a = H5Acreate2(o, an, t, sp, H5P_DEFAULT, H5P_DEFAULT);
                if (a >= 0) H5Awrite(a, t, &s), H5Aclose(a);
                H5Tclose(t);
            } else if (op == 3 && (h5m_rand(rs) & 1)) {
                double v = (h5m_rand(rs) & 1) ? 1e300 : -0.0;
                hid_t a = H5Acreate2(o, an, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
                if (a >= 0) H5Awrite(a, H5T_NATIVE_DOUBLE, &v), H5Aclose(a);
            } /* else: deleted */
            H5Sclose(sp);
        }
        H5Oclose(o);
        return;
    }
    H5Oclose(o);
    if (!x.is_ds[k] || op == 7) {
        if (h5m_rand(rs) % 4 == 0) H5Ldelete(f, x.names[k], H5P_DEFAULT);
        return;
    }
    /* dataset edit: random contents in place, or a replacement of another type/shape */
    hid_t d = H5Dopen2(f, x.names[k], H5P_DEFAULT);
    if (d < 0) return;
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    if (op == 4 && n > 0 && n < (1 << 16)) {
        hid_t ft = H5Dget_type(d);
        size_t es = H5Tget_size(ft);
        if (H5Tget_class(ft) != H5T_STRING && H5Tget_class(ft) != H5T_VLEN && es <= 8) {
            size_t bytes = (size_t)n * es;
            uint8_t *b = malloc(bytes);
            H5Dread(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
            int flips = 1 + (int)(h5m_rand(rs) % 8);
            for (int i = 0; i < flips; i++) b[h5m_rand(rs) % bytes] = (uint8_t)h5m_rand(rs);
            if (h5m_rand(rs) % 4 == 0 && es == 4) { /* a NaN or Inf float, or a huge int */
                uint32_t v = (h5m_rand(rs) & 1) ? 0x7fc00000u : 0x7f800000u;
                memcpy(b + (h5m_rand(rs) % (uint64_t)n) * 4, &v, 4);
            }
            H5Dwrite(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
            free(b);
        }
        H5Tclose(ft);
        H5Dclose(d);
        return;
    }
    H5Dclose(d);
    H5Ldelete(f, x.names[k], H5P_DEFAULT);
    hid_t types[] = {H5T_IEEE_F32LE, H5T_IEEE_F64LE, H5T_STD_I8LE, H5T_STD_U8LE, H5T_STD_I32LE,
                     H5T_STD_U16LE, H5T_STD_I64LE, H5T_IEEE_F32BE};
    hid_t ft = types[h5m_rand(rs) % 8];
    int rank = (int)(h5m_rand(rs) % 4);
    hsize_t dims[3];
    int big = h5m_rand(rs) % 4 == 0;
    int64_t total = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = big ? ((hsize_t)1 << (h5m_rand(rs) % 41)) : 1 + h5m_rand(rs) % 40;
        if (total > ((int64_t)1 << 40) / (int64_t)dims[i]) dims[i] = 1; /* at most 2^40 in all */
        total *= (int64_t)dims[i];
    }
    hid_t s2 = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_LATE);
    hid_t d2 = H5Dcreate2(f, x.names[k], ft, s2, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d2 >= 0 && total <= 4096) { /* small: write values (big ones stay unallocated) */
        float *v = malloc(sizeof(float) * (size_t)total);
        for (int64_t i = 0; i < total; i++) v[i] = (float)(int64_t)(h5m_rand(rs) % 64) - 8.0f;
        H5Dwrite(d2, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        free(v);
    }
    if (d2 >= 0) H5Dclose(d2);
    H5Pclose(dcpl);
    H5Sclose(s2);
}

/* One API-level edit of the HDF5 image in data; returns the new size (0 when it did not fit). */
static size_t h5m_mutate(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 4096, 0);
    H5Pset_file_image(fapl, data, size);
    hid_t f = H5Fopen("nb-fuzz-image.h5", H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0) return 0;
    uint64_t rs = seed;
    int edits = 1 + (int)(h5m_rand(&rs) % 3);
    for (int i = 0; i < edits; i++) h5m_edit(f, &rs);
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    size_t out = 0;
    if (n > 0 && (size_t)n <= max_size && H5Fget_file_image(f, data, (size_t)n) == n) out = (size_t)n;
    H5Fclose(f);
    return out;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    static int raw = -1;
    if (raw < 0) raw = getenv("NB_FUZZ_HDF5_RAW") && getenv("NB_FUZZ_HDF5_RAW")[0] == '1';
    /* a sealed nibble checkpoint: mutate the HDF5 file behind its 512-byte header (the target
       re-seals before reading, see fuzz_checkpoint.c) */
    if (!raw && size > 520 && !memcmp(data, "NBCKPT\x01\n", 8) && !memcmp(data + 512, "\x89HDF\r\n\x1a\n", 8)) {
        size_t n = LLVMFuzzerCustomMutator(data + 512, size - 512, max_size - 512, seed);
        return n ? n + 512 : size;
    }
    if (!raw && size >= 8 && !memcmp(data, "\x89HDF\r\n\x1a\n", 8)) {
        uint8_t *copy = malloc(max_size);
        memcpy(copy, data, size);
        size_t n = h5m_mutate(copy, size, max_size, seed);
        if (n) memcpy(data, copy, n);
        free(copy);
        if (n) return n;
        return size; /* unchanged: libFuzzer tries again */
    }
    if (!raw) return size;
    return LLVMFuzzerMutate(data, size, max_size);
}

#endif
