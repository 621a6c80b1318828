/* registry.c: every op family's gradient-check cases, iterated by tests/test_autograd.c.
   Adding an op: write it and its nb_opcase rows in its family file; nothing to edit here unless
   the family is new. */
#include "../autograd/gradcheck.h"

extern const nb_opcase nb_opcases_matmul[];
extern const nb_opcase nb_opcases_elementwise[];
extern const nb_opcase nb_opcases_embed[];
extern const nb_opcase nb_opcases_norm[];
extern const nb_opcase nb_opcases_rope[];
extern const nb_opcase nb_opcases_activation[];
extern const nb_opcase nb_opcases_attention[];
extern const nb_opcase nb_opcases_loss[];
extern const nb_opcase nb_opcases_fakequant[];

const nb_opcase *const nb_opcase_tables[] = {
    nb_opcases_matmul,     nb_opcases_elementwise, nb_opcases_embed,     nb_opcases_norm,
    nb_opcases_rope,       nb_opcases_activation,  nb_opcases_attention, nb_opcases_loss, nb_opcases_fakequant,
    NULL,
};
