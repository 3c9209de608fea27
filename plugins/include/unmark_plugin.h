/*
 * unmark plugin contract, version 1 (core WebAssembly module ABI).
 *
 * A plugin is one .wasm module that unmark runs inside its sandbox as a pipeline step:
 *
 *   filter:  RGBA image (+ optional mask) + JSON params -> RGBA image of the same size
 *   mask:    RGBA image + JSON params                   -> 8-bit mask of the same size
 *
 * Build one with clang and wasi-libc (Debian: clang lld wasi-libc libclang-rt-dev-wasm32):
 *
 *   clang --target=wasm32-wasi -O2 -nostartfiles -Wl,--no-entry -Wl,--strip-all \
 *         -I plugins/include -o blur.wasm blur.c
 *
 * and install it with `unmark plugins add blur blur.wasm --version 1`. See plugins/ABI.md
 * for the full contract.
 *
 * The module must export:
 *   memory                                        its linear memory (32-bit, not shared)
 *   int32_t   unmark_abi_version(void)            returns UNMARK_ABI_VERSION
 *   uint8_t  *unmark_alloc(uint32_t len)          a buffer the host fills with input
 *   and exactly one entry point:
 *   int32_t   unmark_filter(uint8_t *rgba, uint32_t width, uint32_t height,
 *                           const uint8_t *mask, const char *params, uint32_t params_len)
 *   int32_t   unmark_mask(const uint8_t *rgba, uint32_t width, uint32_t height,
 *                         const char *params, uint32_t params_len)
 *
 * Pixels are 4 bytes each (R, G, B, A), rows top to bottom, no padding. `mask` is one byte
 * per pixel (255 = the watermark, 0 = keep), or NULL when the job has none. `params` is the
 * step's parameters as a JSON object (not NUL-terminated); numbers are easier to read with
 * unmark_param(). Return 0 on success, after handing the result to unmark_output(); any
 * other value fails the job with that code and what the plugin logged.
 *
 * The module may import these three functions from "unmark", and nothing else: no WASI, so
 * no files, network, clock, randomness or environment. A module importing anything else is
 * refused at upload.
 */
#ifndef UNMARK_PLUGIN_H
#define UNMARK_PLUGIN_H

#include <stdint.h>

#define UNMARK_ABI_VERSION 1

#define UNMARK_EXPORT(name) __attribute__((export_name(#name)))
#define UNMARK_IMPORT(name) __attribute__((import_module("unmark"), import_name(#name)))

#ifdef __cplusplus
extern "C" {
#endif

/* Hands the result to the host, which copies it at once. Call it exactly once, with
 * width*height*4 bytes (filter) or width*height bytes (mask); any other length, or a buffer
 * outside the module's memory, fails the job. A filter may pass its input buffer back. */
UNMARK_IMPORT(output) void unmark_output(const void *data, uint32_t len);

/* The numeric parameter `name` (true/false read as 1/0), or `fallback` when the job does not
 * set it. A parameter that is not a number fails the job with a clear message. */
UNMARK_IMPORT(param) double unmark_param(const char *name, uint32_t name_len, double fallback);

/* A line of text kept with the job's error if the plugin fails (4 KiB per call in all). */
UNMARK_IMPORT(log) void unmark_log(const char *text, uint32_t len);

#ifdef __cplusplus
}
#endif

/* Convenience: unmark_param with a string literal or a NUL-terminated name. */
static inline uint32_t unmark__strlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}
#define UNMARK_PARAM(name, fallback) unmark_param((name), unmark__strlen(name), (fallback))
#define UNMARK_LOG(text) unmark_log((text), unmark__strlen(text))

/*
 * Define UNMARK_PLUGIN_MAIN in one source file before including this header to get the two
 * housekeeping exports, with unmark_alloc on top of malloc (wasi-libc's dlmalloc).
 */
#ifdef UNMARK_PLUGIN_MAIN
#include <stdlib.h>
UNMARK_EXPORT(unmark_abi_version) int32_t unmark_abi_version(void) { return UNMARK_ABI_VERSION; }
UNMARK_EXPORT(unmark_alloc) uint8_t *unmark_alloc(uint32_t len) { return (uint8_t *)malloc(len ? len : 1); }
#endif

#endif /* UNMARK_PLUGIN_H */
