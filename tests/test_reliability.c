/*
 * test_reliability.c: docs/reliability.md, proved on the built binary (BUILD/spikesim) with
 * real processes and real signals:
 *   - SIGINT/SIGTERM during training save a resumable checkpoint, print how to resume and exit
 *     130/143; the resumed run ends bit for bit where an uninterrupted run ends;
 *   - a signal during a simulation, a second signal during training and SIGKILL at a random
 *     moment leave either no output or the previous complete one;
 *   - a non-finite loss or gradient stops training naming the epoch, step and tensor and keeps
 *     the last good checkpoint;
 *   - bad input of every kind in the table exits 1 or 2 with one line, writes nothing and
 *     leaves an existing output untouched; a full disk (RLIMIT_FSIZE) likewise;
 *   - a config that needs more memory than --max-memory is refused before any output exists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sim/cli.h"
#include "sim/h5io.h"
#include "sim/run.h"
#include "tests/testutil.h"

/* Three epochs of 100 steps, 0.25 s to 1 s each on one thread. The signal tests wait for the
 * end of epoch 1 on stderr and signal shortly after, so the signal lands in epoch 2 or 3
 * however fast or loaded the machine is (a slower machine only widens the window). */
static const char train_cfg[] =
    "name: rel\nseed: 3\n"
    "data: {source: synthetic, synthetic_samples: 1000}\n"
    "model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 4}\n"
    "train: {epochs: 3, batch_size: 8, val_fraction: 0.2}\n";

/* A quick simulation (no training). */
static const char sim_cfg[] =
    "name: relsim\nseed: 1\n"
    "data: {source: synthetic, synthetic_samples: 8}\n"
    "model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2}\n"
    "record: {samples: 2}\n";

static char *make_dir(const char *name) {
    char *d = snn_test_tmp_path(name);
    snn_test_remove_tree(d);
    assert_int_equal(mkdir(d, 0755), 0);
    return d;
}

static char *write_in(const char *dir, const char *name, const char *text) {
    char *p = snn_xasprintf("%s/%s", dir, name);
    assert_int_equal(snn_test_write_file(p, text, strlen(text)), 0);
    return p;
}

/* Temporary output files (".<base>.tmp.<pid>.<n>") left in dir. */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* Files in dir that are neither temporaries nor in keep (NULL-terminated list of names). */
static void assert_only_files(const char *dir, const char *const *keep) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        bool ok = false;
        for (int i = 0; keep[i]; i++) ok |= strcmp(e->d_name, keep[i]) == 0;
        if (!ok) fail_msg("unexpected file %s/%s", dir, e->d_name);
    }
    closedir(d);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* h5diff (hdf5-tools, installed by make deps) exits 0 only when the objects are equal value
 * for value. */
static bool h5_same(const char *a, const char *b, const char *obj) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "h5diff -r %s %s %s %s >/dev/null 2>&1", a, b, obj, obj);
    return system(cmd) == 0;
}

/* ---- SIGINT / SIGTERM during training --------------------------------------------------- */

/* Runs the training config uninterrupted once per process (the reference for resumes). */
static char *reference_dir(void) {
    static char *dir;
    if (dir) return dir;
    dir = make_dir("rel-ref");
    char *cfg = write_in(dir, "t.yaml", train_cfg);
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "run %s -o %s/full.h5 --threads 1 --quiet", cfg, dir);
    if (r.status != 0) fail_msg("reference run failed: %s", r.err);
    snn_test_cli_free(&r);
    free(cfg);
    return dir;
}

static void interrupt_and_resume(int signo, int delay_ms) {
    char *ref = reference_dir();
    char *dir = make_dir(signo == SIGINT ? "rel-int" : "rel-term");
    char *cfg = write_in(dir, "t.yaml", train_cfg);
    char *out = snn_xasprintf("%s/part.h5", dir), *last = snn_xasprintf("%s/part.last.h5", dir);
    char *errf = snn_xasprintf("%s/stderr", dir);
    int pid = snn_test_cli_spawn(errf, 0, "run %s -o %s --threads 1", cfg, out);
    assert_int_equal(snn_test_cli_await(pid, errf, "  epoch 1:", 300), 0);
    sleep_ms(delay_ms);
    assert_int_equal(kill(pid, signo), 0);
    snn_test_cli r = {0};
    snn_test_cli_reap(pid, errf, &r);
    if (r.status != 128 + signo) fail_msg("exit %d, expected %d; stderr:\n%s", r.status, 128 + signo, r.err);
    /* one line: what happened, where the checkpoint is, the command that resumes */
    const char *line = strstr(r.err, "spikesim: interrupted by ");
    if (!line) fail_msg("no interrupt line in:\n%s", r.err);
    assert_non_null(strstr(line, signo == SIGINT ? "SIGINT" : "SIGTERM"));
    const char *hint = strstr(line, "; resume with: spikesim ");
    assert_non_null(hint);
    assert_int_equal(snn_test_count_lines(line), 1);
    assert_true(snn_test_exists(last));
    assert_false(snn_test_exists(out));
    assert_int_equal(count_tmp_files(dir), 0);
    assert_true(snn_h5_exists(last, "/training/state"));

    /* Run exactly the printed command. */
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%.*s --quiet", (int)(strchr(hint, '\n') - hint - 24), hint + 24);
    assert_non_null(strstr(cmd, "--set train.resume="));
    snn_test_cli_run(&r, "%s", cmd);
    if (r.status != 0) fail_msg("resume failed: %s", r.err);
    /* bit for bit: the final and best parameters, optimizer state, logits, history */
    char *full = snn_xasprintf("%s/full.h5", ref), *full_last = snn_xasprintf("%s/full.last.h5", ref);
    assert_true(h5_same(full, out, "/parameters"));
    assert_true(h5_same(full, out, "/outputs/logits"));
    assert_true(h5_same(full, out, "/training/history/train_loss"));
    assert_true(h5_same(full, out, "/training/history/val_accuracy"));
    assert_true(h5_same(full_last, last, "/parameters"));
    assert_true(h5_same(full_last, last, "/optimizer/m"));
    assert_true(h5_same(full_last, last, "/optimizer/v"));
    assert_true(h5_same(full_last, last, "/training/state"));
    /* a finished run's checkpoint is not mid-epoch */
    assert_false(snn_h5_exists(last, "/training/partial"));
    snn_test_cli_free(&r);
    free(full);
    free(full_last);
    free(cfg);
    free(out);
    free(last);
    free(errf);
    snn_test_remove_tree(dir);
    free(dir);
}

static void test_sigint_during_training_saves_and_resumes_exactly(void **state) {
    (void)state;
    interrupt_and_resume(SIGINT, 40);
}

static void test_sigterm_during_training_saves_and_resumes_exactly(void **state) {
    (void)state;
    interrupt_and_resume(SIGTERM, 120);
}

/* A second signal does not wait for the checkpoint: exit at once, temporaries removed, and the
 * last checkpoint is either absent or a complete one. */
static void test_second_signal_exits_at_once_leaving_no_temporaries(void **state) {
    (void)state;
    char *dir = make_dir("rel-twice");
    char *cfg = write_in(dir, "t.yaml", train_cfg);
    char *out = snn_xasprintf("%s/x.h5", dir), *last = snn_xasprintf("%s/x.last.h5", dir);
    char *errf = snn_xasprintf("%s/stderr", dir);
    int pid = snn_test_cli_spawn(errf, 0, "run %s -o %s --threads 1", cfg, out);
    assert_int_equal(snn_test_cli_await(pid, errf, "  epoch 1:", 300), 0);
    kill(pid, SIGINT);
    kill(pid, SIGINT);
    snn_test_cli r = {0};
    snn_test_cli_reap(pid, errf, &r);
    if (r.status != 130) fail_msg("exit %d, expected 130; stderr:\n%s", r.status, r.err);
    assert_non_null(strstr(r.err, "spikesim: interrupted by SIGINT"));
    assert_false(snn_test_exists(out));
    assert_int_equal(count_tmp_files(dir), 0);
    if (snn_test_exists(last)) assert_true(snn_h5_exists(last, "/training/state"));
    snn_test_cli_free(&r);
    free(cfg);
    free(out);
    free(last);
    free(errf);
    snn_test_remove_tree(dir);
    free(dir);
}

/* SIGINT while a simulation runs: exit 130, the temporary output is removed, the previous
 * output of that name is untouched. */
static void test_sigint_during_simulation_keeps_previous_output(void **state) {
    (void)state;
    char *dir = make_dir("rel-sim");
    char *cfg = write_in(dir, "s.yaml",
                         "name: relsim\nseed: 1\n"
                         "data: {source: synthetic, synthetic_samples: 400000}\n"
                         "model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 1, "
                         "mlp_ratio: 2, timesteps: 4}\n");
    char *out = write_in(dir, "s.h5", "previous complete output\n");
    char *errf = snn_xasprintf("%s/stderr", dir);
    int pid = snn_test_cli_spawn(errf, 0, "run %s -o %s --threads 1", cfg, out);
    assert_int_equal(snn_test_cli_await(pid, errf, "spikesim: relsim", 300), 0);
    sleep_ms(300);
    assert_true(count_tmp_files(dir) == 1); /* the run file being written */
    assert_int_equal(kill(pid, SIGINT), 0);
    snn_test_cli r = {0};
    snn_test_cli_reap(pid, errf, &r);
    if (r.status != 130) fail_msg("exit %d, expected 130; stderr:\n%s", r.status, r.err);
    assert_non_null(strstr(r.err, "spikesim: interrupted by SIGINT; no output written\n"));
    assert_int_equal(count_tmp_files(dir), 0);
    char *text = snn_test_read_file(out);
    assert_string_equal(text, "previous complete output\n");
    free(text);
    snn_test_cli_free(&r);
    free(cfg);
    free(out);
    free(errf);
    snn_test_remove_tree(dir);
    free(dir);
}

/* SIGKILL cannot be caught: the output is the previous complete file, the last checkpoint is
 * absent or complete, and the only debris is temporaries named .<base>.tmp.<pid>.<n>. */
static void test_sigkill_leaves_previous_output_or_nothing(void **state) {
    (void)state;
    char *dir = make_dir("rel-kill");
    char *cfg = write_in(dir, "t.yaml", train_cfg);
    char *out = write_in(dir, "k.h5", "previous complete output\n");
    char *last = snn_xasprintf("%s/k.last.h5", dir), *errf = snn_xasprintf("%s/stderr", dir);
    srand((unsigned)getpid());
    for (int round = 0; round < 3; round++) {
        int pid = snn_test_cli_spawn(errf, 0, "run %s -o %s --threads 1", cfg, out);
        assert_int_equal(snn_test_cli_await(pid, errf, "  training:", 300), 0);
        sleep_ms(rand() % 1200);
        kill(pid, SIGKILL);
        snn_test_cli r = {0};
        snn_test_cli_reap(pid, errf, &r);
        snn_test_cli_free(&r);
        char *text = snn_test_read_file(out);
        /* the run may have finished before the kill: then it is a complete HDF5 file */
        if (strcmp(text, "previous complete output\n") != 0) assert_true(snn_h5_exists(out, "/outputs/logits"));
        free(text);
        if (snn_test_exists(last)) assert_true(snn_h5_exists(last, "/training/state"));
        char *tmp_prefix = snn_xasprintf(".k.");
        DIR *d = opendir(dir);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] != '.' || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            /* ".k.h5.tmp.<pid>.<n>", ".k.last.h5.tmp.<pid>.<n>", ".k.best.h5.tmp.<pid>.<n>" */
            char *want = snn_xasprintf(".tmp.%d.", pid);
            if (strncmp(e->d_name, tmp_prefix, strlen(tmp_prefix)) != 0 || !strstr(e->d_name, want))
                fail_msg("unexpected file %s", e->d_name);
            free(want);
            char *p = snn_xasprintf("%s/%s", dir, e->d_name);
            remove(p);
            free(p);
        }
        closedir(d);
        free(tmp_prefix);
        assert_only_files(dir, (const char *const[]){"t.yaml", "k.h5", "k.last.h5", "k.best.h5", "stderr", NULL});
        /* start the next round from the previous output again */
        assert_int_equal(snn_test_write_file(out, "previous complete output\n", 25), 0);
    }
    free(cfg);
    free(out);
    free(last);
    free(errf);
    snn_test_remove_tree(dir);
    free(dir);
}

/* ---- divergence ----------------------------------------------------------------------------- */

/* One good epoch, then the second with a learning rate that overflows the parameters: the run
 * stops naming the epoch, the step and a tensor, writes no run file, and the first epoch's
 * checkpoint is kept byte for byte. */
static void test_divergence_names_tensor_and_keeps_last_good_checkpoint(void **state) {
    (void)state;
    char *dir = make_dir("rel-nan");
    char *cfg = write_in(dir, "t.yaml", train_cfg);
    char *out = snn_xasprintf("%s/d.h5", dir), *last = snn_xasprintf("%s/d.last.h5", dir);
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "run %s -o %s --threads 1 --quiet --set train.epochs=1", cfg, out);
    if (r.status != 0) fail_msg("first epoch failed: %s", r.err);
    remove(out);
    size_t n_before, n_after;
    char *before = snn_test_read_file_n(last, &n_before);
    assert_non_null(before);
    snn_test_cli_run(&r, "run %s -o %s --threads 1 --quiet --set train.resume=%s --set train.lr=3e38",
                     cfg, out, last);
    assert_int_equal(r.status, 1);
    assert_int_equal(snn_test_count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "spikesim: error: training diverged at epoch 2 step "));
    const char *name = strstr(r.err, "first non-finite gradient in ");
    if (!name) fail_msg("no tensor named: %s", r.err);
    /* a state_dict name of this model (spec section 4): a tensor of its checkpoint */
    name += strlen("first non-finite gradient in ");
    char *obj = snn_xasprintf("/parameters/%.*s", (int)strcspn(name, ";"), name);
    if (!snn_h5_exists(last, obj)) fail_msg("%s is not a tensor of the checkpoint", obj);
    free(obj);
    char *kept = snn_xasprintf("last good checkpoint %s (after epoch 1)", last);
    assert_non_null(strstr(r.err, kept));
    free(kept);
    assert_false(snn_test_exists(out));
    char *after = snn_test_read_file_n(last, &n_after);
    assert_int_equal(n_before, n_after);
    assert_memory_equal(before, after, n_before);
    assert_int_equal(count_tmp_files(dir), 0);
    free(before);
    free(after);
    snn_test_cli_free(&r);
    free(cfg);
    free(out);
    free(last);
    snn_test_remove_tree(dir);
    free(dir);
}


/* ---- bad input: the table of docs/reliability.md ------------------------------------------ */

/* Copies the run file src to dst and edits /parameters/head.weight: "rename" it to
 * head.weights, "shape" replaces it by a [3, 16] float32, "dtype" by a float64 of the same
 * shape, "nan"/"inf" write a non-finite value into it. */
static void bad_checkpoint(const char *src, const char *dst, const char *how) {
    size_t n;
    char *bytes = snn_test_read_file_n(src, &n);
    assert_non_null(bytes);
    assert_int_equal(snn_test_write_file(dst, bytes, n), 0);
    free(bytes);
    hid_t f = H5Fopen(dst, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    const char *w = "/parameters/head.weight";
    if (!strcmp(how, "rename")) {
        assert_true(H5Lmove(f, w, f, "/parameters/head.weights", H5P_DEFAULT, H5P_DEFAULT) >= 0);
    } else if (!strcmp(how, "nan") || !strcmp(how, "inf")) {
        hid_t d = H5Dopen2(f, w, H5P_DEFAULT);
        hid_t sp = H5Dget_space(d);
        hssize_t count = H5Sget_simple_extent_npoints(sp);
        float *v = calloc((size_t)count, sizeof *v);
        assert_true(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        v[count / 2] = !strcmp(how, "nan") ? NAN : INFINITY;
        assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        free(v);
        H5Sclose(sp);
        H5Dclose(d);
    } else {
        hid_t d = H5Dopen2(f, w, H5P_DEFAULT);
        hid_t sp = H5Dget_space(d);
        hsize_t dims[2];
        assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), 2);
        H5Sclose(sp);
        H5Dclose(d);
        assert_true(H5Ldelete(f, w, H5P_DEFAULT) >= 0);
        bool shape = !strcmp(how, "shape");
        if (shape) dims[0] = 3;
        sp = H5Screate_simple(2, dims, NULL);
        d = H5Dcreate2(f, w, shape ? H5T_IEEE_F32LE : H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                       H5P_DEFAULT);
        assert_true(d >= 0);
        H5Sclose(sp);
        H5Dclose(d);
    }
    H5Fclose(f);
}

typedef struct bad_case {
    const char *what;       /* the row of the table */
    const char *cfg_text;   /* the config file, or NULL for sim_cfg */
    const char *args;       /* after "run CFG -o OUT", '@' for the scratch directory */
    int status;
    const char *says;       /* in the one line */
    long fsize_limit;
} bad_case;

static const bad_case bad_cases[] = {
    {"malformed YAML", "model: [1, 2\n", "", 2, "error: ", 0},
    {"unknown key", "name: x\nmodle: {dim: 16}\n", "", 2, "unknown key 'modle'", 0},
    {"wrong type", NULL, "--set seed=abc", 2, "seed", 0},
    {"impossible shape", NULL, "--set model.heads=3", 2, "divisible by model.heads", 0},
    {"missing dataset", NULL, "--set data.source=idx --set data.path=@/nothing-here", 1,
     "nothing-here", 0},
    {"corrupt dataset", NULL, "--set data.source=idx --set data.path=@/corrupt", 1, "bad magic", 0},
    {"checkpoint missing", NULL, "--set model.weights=@/none.h5", 1, "none.h5", 0},
    {"checkpoint not HDF5", NULL, "--set model.weights=@/t.yaml", 1, "not an HDF5 file", 0},
    {"checkpoint wrong name", NULL, "--set model.weights=@/rename.h5", 1, "missing tensor head.weight", 0},
    {"checkpoint wrong shape", NULL, "--set model.weights=@/shape.h5", 1, "head.weight has shape [3, 16]", 0},
    {"checkpoint wrong dtype", NULL, "--set model.weights=@/dtype.h5", 1, "head.weight is float64", 0},
    {"checkpoint NaN weight", NULL, "--set model.weights=@/nan.h5", 1, "head.weight holds a non-finite value", 0},
    {"checkpoint infinite weight", NULL, "--set model.weights=@/inf.h5", 1, "head.weight holds a non-finite value", 0},
    {"full disk (file size limit)", NULL, "", 1, "File too large", 4096},
    {"memory over --max-memory", NULL, "--max-memory 1K", 1, "--max-memory is 1 KiB", 0},
    {"memory over MemAvailable", NULL, "--set data.synthetic_samples=100000000000", 1,
     "available memory (MemAvailable) is", 0},
};

static void test_bad_input_exits_with_one_line_and_loses_nothing(void **state) {
    (void)state;
    char *dir = make_dir("rel-bad");
    char *good = write_in(dir, "t.yaml", sim_cfg);
    char *out = snn_xasprintf("%s/out.h5", dir), *errf = snn_xasprintf("%s/stderr", dir);
    snn_test_cli r = {0};
    snn_test_cli_run(&r, "run %s -o %s --quiet", good, out);
    if (r.status != 0) fail_msg("good run failed: %s", r.err);
    char *cdir = snn_xasprintf("%s/corrupt", dir);
    assert_int_equal(mkdir(cdir, 0755), 0);
    free(write_in(cdir, "t10k-images-idx3-ubyte", "this is not an IDX file\n"));
    free(write_in(cdir, "t10k-labels-idx1-ubyte", "nor this\n"));
    free(cdir);
    static const char *const edits[] = {"rename", "shape", "dtype", "nan", "inf"};
    for (int i = 0; i < 5; i++) {
        char *p = snn_xasprintf("%s/%s.h5", dir, edits[i]);
        bad_checkpoint(out, p, edits[i]);
        free(p);
    }
    size_t n_before;
    char *before = snn_test_read_file_n(out, &n_before);
    struct stat st_before;
    assert_int_equal(stat(out, &st_before), 0);

    for (size_t c = 0; c < sizeof bad_cases / sizeof *bad_cases; c++) {
        const bad_case *b = &bad_cases[c];
        char *cfg = b->cfg_text ? write_in(dir, "bad.yaml", b->cfg_text) : strdup(good);
        char args[1024] = "";
        for (const char *a = b->args; *a; a++) { /* '@' stands for the scratch directory */
            size_t k = strlen(args);
            if (*a == '@') snprintf(args + k, sizeof args - k, "%s", dir);
            else snprintf(args + k, sizeof args - k, "%c", *a);
        }
        int pid = snn_test_cli_spawn(errf, b->fsize_limit, "run %s -o %s --quiet %s", cfg, out, args);
        snn_test_cli_reap(pid, errf, &r);
        if (r.status != b->status || snn_test_count_lines(r.err) != 1 || !strstr(r.err, b->says))
            fail_msg("%s: exit %d (expected %d), stderr (expected one line with \"%s\"):\n%s", b->what,
                     r.status, b->status, b->says, r.err);
        assert_int_equal(count_tmp_files(dir), 0);
        size_t n_after;
        char *after = snn_test_read_file_n(out, &n_after);
        struct stat st_after;
        assert_int_equal(stat(out, &st_after), 0);
        if (n_after != n_before || memcmp(before, after, n_before) != 0 ||
            st_after.st_ino != st_before.st_ino || st_after.st_mtime != st_before.st_mtime)
            fail_msg("%s: the existing output was changed", b->what);
        free(after);
        free(cfg);
    }
    /* a text output (SVG) on a full disk: exit 1, the previous SVG kept, no temporary */
    char *svg = write_in(dir, "r.svg", "<svg/>\n");
    /* 1 KiB: room for the error line on stderr (the limit applies to it too), not for the
     * heatmap (about 8 KiB) */
    int pid = snn_test_cli_spawn(errf, 1024, "rates %s -o %s", out, svg);
    snn_test_cli_reap(pid, errf, &r);
    if (r.status != 1 || snn_test_count_lines(r.err) != 1 || !strstr(r.err, "r.svg: cannot write: File too large"))
        fail_msg("rates on a full disk: exit %d, stderr:\n%s", r.status, r.err);
    char *svg_text = snn_test_read_file(svg);
    assert_string_equal(svg_text, "<svg/>\n");
    assert_int_equal(count_tmp_files(dir), 0);
    free(svg_text);
    free(svg);
    /* unwritable destinations: exit 1, one line, nothing created */
    snn_test_cli_run(&r, "run %s -o %s/no/such/dir/x.h5 --quiet", good, dir);
    assert_int_equal(r.status, 1);
    assert_int_equal(snn_test_count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "cannot create output file: No such file or directory"));
    snn_test_cli_run(&r, "run %s -o %s --quiet", good, dir);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "cannot create output file: Is a directory"));
    snn_test_cli_free(&r);
    free(before);
    free(good);
    free(out);
    free(errf);
    snn_test_remove_tree(dir);
    free(dir);
}

/* --max-memory's SIZE and the figures of the refusal. */
static void test_sizes_parse_and_print_in_binary_units(void **state) {
    (void)state;
    uint64_t b = 0;
    assert_int_equal(snn_cli_size("--max-memory", "512M", &b), 0);
    assert_true(b == 512ull << 20);
    assert_int_equal(snn_cli_size("--max-memory", "2G", &b), 0);
    assert_true(b == 2ull << 30);
    assert_int_equal(snn_cli_size("--max-memory", "1.5GiB", &b), 0);
    assert_true(b == 3ull << 29);
    assert_int_equal(snn_cli_size("--max-memory", "4096", &b), 0);
    assert_true(b == 4096);
    b = 7;
    assert_int_equal(snn_cli_size("--max-memory", "12Q", &b), -1);
    assert_int_equal(snn_cli_size("--max-memory", "0", &b), -1);
    assert_int_equal(snn_cli_size("--max-memory", "", &b), -1);
    assert_int_equal(snn_cli_size("--max-memory", "-1G", &b), -1);
    assert_true(b == 7); /* untouched on error */
    char buf[32];
    snn_format_bytes(512, buf, sizeof buf);
    assert_string_equal(buf, "512 bytes");
    snn_format_bytes(1024, buf, sizeof buf);
    assert_string_equal(buf, "1 KiB");
    snn_format_bytes(92484403, buf, sizeof buf);
    assert_string_equal(buf, "88.2 MiB");
    snn_format_bytes(3ull << 29, buf, sizeof buf);
    assert_string_equal(buf, "1.5 GiB");
}

int main(int argc, char **argv) {
    (void)argc;
    snn_test_cli_locate(argv[0]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigint_during_training_saves_and_resumes_exactly),
        cmocka_unit_test(test_sigterm_during_training_saves_and_resumes_exactly),
        cmocka_unit_test(test_second_signal_exits_at_once_leaving_no_temporaries),
        cmocka_unit_test(test_sigint_during_simulation_keeps_previous_output),
        cmocka_unit_test(test_sigkill_leaves_previous_output_or_nothing),
        cmocka_unit_test(test_divergence_names_tensor_and_keeps_last_good_checkpoint),
        cmocka_unit_test(test_bad_input_exits_with_one_line_and_loses_nothing),
        cmocka_unit_test(test_sizes_parse_and_print_in_binary_units),
    };
    int rc = cmocka_run_group_tests_name("reliability", tests, NULL, NULL);
    char *ref = snn_test_tmp_path("rel-ref");
    snn_test_remove_tree(ref);
    free(ref);
    return rc;
}
