/* plot.c: loss curves to PNG (canvas, Bresenham lines, 5x7 font, stored-deflate PNG writer). */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- PNG: signature, IHDR, one IDAT holding a zlib stream of stored blocks, IEND ---- */

uint32_t nb_crc32(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

uint32_t nb_adler32(uint32_t a, const uint8_t *p, size_t n) {
    uint32_t s1 = a & 0xffff, s2 = a >> 16;
    for (size_t i = 0; i < n; i++) {
        s1 = (s1 + p[i]) % 65521;
        s2 = (s2 + s1) % 65521;
    }
    return (s2 << 16) | s1;
}

static void put32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* writes length, type, data, CRC(type + data) */
static int chunk(FILE *f, const char *type, const uint8_t *data, size_t n) {
    uint8_t hdr[8];
    put32(hdr, (uint32_t)n);
    memcpy(hdr + 4, type, 4);
    uint32_t crc = nb_crc32(nb_crc32(0, hdr + 4, 4), data, n);
    uint8_t tail[4];
    put32(tail, crc);
    return fwrite(hdr, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) && fwrite(tail, 1, 4, f) == 4;
}

nb_status nb_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
    if (w < 1 || h < 1 || w > 16384 || h > 16384) return nb_fail(NB_EINVAL, "png: bad size %dx%d", w, h);
    /* raw image: each row = filter byte 0 + w*3 bytes */
    size_t row = (size_t)w * 3 + 1, raw_n = row * (size_t)h;
    size_t n_blocks = (raw_n + 65534) / 65535;
    size_t z_n = 2 + raw_n + 5 * n_blocks + 4;
    uint8_t *z = nb_malloc(z_n);
    uint8_t *raw = nb_malloc(raw_n);
    if (!z || !raw) {
        nb_free(z);
        nb_free(raw);
        return nb_fail(NB_ENOMEM, "png: %zu bytes", z_n);
    }
    for (int y = 0; y < h; y++) {
        raw[row * y] = 0;
        memcpy(raw + row * y + 1, rgb + (size_t)y * w * 3, (size_t)w * 3);
    }
    /* zlib: CMF 0x78 (deflate, 32K window), FLG 0x01 (check bits: 0x7801 % 31 == 0) */
    size_t o = 0;
    z[o++] = 0x78;
    z[o++] = 0x01;
    for (size_t at = 0; at < raw_n; at += 65535) {
        size_t len = raw_n - at < 65535 ? raw_n - at : 65535;
        z[o++] = at + len == raw_n; /* BFINAL, BTYPE 00 = stored */
        z[o++] = (uint8_t)len;
        z[o++] = (uint8_t)(len >> 8);
        z[o++] = (uint8_t)~len;
        z[o++] = (uint8_t)(~len >> 8);
        memcpy(z + o, raw + at, len);
        o += len;
    }
    put32(z + o, nb_adler32(1, raw, raw_n));
    o += 4;
    nb_free(raw);

    uint8_t ihdr[13];
    put32(ihdr, (uint32_t)w);
    put32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 2;  /* colour type RGB */
    ihdr[10] = 0; /* deflate */
    ihdr[11] = 0; /* adaptive filtering */
    ihdr[12] = 0; /* no interlace */
    FILE *f = fopen(path, "wb");
    if (!f) {
        nb_free(z);
        return nb_fail(NB_EIO, "open %s: %s", path, strerror(errno));
    }
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int ok = fwrite(sig, 1, 8, f) == 8 && chunk(f, "IHDR", ihdr, 13) && chunk(f, "IDAT", z, o) &&
             chunk(f, "IEND", NULL, 0);
    ok = (fclose(f) == 0) && ok;
    nb_free(z);
    return ok ? NB_OK : nb_fail(NB_EIO, "write %s: %s", path, strerror(errno));
}

/* ---- canvas ---- */

typedef struct canvas {
    int w, h;
    uint8_t *px; /* (h, w, 3) */
} canvas;

static void dot(canvas *c, int x, int y, uint32_t rgb) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + ((size_t)y * c->w + x) * 3;
    p[0] = (uint8_t)(rgb >> 16);
    p[1] = (uint8_t)(rgb >> 8);
    p[2] = (uint8_t)rgb;
}

static void rect(canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) dot(c, x, y, rgb);
}

/* Bresenham; width 2 by also drawing the pixel below/right */
static void line(canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb, int thick) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        dot(c, x0, y0, rgb);
        if (thick) {
            dot(c, x0 + 1, y0, rgb);
            dot(c, x0, y0 + 1, rgb);
        }
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

/* ---- 5x7 font: each glyph is 7 rows of 5 columns ('#' = ink) ---- */

typedef struct glyph {
    char ch;
    const char *rows; /* 35 characters */
} glyph;

static const glyph font[] = {
    {'0', ".###.#...##..###.#.###..##...#.###."},
    {'1', "..#...##....#....#....#....#...###."},
    {'2', ".###.#...#....#...#...#...#...#####"},
    {'3', "#####...#...#.....#.....##...#.###."},
    {'4', "...#...##..#.#.#..#.#####...#....#."},
    {'5', "######....####.....#....##...#.###."},
    {'6', "..##..#...#....####.#...##...#.###."},
    {'7', "#####....#...#...#...#....#....#..."},
    {'8', ".###.#...##...#.###.#...##...#.###."},
    {'9', ".###.#...##...#.####....#...#..##.."},
    {'a', "...........###.....#.#####...#.####"},
    {'b', "#....#....#.##.##..##...##...#####."},
    {'c', "...........###.#....#....#...#.###."},
    {'d', "....#....#.##.##..###...##...#.####"},
    {'e', "...........###.#...#######.....###."},
    {'f', "..##..#..#.#...###...#....#....#..."},
    {'g', "......#####...##...#.####....#.###."},
    {'h', "#....#....#.##.##..##...##...##...#"},
    {'i', "..#........##....#....#....#...###."},
    {'j', "...#........##....#....#.#..#..##.."},
    {'k', "#....#....#..#.#.#..##...#.#..#..#."},
    {'l', ".##....#....#....#....#....#...###."},
    {'m', "..........##.#.#.#.##.#.##...##...#"},
    {'n', "..........#.##.##..##...##...##...#"},
    {'o', "...........###.#...##...##...#.###."},
    {'p', "..........####.#...#####.#....#...."},
    {'q', "...........##.##..##.####....#....#"},
    {'r', "..........#.##.##..##....#....#...."},
    {'s', "...........#####.....###.....#####."},
    {'t', ".#....#...###...#....#....#..#..##."},
    {'u', "..........#...##...##...##..##.##.#"},
    {'v', "..........#...##...##...#.#.#...#.."},
    {'w', "..........#...##...##.#.##.#.#.#.#."},
    {'x', "..........#...#.#.#...#...#.#.#...#"},
    {'y', "..........#...##...#.####....#.###."},
    {'z', "..........#####...#...#...#...#####"},
    {'.', "..........................##...##.."},
    {'-', "...............#####..............."},
    {'+', ".......#....#..#####..#....#......."},
    {':', "......##...##........##...##......."},
    {'/', "....#....#...#...#...#...#....#...."},
    {'_', "..............................#####"},
    {'(', "...#...#...#....#....#.....#.....#."},
    {')', ".#.....#.....#....#....#...#...#..."},
    {'=', "..........#####.....#####.........."},
    {',', ".....................##....#...#..."},
    {'%', "##...##..#...#...#...#...#..##...##"},
};

static const char *glyph_rows(char ch) {
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
    for (size_t i = 0; i < sizeof font / sizeof font[0]; i++)
        if (font[i].ch == ch) return font[i].rows;
    return NULL; /* space and unknown characters: blank */
}

/* text at (x, y) = top-left, scale s; returns the width drawn */
static int text(canvas *c, int x, int y, const char *s, uint32_t rgb, int scale) {
    int x0 = x;
    for (; *s; s++, x += 6 * scale) {
        const char *r = glyph_rows(*s);
        if (!r) continue;
        size_t len = strlen(r);
        for (int gy = 0; gy < 7; gy++)
            for (int gx = 0; gx < 5; gx++) {
                size_t k = (size_t)gy * 5 + gx;
                if (k < len && r[k] != '.') rect(c, x + gx * scale, y + gy * scale, x + gx * scale + scale - 1,
                                                 y + gy * scale + scale - 1, rgb);
            }
    }
    return x - x0;
}

static int text_width(const char *s, int scale) { return (int)strlen(s) * 6 * scale; }

/* text rotated by -90 degrees (reads bottom to top), for the y label; (x, y) = bottom-left */
static void text_up(canvas *c, int x, int y, const char *s, uint32_t rgb) {
    for (; *s; s++, y -= 6) {
        const char *r = glyph_rows(*s);
        if (!r) continue;
        size_t len = strlen(r);
        for (int gy = 0; gy < 7; gy++)
            for (int gx = 0; gx < 5; gx++) {
                size_t k = (size_t)gy * 5 + gx;
                if (k < len && r[k] != '.') dot(c, x + gy, y - gx, rgb);
            }
    }
}

/* "nice" tick step for a range: 1, 2 or 5 times a power of ten, about n ticks */
static double nice_step(double range, int n) {
    if (!(range > 0)) return 1.0;
    double raw = range / n, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0.0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    if (fabs(v) >= 1e6) snprintf(buf, n, "%.3g", v);
    else snprintf(buf, n, "%.*f", dec, v);
}

nb_status nb_plot_png(const char *path, int width, int height, const char *title, const char *xlabel,
                      const char *ylabel, const nb_plot_series *s, int n_series) {
    if (width < 100 || height < 100 || width > 4000 || height > 4000)
        return nb_fail(NB_EINVAL, "plot: size %dx%d outside 100..4000", width, height);
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int any = 0;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) continue;
            any = 1;
            x0 = fmin(x0, s[k].x[i]);
            x1 = fmax(x1, s[k].x[i]);
            y0 = fmin(y0, s[k].y[i]);
            y1 = fmax(y1, s[k].y[i]);
        }
    if (!any) return nb_fail(NB_EINVAL, "plot: no finite points to draw");
    if (x1 - x0 < 1e-12) x1 = x0 + 1;
    if (y1 - y0 < 1e-12) {
        y0 -= 0.5;
        y1 += 0.5;
    }
    double pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;

    canvas c = {width, height, nb_malloc((size_t)width * height * 3)};
    if (!c.px) return nb_fail(NB_ENOMEM, "plot: canvas %dx%d", width, height);
    memset(c.px, 255, (size_t)width * height * 3);
    /* plot area */
    int L = 70, R = width - 20, T = title ? 36 : 20, B = height - 50;
    const uint32_t axis = 0x333333, grid = 0xe6e6e6, ink = 0x111111;
#define PX(v) (L + (int)lround(((v) - x0) / (x1 - x0) * (R - L)))
#define PY(v) (B - (int)lround(((v) - y0) / (y1 - y0) * (B - T)))
    char buf[64];
    double ys = nice_step(y1 - y0, 6), xs = nice_step(x1 - x0, 7);
    for (double v = ceil(y0 / ys) * ys; v <= y1 + ys * 1e-9; v += ys) {
        int y = PY(v);
        line(&c, L, y, R, y, grid, 0);
        line(&c, L - 5, y, L, y, axis, 0);
        fmt_tick(buf, sizeof buf, v, ys);
        text(&c, L - 8 - text_width(buf, 1), y - 3, buf, ink, 1);
    }
    for (double v = ceil(x0 / xs) * xs; v <= x1 + xs * 1e-9; v += xs) {
        int x = PX(v);
        line(&c, x, T, x, B, grid, 0);
        line(&c, x, B, x, B + 5, axis, 0);
        fmt_tick(buf, sizeof buf, v, xs);
        text(&c, x - text_width(buf, 1) / 2, B + 9, buf, ink, 1);
    }
    line(&c, L, T, L, B, axis, 0);
    line(&c, L, B, R, B, axis, 0);
    if (xlabel) text(&c, (L + R) / 2 - text_width(xlabel, 1) / 2, height - 18, xlabel, ink, 1);
    if (ylabel) text_up(&c, 8, (T + B) / 2 + text_width(ylabel, 1) / 2, ylabel, ink);
    if (title) text(&c, (L + R) / 2 - text_width(title, 2) / 2, 8, title, ink, 2);

    /* curves, then the legend in the top-right corner */
    for (int k = 0; k < n_series; k++) {
        int have = 0, px = 0, py = 0;
        for (int i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i])) {
                have = 0;
                continue;
            }
            int x = PX(s[k].x[i]), y = PY(s[k].y[i]);
            if (have) line(&c, px, py, x, y, s[k].rgb, 1);
            if (s[k].markers) rect(&c, x - 2, y - 2, x + 2, y + 2, s[k].rgb);
            px = x;
            py = y;
            have = 1;
        }
    }
#undef PX
#undef PY
    int ly = T + 8;
    for (int k = 0; k < n_series; k++) {
        if (!s[k].label) continue;
        int lx = R - 12 - text_width(s[k].label, 1) - 26;
        line(&c, lx, ly + 3, lx + 20, ly + 3, s[k].rgb, 1);
        text(&c, lx + 26, ly, s[k].label, ink, 1);
        ly += 14;
    }
    nb_status st = nb_png_write_rgb(path, c.px, width, height);
    nb_free(c.px);
    return st;
}

/* ---- metrics.jsonl ---- */

/* value of "key": number in a JSON object line; 0 when absent or not a number */
static int json_num(const char *line, const char *key, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(line, pat);
    if (!p) return 0;
    p += strlen(pat);
    while (*p == ' ' || *p == '\t') p++;
    if (*p++ != ':') return 0;
    while (*p == ' ' || *p == '\t') p++;
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p) return 0;
    *out = v;
    return 1;
}

typedef struct dvec {
    double *v;
    int n, cap;
} dvec;

static int push(dvec *d, double x) {
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 256;
        double *v = nb_realloc(d->v, (size_t)cap * sizeof *v);
        if (!v) return 0;
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
    return 1;
}

nb_status nb_plot_run(const char *run_dir, const char *png_path, int *n_points) {
    char mpath[2048], outp[2048];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", run_dir);
    if (!png_path) {
        snprintf(outp, sizeof outp, "%s/loss.png", run_dir);
        png_path = outp;
    }
    FILE *f = fopen(mpath, "r");
    if (!f) return nb_fail(NB_EIO, "open %s: %s", mpath, strerror(errno));
    dvec tx = {0}, ty = {0}, vx = {0}, vy = {0};
    char line[4096];
    int ok = 1;
    while (ok && fgets(line, sizeof line, f)) {
        double step, v;
        if (!json_num(line, "step", &step)) continue;
        if (strstr(line, "\"event\"")) continue;
        if (json_num(line, "loss", &v)) ok = push(&tx, step) && push(&ty, v);
        if (ok && json_num(line, "val_loss", &v)) ok = push(&vx, step) && push(&vy, v);
    }
    fclose(f);
    nb_status s;
    if (!ok) s = nb_fail(NB_ENOMEM, "plot: reading %s", mpath);
    else if (tx.n + vx.n == 0) s = nb_fail(NB_EINVAL, "%s: no lines with \"step\" and \"loss\" or \"val_loss\"", mpath);
    else {
        nb_plot_series ser[2] = {
            {"train", tx.v, ty.v, tx.n, 0x1f77b4, tx.n < 30},
            {"val", vx.v, vy.v, vx.n, 0xff7f0e, 1},
        };
        s = nb_plot_png(png_path, 800, 500, "loss", "step", "loss", ser, 2);
        if (n_points) *n_points = tx.n + vx.n;
    }
    nb_free(tx.v);
    nb_free(ty.v);
    nb_free(vx.v);
    nb_free(vy.v);
    return s;
}
