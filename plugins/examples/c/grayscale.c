/* grayscale: a filter that replaces each pixel by its Rec. 601 luma (alpha kept).
 * Params: none. */
#define UNMARK_PLUGIN_MAIN
#include "unmark_plugin.h"

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t width, uint32_t height, const uint8_t *mask,
                      const char *params, uint32_t params_len) {
    (void)mask, (void)params, (void)params_len;
    uint64_t n = (uint64_t)width * height;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *p = rgba + i * 4;
        uint8_t y = (uint8_t)((77u * p[0] + 150u * p[1] + 29u * p[2] + 128u) >> 8);
        p[0] = p[1] = p[2] = y;
    }
    unmark_output(rgba, (uint32_t)(n * 4));
    return 0;
}
