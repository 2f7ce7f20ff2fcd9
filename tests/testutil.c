/* testutil.c: see testutil.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libgen.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim/run.h"
#include "tests/testmodel.h"
#include "tests/testutil.h"

void snn_assert_allclose(const float *a, const float *b, size_t n, double atol, double rtol,
                         const char *label) {
    size_t first_bad = n;
    double max_diff = 0.0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - (double)b[i]);
        if (diff > max_diff || isnan(diff)) max_diff = diff;
        if (!(diff <= atol + rtol * fabs((double)b[i])) && first_bad == n) first_bad = i;
    }
    if (first_bad != n)
        fail_msg("%s: element %zu differs: got %.9g, expected %.9g (max |diff| %.3g, atol %g, "
                 "rtol %g)",
                 label, first_bad, (double)a[first_bad], (double)b[first_bad], max_diff, atol,
                 rtol);
}

char *snn_test_tmp_path(const char *name) {
    char *p = malloc(256);
    snprintf(p, 256, "/tmp/spikesim-test-%ld-%s", (long)getpid(), name);
    return p;
}

char *snn_test_read_file_n(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t r = fread(buf, 1, (size_t)n, f);
    buf[r] = '\0';
    fclose(f);
    if (len) *len = r;
    return buf;
}

char *snn_test_read_file(const char *path) { return snn_test_read_file_n(path, NULL); }

int snn_test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

double snn_test_attr_f64(hid_t f, const char *obj, const char *name) {
    double v = NAN;
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) fail_msg("no attribute %s on %s", name, obj);
    assert_true(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0);
    H5Aclose(a);
    return v;
}

char *snn_test_attr_str(hid_t f, const char *obj, const char *name) {
    hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) fail_msg("no attribute %s on %s", name, obj);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    char *s = NULL;
    assert_true(H5Aread(a, t, &s) >= 0);
    char *out = strdup(s);
    H5free_memory(s);
    H5Tclose(t);
    H5Aclose(a);
    return out;
}

int snn_test_remove_tree(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s", path);
    return system(cmd) == 0 ? 0 : -1;
}

static char spikesim[512];

void snn_test_cli_locate(const char *argv0) {
    char self[512];
    snprintf(self, sizeof self, "%s", argv0);
    snprintf(spikesim, sizeof spikesim, "%s/../spikesim", dirname(self));
}

int snn_test_cli_run(snn_test_cli *r, const char *fmt, ...) {
    char args[3072], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snn_test_cli_free(r);
    char *o = snn_test_tmp_path("stdout"), *e = snn_test_tmp_path("stderr");
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s </dev/null", spikesim, args, o, e);
    int st = system(cmd);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->out = snn_test_read_file(o);
    r->err = snn_test_read_file(e);
    /* The shell creates both files before it runs anything; empty strings only guard the
     * assertions against a failed fork. */
    if (!r->out) r->out = strdup("");
    if (!r->err) r->err = strdup("");
    remove(o);
    remove(e);
    free(o);
    free(e);
    return r->status;
}

void snn_test_cli_free(snn_test_cli *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

int snn_test_cli_spawn(const char *err_path, long fsize_limit, const char *fmt, ...) {
    char args[3072], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec %s %s", spikesim, args);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR), e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (null < 0 || e < 0) _exit(127);
        dup2(null, 0);
        dup2(null, 1);
        dup2(e, 2);
        /* cmocka's handlers are replaced by exec; restore what it may have ignored */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        if (fsize_limit > 0) {
            signal(SIGXFSZ, SIG_IGN); /* inherited through exec: writes fail with EFBIG */
            struct rlimit rl = {(rlim_t)fsize_limit, (rlim_t)fsize_limit};
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(127);
        }
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return (int)pid;
}

int snn_test_cli_await(int pid, const char *err_path, const char *needle, double timeout_s) {
    const struct timespec tick = {0, 10 * 1000 * 1000};
    for (double waited = 0; waited < timeout_s; waited += 0.01) {
        char *text = snn_test_read_file(err_path);
        bool found = text && strstr(text, needle);
        free(text);
        if (found) return 0;
        siginfo_t info = {0};
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid != 0) {
            /* exited: look once more (the line may have come with the exit) */
            text = snn_test_read_file(err_path);
            found = text && strstr(text, needle);
            free(text);
            return found ? 0 : -1;
        }
        nanosleep(&tick, NULL);
    }
    return -1;
}

void snn_test_cli_reap(int pid, const char *err_path, snn_test_cli *r) {
    snn_test_cli_free(r);
    int st = 0;
    assert_int_equal(waitpid((pid_t)pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 256 + WTERMSIG(st) : -1;
    r->out = strdup("");
    r->err = snn_test_read_file(err_path);
    if (!r->err) r->err = strdup("");
}

bool snn_test_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int snn_test_count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

void snn_test_model_init(snn_test_model *t) {
    snn_err err = {{0}};
    t->ds = (snn_dataset){0};
    assert_int_equal(snn_run_load_data(&t->cfg, &t->ds, &err), SNN_OK);
    assert_int_equal(snn_model_init(&t->m, &t->cfg, &err), SNN_OK);
}

void snn_test_model_free(snn_test_model *t) {
    snn_model_free(&t->m);
    snn_dataset_free(&t->ds);
    snn_config_free(&t->cfg);
}
