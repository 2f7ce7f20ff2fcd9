/* cli.c: see cli.h. */
#include "sim/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int snn_cli_threads(const char *s) {
    char *end;
    long n = strtol(s, &end, 10);
    if (*end || n < 1 || n > 4096) {
        fprintf(stderr, "spikesim: error: --threads expects a positive integer, got '%s'\n", s);
        return -1;
    }
    return (int)n;
}

int snn_cli_size(const char *opt, const char *s, uint64_t *bytes) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mul > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    v *= mul;
    if (end == s || *end || errno || !(v >= 1) || v > 1.8e19) {
        fprintf(stderr, "spikesim: error: %s expects a size such as 512M, 2G or a byte count, got '%s'\n",
                opt, s);
        return -1;
    }
    *bytes = (uint64_t)v;
    return 0;
}

int snn_cli_single_file_arg(int argc, char **argv, int *i, const char *cmd, const char *what,
                            const char *usage, const char **out, const char **file) {
    const char *a = argv[*i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        fputs(usage, stdout);
        return SNN_EXIT_OK;
    } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && *i + 1 < argc) {
        *out = argv[++*i];
    } else if (a[0] == '-' && a[1]) {
        fprintf(stderr, "spikesim: error: unknown or incomplete option '%s'\n", a);
        return SNN_EXIT_USAGE;
    } else if (*file) {
        fprintf(stderr, "spikesim: error: %s takes one %s, got '%s' as well\n", cmd, what, a);
        return SNN_EXIT_USAGE;
    } else {
        *file = a;
    }
    return -1;
}
