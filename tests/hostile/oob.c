/* Hostile: points the host at memory it does not have. */
#define UNMARK_PLUGIN_MAIN
#include "unmark_plugin.h"

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t w, uint32_t h, const uint8_t *mask, const char *p,
                      uint32_t n) {
    (void)rgba, (void)mask, (void)p, (void)n;
    unmark_output((const void *)(uintptr_t)0xFFFFF000u, w * h * 4);
    return 0;
}
