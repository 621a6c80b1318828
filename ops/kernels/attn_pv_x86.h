/* attn_pv_x86.h: the decode rows' output and normaliser kernel (nb_attn_kernels.pv_l) over one
   vector width, included by attn_x86.h with the level's vectors and by attn_avx512.c a second time
   with 8-lane vectors for narrow heads. The includer defines PW lanes, PF vector, PM mask, pfull(),
   pfirst(r), pload, ploadm(p, m), pstorem(p, m, v), pset1, pzero(), pfma(a, b, c) = a b + c, and
   PV_P(x), the prefix of the names made here (PV_P(l) is the kernel); they are undefined at the end. */

/* NH heads side by side on columns [d0, d0 + NV PW) of each (the last vector masked by ml unless
   FULL): per head and vector the chain fma(e[h][j], v[h][j ldv + d], c) over j, and the head's
   scalar sum of e[h][j] in j order, stored to l[h] when l is given. NH NV independent chains,
   where one head alone has NV: a decode row's chains are serial in the keys, so the heads share
   the pipeline to fill it. */
#define DEF_PV(NH, NV, FULL)                                                                                 \
    INLINE void PV_P(NH##_##NV##_##FULL)(const float *const *e, int64_t nk, const float *const *v,           \
                                         int64_t ldv, int64_t d0, PM ml, float *const *o, float *l) {        \
        PF a[NH][NV];                                                                                        \
        float s[NH];                                                                                         \
        _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) {                                               \
            s[h] = 0.0f;                                                                                     \
            _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) a[h][u] = pzero();                         \
        }                                                                                                    \
        for (int64_t j = 0; j < nk; j++) {                                                                   \
            _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) {                                           \
                const float ej = e[h][j];                                                                    \
                const float *vj = v[h] + j * ldv + d0;                                                       \
                const PF eb = pset1(ej);                                                                     \
                s[h] += ej;                                                                                  \
                _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++) a[h][u] =                               \
                    pfma(eb, u == NV - 1 && !(FULL) ? ploadm(vj + u * PW, ml) : pload(vj + u * PW), a[h][u]); \
            }                                                                                                \
        }                                                                                                    \
        _Pragma("GCC unroll 8") for (int h = 0; h < NH; h++) {                                               \
            _Pragma("GCC unroll 4") for (int u = 0; u < NV; u++)                                             \
                pstorem(o[h] + d0 + u * PW, u == NV - 1 ? ml : pfull(), a[h][u]);                            \
            if (l) l[h] = s[h];                                                                              \
        }                                                                                                    \
    }
#define DEF_PV2(NH, NV) DEF_PV(NH, NV, 0) DEF_PV(NH, NV, 1)
DEF_PV2(1, 1) DEF_PV2(2, 1) DEF_PV2(3, 1) DEF_PV2(4, 1) DEF_PV2(5, 1) DEF_PV2(6, 1) DEF_PV2(7, 1) DEF_PV2(8, 1)
DEF_PV2(1, 2) DEF_PV2(2, 2) DEF_PV2(3, 2) DEF_PV2(4, 2)
DEF_PV2(1, 3) DEF_PV2(2, 3) DEF_PV2(3, 3)
DEF_PV2(1, 4) DEF_PV2(2, 4)

/* n <= NB_ATTN_PV_HEADS heads: columns in chunks of up to 4 vectors (every chunk sums l again,
   kept only from the first), heads in groups of about 8 accumulators */
static void PV_P(l)(int n, const float *const *e, int64_t nk, const float *const *v, int64_t ldv, int64_t H,
                    float *const *o, float *l) {
    static const int most[5] = {0, 8, 4, 3, 2}; /* heads a group, by vectors a head */
    for (int64_t d0 = 0; d0 < H; d0 += 4 * PW) {
        const int64_t r = H - d0 < 4 * PW ? H - d0 : 4 * PW;
        const int nv = (int)((r + PW - 1) / PW), full = r % PW == 0;
        const PM ml = pfirst(r - (nv - 1) * PW);
        float *ls = d0 == 0 ? l : NULL;
        for (int h = 0; h < n;) {
            const int g = n - h < most[nv] ? n - h : most[nv];
            const float *const *eh = e + h, *const *vh = v + h;
            float *const *oh = o + h;
            float *lh = ls ? ls + h : NULL;
#define PV_CASE(NH, NV)                                                      \
    case NH:                                                                 \
        if (full) PV_P(NH##_##NV##_1)(eh, nk, vh, ldv, d0, ml, oh, lh);      \
        else PV_P(NH##_##NV##_0)(eh, nk, vh, ldv, d0, ml, oh, lh);           \
        break;
            switch (nv) {
            case 1:
                switch (g) { PV_CASE(1, 1) PV_CASE(2, 1) PV_CASE(3, 1) PV_CASE(4, 1) PV_CASE(5, 1) PV_CASE(6, 1) PV_CASE(7, 1) default: PV_CASE(8, 1) }
                break;
            case 2:
                switch (g) { PV_CASE(1, 2) PV_CASE(2, 2) PV_CASE(3, 2) default: PV_CASE(4, 2) }
                break;
            case 3:
                switch (g) { PV_CASE(1, 3) PV_CASE(2, 3) default: PV_CASE(3, 3) }
                break;
            default:
                switch (g) { PV_CASE(1, 4) default: PV_CASE(2, 4) }
                break;
            }
#undef PV_CASE
            h += g;
        }
    }
}

#undef DEF_PV
#undef DEF_PV2
#undef PW
#undef PF
#undef PM
#undef pfull
#undef pfirst
#undef pload
#undef ploadm
#undef pstorem
#undef pset1
#undef pzero
#undef pfma
#undef PV_P
