/* Hostile: grows its memory 64 MiB at a time until something stops it. */
#define UNMARK_PLUGIN_MAIN
#include "unmark_plugin.h"

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t w, uint32_t h, const uint8_t *mask, const char *p,
                      uint32_t n) {
    (void)mask, (void)p, (void)n;
    for (;;) {
        if (__builtin_wasm_memory_grow(0, 1024) == (unsigned long)-1) break;
    }
    unmark_output(rgba, w * h * 4);
    return 0;
}
