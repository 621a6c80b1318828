/* qat_ckpt.h: the quantization policy a checkpoint carries. A QAT run (and `nibble ptq`) stores
   its recipe text (root attribute "recipe", whose quant: section is the policy), the learned
   quantizer parameters (extra set "quant": nb_qat_params) and the observer ranges (extra set
   "quant_state": nb_qat_state). These functions rebuild that policy for a model read from the
   same checkpoint, so `nibble eval`, `generate` and `export` see the model as it was trained. */
#ifndef NB_QAT_CKPT_H
#define NB_QAT_CKPT_H

#include "checkpoint.h"
#include "qat.h"

#define NB_QAT_SET_PARAMS "quant"       /* learned scales, offsets, clips */
#define NB_QAT_SET_STATE "quant_state"  /* observer ranges and counts */

/* The step at which a policy is evaluated after training: past every schedule boundary (weights
   and activations on, annealed bits at the rules' bits, lambda 1, learned scales in use). */
#define NB_QAT_STEP_FINAL (1L << 40)

/* Adds the "quant" and "quant_state" sets of q (when q has them) to c; q must outlive the save.
   NB_EINVAL when c has no room for them. q NULL: nothing. */
nb_status nb_qat_ckpt_add(nb_qat *q, nb_ckpt_contents *c);

/* Reads the "quant" and "quant_state" sets of an open checkpoint back into q (shapes and names
   checked; a set the checkpoint lacks is left as built: observers then start on first use) and
   drops q's weight cache. */
nb_status nb_qat_ckpt_restore(nb_qat *q, nb_ckpt *c);

/* The recipe stored in the checkpoint (its quant: section is the policy), parsed with the keys
   that name files (data.*, model.init, distill.teacher) neutralised, so a checkpoint moved away
   from its data still yields its policy. *has = 0 (and r at defaults) when there is none. The
   caller frees r with nb_recipe_free. */
nb_status nb_qat_ckpt_recipe(nb_ckpt *c, nb_recipe *r, int *has);

/* Builds the policy the checkpoint carries for m (a model read from the same checkpoint), restores
   its state, positions it at NB_QAT_STEP_FINAL and sets m->qat. *out = NULL (m->qat untouched)
   when the checkpoint carries no policy or quant.enabled is false. Free with nb_qat_free after m
   no longer uses it. */
nb_status nb_qat_ckpt_load(nb_ckpt *c, nb_model *m, nb_qat **out);

/* The same from a path: a nibble checkpoint (HDF5) gets its policy, any other file (llama2.c
   .bin, exports) none. */
nb_status nb_qat_load_file(const char *path, nb_model *m, nb_qat **out);

#endif
