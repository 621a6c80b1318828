/* h5io.h: small HDF5 helpers shared by the tokenizer and token datasets: typed scalar and string
   attributes, and whole 1-D datasets read with their length checked first. Every call keeps HDF5's
   own error printing off and turns a failure into an nb_status whose message names `what`. */
#ifndef NB_H5IO_H
#define NB_H5IO_H

#include <hdf5.h>
#include <stdint.h>

#include "../core/status.h"

/* Scalar attributes on an object (file, group or dataset). */
nb_status nb_h5io_put_i64(hid_t obj, const char *name, int64_t v);
nb_status nb_h5io_put_f64(hid_t obj, const char *name, double v);
/* Variable-length UTF-8 string (h5py reads it as str). */
nb_status nb_h5io_put_str(hid_t obj, const char *name, const char *s);
/* A 1-D array of variable-length UTF-8 strings (h5py: array of str). */
nb_status nb_h5io_put_strs(hid_t obj, const char *name, const char *const *s, int n);

/* Readers: a missing or mistyped attribute is NB_EFORMAT naming `what` and the attribute. */
nb_status nb_h5io_get_i64(hid_t obj, const char *what, const char *name, int64_t *v);
nb_status nb_h5io_get_f64(hid_t obj, const char *what, const char *name, double *v);
/* String attribute (fixed or variable length) copied into buf (NUL-terminated, cut to cap). */
nb_status nb_h5io_get_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap);
int nb_h5io_has_attr(hid_t obj, const char *name);
int nb_h5io_has_link(hid_t loc, const char *name);

/* Write a 1-D dataset of n elements of memory type `mtype` stored as file type `ftype`. */
nb_status nb_h5io_write_1d(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *data, int64_t n);
/* Length of a 1-D dataset; NB_EFORMAT if it is missing or not 1-D. */
nb_status nb_h5io_len_1d(hid_t loc, const char *what, const char *name, int64_t *n);
/* Read a whole 1-D dataset of exactly `n` elements, converted to memory type `mtype`, into data
   (caller-allocated). The length is checked before reading. */
nb_status nb_h5io_read_1d(hid_t loc, const char *what, const char *name, hid_t mtype, void *data, int64_t n);

#endif
