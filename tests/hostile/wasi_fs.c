/* Hostile: reads a host file through WASI. Refused at upload (it imports WASI). */
#define UNMARK_PLUGIN_MAIN
#include <stdio.h>
#include "unmark_plugin.h"

UNMARK_EXPORT(unmark_filter)
int32_t unmark_filter(uint8_t *rgba, uint32_t w, uint32_t h, const uint8_t *mask, const char *p,
                      uint32_t n) {
    (void)mask, (void)p, (void)n;
    FILE *f = fopen("/etc/passwd", "r");
    if (f) {
        rgba[0] = (uint8_t)fgetc(f);
        fclose(f);
    }
    unmark_output(rgba, w * h * 4);
    return 0;
}
