/*
 * cli.h: what the spikesim subcommands (main.c, compare.c, inspect.c) parse alike, so that an
 * option means the same and fails with the same one-line error in every command.
 */
#ifndef SNN_CLI_H
#define SNN_CLI_H

#include <stdint.h>

/* Exit codes: 0 ok, 1 runtime or I/O error, 2 usage or config error. */
enum { SNN_EXIT_OK = 0, SNN_EXIT_RUNTIME = 1, SNN_EXIT_USAGE = 2 };

/* The value of --threads N, 1 to 4096; otherwise prints the one-line error and returns -1. */
int snn_cli_threads(const char *s);

/* The value of a size option (--max-memory): bytes, or a number with K, M, G or T (binary
 * multiples; "512M", "1.5G", "2GiB"); otherwise prints the one-line error and returns -1. */
int snn_cli_size(const char *opt, const char *s, uint64_t *bytes);

/* Takes argv[*i], an argument that the command's own options did not take, for a command of
 * one positional argument (what: "CONFIG", "RUN.h5"): -h/--help prints usage; -o/--output
 * FILE sets *out (and steps *i past FILE); an unknown option or a second positional is a usage
 * error; else the positional goes to *file. Returns -1 to go on parsing, else the exit code. */
int snn_cli_single_file_arg(int argc, char **argv, int *i, const char *cmd, const char *what,
                            const char *usage, const char **out, const char **file);

#endif
