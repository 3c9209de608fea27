/* threshold: a mask detector that marks every opaque pixel within `tolerance` of a colour on
 * each of R, G and B (for example a white text watermark).
 * Params: r, g, b (default 255, 255, 255): the mark's colour;
 *         tolerance (default 40, 0..255): the largest difference per channel. */
#define UNMARK_PLUGIN_MAIN
#include <stdlib.h>
#include "unmark_plugin.h"

static int param_byte(const char *name, double fallback, int *out) {
    double v = UNMARK_PARAM(name, fallback);
    if (!(v >= 0.0 && v <= 255.0)) {
        UNMARK_LOG(name);
        UNMARK_LOG("must be from 0 to 255");
        return 0;
    }
    *out = (int)v;
    return 1;
}

UNMARK_EXPORT(unmark_mask)
int32_t unmark_mask(const uint8_t *rgba, uint32_t width, uint32_t height, const char *params,
                    uint32_t params_len) {
    (void)params, (void)params_len;
    int r, g, b, tol;
    if (!param_byte("r", 255, &r) || !param_byte("g", 255, &g) || !param_byte("b", 255, &b) ||
        !param_byte("tolerance", 40, &tol))
        return 1;
    uint64_t n = (uint64_t)width * height;
    uint8_t *mask = malloc(n ? n : 1);
    if (!mask) {
        UNMARK_LOG("out of memory");
        return 2;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = rgba + i * 4;
        int hit = p[3] > 0 && abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
        mask[i] = hit ? 255 : 0;
    }
    unmark_output(mask, (uint32_t)n);
    return 0;
}
