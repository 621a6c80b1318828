/* rope.c: (to be written) */
#include "ops.h"
#include "../autograd/gradcheck.h"

const nb_opcase nb_opcases_rope[] = {
    {0},
};
