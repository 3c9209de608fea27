/* Hostile: a valid filter carrying 9 MiB of data, over the 8 MiB module limit. */
#define UNMARK_PLUGIN_MAIN
#include "unmark_plugin.h"

#define BIG (9u << 20)
static const uint8_t ballast[BIG] = {[0] = 1, [BIG - 1] = 1};

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t w, uint32_t h, const uint8_t *mask, const char *p,
                      uint32_t n) {
    (void)mask, (void)p, (void)n;
    rgba[0] ^= ballast[rgba[1] % 2 ? BIG - 1 : 0];
    unmark_output(rgba, w * h * 4);
    return 0;
}
