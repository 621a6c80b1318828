/* plot.h: loss curves to PNG without dependencies: an RGB canvas, a line rasterizer, a 5x7 bitmap
   font for tick labels, and a PNG writer with stored (uncompressed) deflate blocks. */
#ifndef NB_PLOT_H
#define NB_PLOT_H

#include <stdint.h>

#include "../core/status.h"

typedef struct nb_plot_series {
    const char *label;   /* legend text ("train", "val") */
    const double *x;     /* (n) */
    const double *y;     /* (n) */
    int n;
    uint32_t rgb;        /* 0xRRGGBB */
    int markers;         /* draw a small square at each point */
} nb_plot_series;

/* Draws the series on common axes (x: step, y: loss) with ticks, labels and a legend, and writes
   an RGB PNG of width x height (100..4000) to path. */
nb_status nb_plot_png(const char *path, int width, int height, const char *title, const char *xlabel,
                      const char *ylabel, const nb_plot_series *s, int n_series);

/* Reads RUN_DIR/metrics.jsonl (objects with "step" and "loss" and/or "val_loss") and plots train
   and validation loss vs step to png_path (NULL: RUN_DIR/loss.png). *n_points gets the number of
   train + val points drawn (may be NULL). NB_EINVAL when there is nothing to plot. */
nb_status nb_plot_run(const char *run_dir, const char *png_path, int *n_points);

/* Encodes w x h RGB pixels (3 bytes each, rows top to bottom) as a PNG file. */
nb_status nb_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

/* CRC-32 (PNG/zlib polynomial) and Adler-32 (zlib), exposed for tests. */
uint32_t nb_crc32(uint32_t crc, const uint8_t *p, size_t n);
uint32_t nb_adler32(uint32_t a, const uint8_t *p, size_t n);

#endif
