/* checkpoint_impl.h: the checkpoint seal, shared by checkpoint.c and checkpoint_seal.c only. */
#ifndef NB_CHECKPOINT_IMPL_H
#define NB_CHECKPOINT_IMPL_H

#include <stddef.h>

#include "checkpoint.h"

#define NB_CKPT_SEAL_BYTES 512
extern const char nb_ckpt_seal_magic[8]; /* "NBCKPT\x01\n" */

/* Fills the first NB_CKPT_SEAL_BYTES of img (n bytes: seal area + HDF5 image) with the seal. */
void nb_ckpt_seal_write(unsigned char *img, size_t n);
/* NB_OK when path starts with a seal matching its size and contents; NB_EFORMAT naming the file
   otherwise (not a checkpoint, truncated, corrupted), NB_EIO when unreadable. */
nb_status nb_ckpt_seal_check(const char *path);

#endif
