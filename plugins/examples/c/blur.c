/* blur: a separable Gaussian blur of all four channels, edges clamped.
 * Params: sigma (default 2, 0 < sigma <= 64): the standard deviation in pixels;
 *         only_mask (default 0): when 1 and the job has a mask, blur only masked pixels.
 * The horizontal pass rounds to 8 bits before the vertical one. */
#define UNMARK_PLUGIN_MAIN
#include <math.h>
#include <stdlib.h>
#include "unmark_plugin.h"

#define MAX_RADIUS 192

static uint8_t round_u8(float v) {
    v += 0.5f;
    if (v <= 0.0f) return 0;
    if (v >= 255.0f) return 255;
    return (uint8_t)v;
}

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t width, uint32_t height, const uint8_t *mask,
                      const char *params, uint32_t params_len) {
    (void)params, (void)params_len;
    double sigma = UNMARK_PARAM("sigma", 2.0);
    int only_mask = UNMARK_PARAM("only_mask", 0.0) != 0.0;
    if (!(sigma > 0.0 && sigma <= 64.0)) {
        UNMARK_LOG("sigma must be above 0 and at most 64");
        return 1;
    }
    int radius = (int)ceil(3.0 * sigma);
    if (radius > MAX_RADIUS) radius = MAX_RADIUS;
    float kernel[2 * MAX_RADIUS + 1];
    float sum = 0.0f;
    for (int i = -radius; i <= radius; i++) {
        float k = expf(-(float)(i * i) / (float)(2.0 * sigma * sigma));
        kernel[i + radius] = k;
        sum += k;
    }
    for (int i = 0; i < 2 * radius + 1; i++) kernel[i] /= sum;

    uint64_t n = (uint64_t)width * height;
    uint8_t *tmp = malloc(n * 4);
    if (!tmp) {
        UNMARK_LOG("out of memory");
        return 2;
    }
    int w = (int)width, h = (int)height;
    for (int y = 0; y < h; y++) {
        const uint8_t *row = rgba + (uint64_t)y * w * 4;
        for (int x = 0; x < w; x++) {
            float acc[4] = {0, 0, 0, 0};
            for (int i = -radius; i <= radius; i++) {
                int sx = x + i;
                sx = sx < 0 ? 0 : (sx >= w ? w - 1 : sx);
                const uint8_t *p = row + sx * 4;
                float k = kernel[i + radius];
                for (int c = 0; c < 4; c++) acc[c] += k * (float)p[c];
            }
            for (int c = 0; c < 4; c++) tmp[((uint64_t)y * w + x) * 4 + c] = round_u8(acc[c]);
        }
    }
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint64_t at = ((uint64_t)y * w + x) * 4;
            if (only_mask && mask && mask[at / 4] == 0) continue;
            float acc[4] = {0, 0, 0, 0};
            for (int i = -radius; i <= radius; i++) {
                int sy = y + i;
                sy = sy < 0 ? 0 : (sy >= h ? h - 1 : sy);
                const uint8_t *p = tmp + ((uint64_t)sy * w + x) * 4;
                float k = kernel[i + radius];
                for (int c = 0; c < 4; c++) acc[c] += k * (float)p[c];
            }
            for (int c = 0; c < 4; c++) rgba[at + c] = round_u8(acc[c]);
        }
    }
    free(tmp);
    unmark_output(rgba, (uint32_t)(n * 4));
    return 0;
}
