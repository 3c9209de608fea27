/* autolevels: stretches each colour channel so that its darkest and brightest values (after
 * ignoring `clip` percent of the pixels at each end) become 0 and 255. Alpha is kept.
 * Params: clip (default 0.5, 0 <= clip < 50): percent of pixels ignored at each end. */
#define UNMARK_PLUGIN_MAIN
#include "unmark_plugin.h"

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t width, uint32_t height, const uint8_t *mask,
                      const char *params, uint32_t params_len) {
    (void)mask, (void)params, (void)params_len;
    double clip = UNMARK_PARAM("clip", 0.5);
    if (!(clip >= 0.0 && clip < 50.0)) {
        UNMARK_LOG("clip must be at least 0 and below 50");
        return 1;
    }
    uint64_t n = (uint64_t)width * height;
    uint64_t skip = (uint64_t)((double)n * clip / 100.0);
    for (int c = 0; c < 3; c++) {
        uint64_t hist[256] = {0};
        for (uint64_t i = 0; i < n; i++) hist[rgba[i * 4 + c]]++;
        int lo = 0, hi = 255;
        uint64_t seen = 0;
        for (; lo < 255; lo++) {
            seen += hist[lo];
            if (seen > skip) break;
        }
        seen = 0;
        for (; hi > 0; hi--) {
            seen += hist[hi];
            if (seen > skip) break;
        }
        if (hi <= lo) continue;
        uint8_t map[256];
        for (int v = 0; v < 256; v++) {
            int t = v < lo ? lo : (v > hi ? hi : v);
            map[v] = (uint8_t)(((t - lo) * 255 + (hi - lo) / 2) / (hi - lo));
        }
        for (uint64_t i = 0; i < n; i++) rgba[i * 4 + c] = map[rgba[i * 4 + c]];
    }
    unmark_output(rgba, (uint32_t)(n * 4));
    return 0;
}
