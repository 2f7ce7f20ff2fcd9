/*
 * main.c: the spikesim command line.
 *
 *   spikesim run CONFIG [-o OUT.h5] [--set key.path=value]... [--threads N] [--dense]
 *                [--max-memory SIZE]
 *   spikesim validate CONFIG... [--set key.path=value]...
 *   spikesim bench CONFIG [--set key.path=value]... [--threads N] [--rate-levels]
 *                         [--phase infer|train]
 *   spikesim bench-attention [--max-n N]
 *   spikesim inspect RUN.h5
 *   spikesim raster RUN.h5 --population P [--sample i] -o FILE.svg
 *   spikesim rates RUN.h5 -o FILE.svg
 *   spikesim compare CONFIG [-o DIR] [--threads N] [--quiet] [--dry-run]
 *   spikesim --help | --version
 *
 * Exit codes: 0 ok, 1 runtime or I/O error, 2 usage or config error, 130/143 interrupted by
 * SIGINT/SIGTERM (sim/interrupt.h).
 *
 * Under mpirun (a `make MPI=1` build), run trains data parallel over the ranks and compare
 * spreads its runs over them; rank 0 prints and writes. Other commands run on every rank as
 * if alone, so start them without mpirun.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim/bench.h"
#include "sim/cli.h"
#include "sim/compare.h"
#include "sim/config.h"
#include "sim/dist.h"
#include "sim/h5io.h"
#include "sim/inspect.h"
#include "sim/interrupt.h"
#include "sim/layers.h"
#include "sim/run.h"
#include "sim/util.h"

static const char usage[] =
    "usage: spikesim run CONFIG [-o OUT.h5] [--set key.path=value]... [--threads N] [--dense]\n"
    "                    [--max-memory SIZE]\n"
    "       spikesim validate CONFIG... [--set key.path=value]...\n"
    "       spikesim bench CONFIG [--set key.path=value]... [--threads N] [--rate-levels]\n"
    "                      [--phase infer|train]\n"
    "       spikesim bench-attention [--max-n N]\n"
    "       spikesim inspect RUN.h5\n"
    "       spikesim raster RUN.h5 --population P [--sample i] -o FILE.svg\n"
    "       spikesim rates RUN.h5 -o FILE.svg\n"
    "       spikesim compare CONFIG [-o DIR] [--threads N] [--quiet] [--dry-run]\n"
    "       spikesim --help | --version\n"
    "\n"
    "commands:\n"
    "  run        simulate the model of CONFIG on its dataset and write an HDF5 run file\n"
    "             (default output: output.path, else runs/<name>.h5)\n"
    "  validate   check configs (and overrides) without running anything\n"
    "  bench      inference and training speed, peak memory and synaptic operations of a\n"
    "             model (no output file)\n"
    "  bench-attention  time every attention kernel alone for N = 64 .. max-n (default 4096)\n"
    "  inspect    summary, populations and tree of a run file (any HDF5 file)\n"
    "  raster     SVG spike raster of one population and recorded sample (default 0)\n"
    "  rates      SVG heatmap of every population's firing rate per timestep\n"
    "  compare    run (or reuse) a compare config's runs; write DIR/report.{html,md}, summary.{csv,json}\n"
    "             (-o DIR, default runs/<name>; docs/compare.md)\n"
    "\n"
    "options:\n"
    "  -o, --output FILE      output file (HDF5 for run, SVG for raster and rates)\n"
    "  --population P         raster: the population /nodes/P (inspect lists them)\n"
    "  --sample i             raster: which recorded sample (default 0)\n"
    "  --set key.path=value   override a config key (validated like the file), repeatable\n"
    "  --threads N            OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
    "  --dense                run synaptic layers densely (benchmark baseline)\n"
    "  --max-memory SIZE      run: refuse a config that needs more (512M, 2G, bytes); the\n"
    "                         memory available (MemAvailable) is always a limit\n"
    "  --rate-levels          bench: also run a spiking model at three firing-rate levels\n"
    "                         (with every phase or --phase infer)\n"
    "  --phase infer|train    bench: only the inference or only the training timings\n"
    "  --quiet                no progress or summary on stderr\n"
    "\n"
    "exit codes: 0 ok, 1 runtime or I/O error, 2 usage or config error,\n"
    "            130/143 interrupted by SIGINT/SIGTERM (training saves a resumable checkpoint)\n"
    "docs: docs/config.md (every config key), docs/hdf5-layout.md (the run file),\n"
    "      docs/inspect.md (inspect, raster, rates)\n";

typedef struct cli {
    const char **configs;
    int n_configs;
    const char **sets;
    int n_sets;
    const char *output;
    int threads;
    int dense, quiet, rate_levels;
    const char *phase; /* bench --phase infer|train */
    uint64_t max_memory;
} cli;

static int parse_args(int argc, char **argv, int first, cli *c) {
    c->configs = snn_xcalloc((size_t)argc, sizeof *c->configs);
    c->sets = snn_xcalloc((size_t)argc, sizeof *c->sets);
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) {
            c->output = argv[++i];
        } else if (!strcmp(a, "--set") && i + 1 < argc) {
            c->sets[c->n_sets++] = argv[++i];
        } else if (!strncmp(a, "--set=", 6)) {
            c->sets[c->n_sets++] = a + 6;
        } else if (!strcmp(a, "--threads") && i + 1 < argc) {
            if ((c->threads = snn_cli_threads(argv[++i])) < 0) return -1;
        } else if (!strcmp(a, "--max-memory") && i + 1 < argc) {
            if (snn_cli_size(a, argv[++i], &c->max_memory) != 0) return -1;
        } else if (!strcmp(a, "--dense")) {
            c->dense = 1;
        } else if (!strcmp(a, "--quiet")) {
            c->quiet = 1;
        } else if (!strcmp(a, "--rate-levels")) {
            c->rate_levels = 1;
        } else if (!strcmp(a, "--phase") && i + 1 < argc) {
            c->phase = argv[++i];
            if (strcmp(c->phase, "infer") && strcmp(c->phase, "train")) {
                fprintf(stderr, "spikesim: error: --phase takes infer or train, not '%s'\n",
                        c->phase);
                return -1;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "spikesim: error: unknown or incomplete option '%s'\n", a);
            return -1;
        } else {
            c->configs[c->n_configs++] = a;
        }
    }
    return 0;
}

static int cmd_validate(cli *c) {
    if (c->n_configs == 0) {
        fprintf(stderr, "spikesim: error: validate needs at least one CONFIG\n%s", usage);
        return SNN_EXIT_USAGE;
    }
    int bad = 0;
    for (int i = 0; i < c->n_configs; i++) {
        snn_config cfg;
        int errors = snn_config_load_file(&cfg, c->configs[i], c->sets, c->n_sets, stderr);
        if (errors)
            bad++;
        else
            printf("%s: ok\n", c->configs[i]);
        snn_config_free(&cfg);
    }
    return bad ? SNN_EXIT_USAGE : SNN_EXIT_OK;
}

/* "spikesim run ARGS" as typed (arguments with shell metacharacters single-quoted), without
 * any train.resume override, for the resume hint after an interrupt. */
static char *resume_command(int argc, char **argv) {
    char *cmd = snn_xstrdup("spikesim");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--set") && i + 1 < argc && !strncmp(argv[i + 1], "train.resume=", 13)) {
            i++;
            continue;
        }
        if (!strncmp(a, "--set=train.resume=", 19)) continue;
        bool plain = *a != '\0';
        for (const char *p = a; *p; p++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=,:+@%", *p))
                plain = false;
        char *next;
        if (plain) {
            next = snn_xasprintf("%s %s", cmd, a);
        } else {
            /* 'it'\''s' */
            char *q = snn_xstrdup("'");
            for (const char *p = a; *p; p++) {
                char *t = *p == '\'' ? snn_xasprintf("%s'\\''", q) : snn_xasprintf("%s%c", q, *p);
                free(q);
                q = t;
            }
            next = snn_xasprintf("%s %s'", cmd, q);
            free(q);
        }
        free(cmd);
        cmd = next;
    }
    return cmd;
}

static int cmd_run(cli *c, int argc, char **argv) {
    if (c->n_configs != 1) {
        fprintf(stderr, "spikesim: error: run needs exactly one CONFIG\n%s", usage);
        return SNN_EXIT_USAGE;
    }
    /* every rank loads the config and trains; rank 0 alone prints and writes */
    const bool root = snn_dist_rank() == 0;
    snn_config cfg;
    if (snn_config_load_file(&cfg, c->configs[0], c->sets, c->n_sets, root ? stderr : NULL)) {
        snn_config_free(&cfg);
        return SNN_EXIT_USAGE;
    }
    const bool quiet = c->quiet || !root;
    char *command = resume_command(argc, argv);
    snn_run_opts opts = {.out_path = c->output, .threads = c->threads, .dense = c->dense,
                         .progress = !quiet, .log = quiet ? NULL : stderr, .distributed = true,
                         .command = command, .config_path = c->configs[0],
                         .max_memory = c->max_memory};
    snn_summary s;
    snn_err err = {{0}};
    bool config_error = false;
    int rc = snn_run(&cfg, &opts, &s, &config_error, &err);
    snn_config_free(&cfg);
    free(command);
    if (rc == SNN_INTERRUPTED) {
        if (root) fprintf(stderr, "spikesim: %s\n", err.msg);
        return 128 + snn_interrupt_pending();
    }
    if (rc != SNN_OK) {
        if (root) fprintf(stderr, "spikesim: error: %s\n", err.msg);
        return config_error ? SNN_EXIT_USAGE : SNN_EXIT_RUNTIME;
    }
    return SNN_EXIT_OK;
}

static int cmd_bench(cli *c) {
    if (c->n_configs != 1) {
        fprintf(stderr, "spikesim: error: bench needs exactly one CONFIG\n%s", usage);
        return SNN_EXIT_USAGE;
    }
    snn_config cfg;
    if (snn_config_load_file(&cfg, c->configs[0], c->sets, c->n_sets, stderr)) {
        snn_config_free(&cfg);
        return SNN_EXIT_USAGE;
    }
    snn_err err = {{0}};
    const snn_bench_phase phase = !c->phase                  ? SNN_BENCH_ALL
                                  : !strcmp(c->phase, "infer") ? SNN_BENCH_INFER
                                                               : SNN_BENCH_TRAIN;
    const snn_bench_opts bo = {.threads = c->threads, .rate_levels = c->rate_levels,
                               .phase = phase};
    int rc = snn_bench(&cfg, &bo, &err);
    snn_config_free(&cfg);
    if (rc != SNN_OK) {
        fprintf(stderr, "spikesim: error: %s\n", err.msg);
        return SNN_EXIT_RUNTIME;
    }
    return SNN_EXIT_OK;
}

static int dispatch(int argc, char **argv);

/* Starts spikesim again with OPENBLAS_CORETYPE set when OpenBLAS took this CPU for an unknown one
 * and loaded its generic SSE3 kernels (snn_blas_core_for_cpu: 2-6x slower dense products).
 * OpenBLAS reads the variable once, when it loads, so a new process is the only way; it runs at
 * most once, since the variable is then set (a user's own setting always wins). The path comes
 * from readlink, not "/proc/self/exe" itself, which under valgrind names valgrind. Before MPI
 * starts, so every rank does it alike. If it fails, spikesim carries on with the slow kernels. */
static void blas_restart(char **argv) {
    const char *core = snn_blas_core_for_cpu();
    char self[4096];
    if (!core) return;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = 0;
    if (setenv("OPENBLAS_CORETYPE", core, 0) != 0) return;
    execv(self, argv);
}

int main(int argc, char **argv) {
    blas_restart(argv);
    snn_dist_init(&argc, &argv);
    int rc = dispatch(argc, argv);
    snn_dist_finalize();
    return rc;
}

static int dispatch(int argc, char **argv) {
    snn_h5_init(); /* before any other HDF5 call: see h5io.h */
    snn_interrupt_install(); /* no partial output on SIGINT/SIGTERM; training saves first */
    if (argc < 2) {
        fputs(usage, stderr);
        return SNN_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return SNN_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) {
        char blas[256];
        printf("spikesim %s\n%s\n", SNN_VERSION, snn_blas_describe(blas, sizeof blas));
        return SNN_EXIT_OK;
    }
    if (!strcmp(cmd, "bench-attention")) {
        int max_n = 4096;
        if (argc == 4 && !strcmp(argv[2], "--max-n") && atoi(argv[3]) >= 64) {
            max_n = atoi(argv[3]);
        } else if (argc != 2) {
            fprintf(stderr, "spikesim: error: bench-attention takes only --max-n N (N >= 64)\n%s",
                    usage);
            return SNN_EXIT_USAGE;
        }
        return snn_bench_attention(max_n, 16, 4, 20, stdout) == SNN_OK ? SNN_EXIT_OK : SNN_EXIT_RUNTIME;
    }
    if (!strcmp(cmd, "inspect") || !strcmp(cmd, "raster") || !strcmp(cmd, "rates"))
        return snn_inspect_cli(argc, argv, usage);
    if (!strcmp(cmd, "compare")) return snn_compare_cli(argc, argv, usage);
    cli c = {0};
    int rc;
    if (parse_args(argc, argv, 2, &c) != 0) {
        rc = SNN_EXIT_USAGE;
    } else if (!strcmp(cmd, "run")) {
        rc = cmd_run(&c, argc, argv);
    } else if (!strcmp(cmd, "bench")) {
        rc = cmd_bench(&c);
    } else if (!strcmp(cmd, "validate")) {
        rc = cmd_validate(&c);
    } else {
        fprintf(stderr, "spikesim: error: unknown command '%s'\n%s", cmd, usage);
        rc = SNN_EXIT_USAGE;
    }
    free(c.configs);
    free(c.sets);
    return rc;
}
