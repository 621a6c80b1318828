/* eval_compare.c: side-by-side evaluation table, PTQ-gap recovery and per-layer diagnostics. */
#include "eval_compare.h"

#include <math.h>
#include <string.h>

#include "checkpoint.h"
#include "qat_ckpt.h"

double nb_eval_recovered(double loss_fp32, double loss_ptq, double loss_qat) {
    double gap = loss_ptq - loss_fp32;
    if (!(gap > 0)) return NAN;
    return (loss_ptq - loss_qat) / gap;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void json_row(FILE *f, const nb_eval_row *r) {
    fprintf(f, "{\"model\": ");
    json_str(f, r->model);
    fprintf(f, ", \"loss\": %.9g, \"perplexity\": %.9g, \"tokens\": %lld, \"quantized\": %s}", r->loss, exp(r->loss),
            (long long)r->tokens, r->quantized ? "true" : "false");
}

void nb_eval_print(FILE *f, const nb_eval_row *rows, int n, int compare, int json) {
    double rec = compare && n == 3 ? nb_eval_recovered(rows[0].loss, rows[1].loss, rows[2].loss) : NAN;
    if (json) {
        if (n == 1 && !compare) {
            json_row(f, &rows[0]);
        } else {
            fprintf(f, "{\"models\": [");
            for (int k = 0; k < n; k++) {
                if (k) fprintf(f, ", ");
                json_row(f, &rows[k]);
            }
            fprintf(f, "]");
            if (compare) {
                if (isfinite(rec)) fprintf(f, ", \"recovered\": %.9g", rec);
                else fprintf(f, ", \"recovered\": null");
            }
            fprintf(f, "}");
        }
        fprintf(f, "\n");
        return;
    }
    static const char *const roles[3] = {"fp32", "ptq", "qat"};
    int w = 5;
    for (int k = 0; k < n; k++)
        if ((int)strlen(rows[k].model) > w) w = (int)strlen(rows[k].model);
    if (compare) fprintf(f, "%-4s  ", "");
    fprintf(f, "%-*s  %9s  %11s  %10s  %s\n", w, "model", "loss", "perplexity", "tokens", "weights");
    for (int k = 0; k < n; k++) {
        if (compare) fprintf(f, "%-4s  ", roles[k]);
        fprintf(f, "%-*s  %9.4f  %11.4f  %10lld  %s\n", w, rows[k].model, rows[k].loss, exp(rows[k].loss),
                (long long)rows[k].tokens, rows[k].quantized == 2 ? "integer" : rows[k].quantized ? "fake-quant" : "fp32");
    }
    if (compare) {
        fprintf(f, "PTQ gap %+.4f nats, QAT gap %+.4f nats", rows[1].loss - rows[0].loss, rows[2].loss - rows[0].loss);
        if (isfinite(rec)) fprintf(f, ", recovered %.1f%% = (ptq - qat) / (ptq - fp32)\n", 100.0 * rec);
        else fprintf(f, ", recovered undefined (PTQ is no worse than fp32)\n");
    }
}

nb_status nb_eval_per_layer(FILE *f, const char *path, const char *ref_path, int json) {
    nb_model m, ref;
    memset(&m, 0, sizeof m);
    memset(&ref, 0, sizeof ref);
    nb_qat *q = NULL;
    nb_qat_diag *d = NULL;
    int have_ref = 0, nd = 0;
    NB_TRY(nb_model_load_file(path, &m));
    nb_status s = nb_qat_load_file(path, &m, &q);
    if (s == NB_OK && !q)
        s = nb_fail(NB_EINVAL, "%s carries no quantization policy (quant.enabled false or not a QAT/PTQ checkpoint): "
                    "nothing to diagnose per layer", path);
    if (s == NB_OK && ref_path) {
        s = nb_model_load_file(ref_path, &ref);
        have_ref = s == NB_OK;
        if (s) nb_fail_prefix(s, "--ptq-ref");
    }
    if (s == NB_OK) {
        d = nb_calloc((size_t)m.params.n + 1, sizeof *d);
        s = d ? nb_qat_diagnose(q, have_ref ? &ref.params : &m.params, d, m.params.n, &nd)
              : nb_fail(NB_ENOMEM, "per-layer table");
        if (s) nb_fail_prefix(s, "%s", path);
    }
    if (s == NB_OK && json) {
        fprintf(f, "{\"model\": ");
        json_str(f, path);
        fprintf(f, ", \"ptq_ref\": ");
        json_str(f, ref_path ? ref_path : path);
        fprintf(f, ", \"layers\": [");
        for (int i = 0; i < nd; i++)
            fprintf(f, "%s{\"name\": \"%s\", \"grid\": \"%s\", \"sqnr_db\": %.4f, \"clipped\": %.6f, \"vs_ptq\": %.6f, "
                       "\"codes_changed\": %.6f}",
                    i ? ", " : "", d[i].name, d[i].grid, d[i].sqnr_db, d[i].clip_frac, d[i].vs_ref, d[i].code_diff_frac);
        fprintf(f, "]}\n");
    } else if (s == NB_OK) {
        fprintf(f, "%s: %d quantized weights; PTQ reference: %s\n", path, nd,
                ref_path ? ref_path : "round-to-nearest of these same weights");
        fprintf(f, "%-28s  %-22s  %8s  %8s  %9s  %9s\n", "weight", "grid", "SQNR dB", "clipped", "vs PTQ", "codes chg");
        double sq = 0, vs = 0;
        for (int i = 0; i < nd; i++) {
            fprintf(f, "%-28s  %-22s  %8.2f  %7.3f%%  %8.2f%%  %8.2f%%\n", d[i].name, d[i].grid, d[i].sqnr_db,
                    100.0 * d[i].clip_frac, 100.0 * d[i].vs_ref, 100.0 * d[i].code_diff_frac);
            sq += d[i].sqnr_db, vs += d[i].vs_ref;
        }
        if (nd) fprintf(f, "mean SQNR %.2f dB; mean |Q(W) - PTQ(W_ref)| / |PTQ(W_ref)| %.2f%%\n", sq / nd, 100 * vs / nd);
        fprintf(f, "SQNR = 10 log10(|W|^2 / |W - Q(W)|^2); clipped = codes that fell outside the grid;\n"
                   "vs PTQ = relative L2 distance of the quantized weights from the reference's PTQ.\n");
    }
    nb_free(d);
    nb_qat_free(q);
    if (have_ref) nb_model_free(&ref);
    nb_model_free(&m);
    return s;
}
