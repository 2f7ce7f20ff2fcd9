/*
 * fuzz_config.c: libFuzzer target for the YAML config loader (sim/config.c).
 *
 * Input: YAML text, optionally followed by NUL-separated `--set key.path=value` overrides
 * (at most 8): "model:\n  dim: 64\n\0model.heads=4\0seed=3". Every diagnostic is formatted
 * (to /dev/null). A config that loads without errors must survive the documented round trip:
 * snn_config_to_yaml gives text that loads back with no error and prints the same text again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/config.h"

enum { FUZZ_MAX_SETS = 8 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();

    char *text = malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    const char *sets[FUZZ_MAX_SETS];
    int n_sets = 0;
    for (char *p = text + strlen(text); p < text + size && n_sets < FUZZ_MAX_SETS;) {
        sets[n_sets++] = ++p;
        p += strlen(p);
    }

    snn_config cfg;
    int errors = snn_config_load_string(&cfg, text, "fuzz.yaml", sets, n_sets, devnull);
    if (errors == 0) {
        char *yaml = snn_config_to_yaml(&cfg);
        snn_config again;
        if (snn_config_load_string(&again, yaml, "round-trip.yaml", NULL, 0, stderr) != 0) {
            fprintf(stderr, "round trip: the resolved config does not load back:\n%s", yaml);
            abort();
        }
        char *yaml2 = snn_config_to_yaml(&again);
        if (strcmp(yaml, yaml2) != 0) {
            fprintf(stderr, "round trip: resolved config changed:\n%s---\n%s", yaml, yaml2);
            abort();
        }
        free(yaml2);
        free(yaml);
        snn_config_free(&again);
    }
    snn_config_free(&cfg);
    free(text);
    return 0;
}
