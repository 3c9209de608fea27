/* Hostile: unbounded recursion on the wasm call stack (no locals in linear memory, so the
 * sandbox's stack limit, not the module's own shadow stack, is what runs out). */
#define UNMARK_PLUGIN_MAIN
#include "unmark_plugin.h"

static volatile uint32_t sink;
static volatile uint32_t never = 0xFFFFFFFFu;

__attribute__((noinline)) static uint32_t dive(uint32_t depth) {
    if (depth == never) return 0;
    sink = depth;
    uint32_t below = dive(depth + 1);
    sink = below;
    return below + depth;
}

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t w, uint32_t h, const uint8_t *mask, const char *p,
                      uint32_t n) {
    (void)mask, (void)p, (void)n;
    rgba[0] = (uint8_t)dive(rgba[1]);
    unmark_output(rgba, w * h * 4);
    return 0;
}
