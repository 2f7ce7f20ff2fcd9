/* fuzz_common.c: see fuzz_common.h. */
#include "tests/fuzz/fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void fuzz_file_open(fuzz_file *f, const uint8_t *data, size_t size) {
    const char *dir = getenv("FUZZ_TMPDIR");
    if (!dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    /* The pid tells whose file it is when a crash leaves one behind. */
    snprintf(f->path, sizeof f->path, "%s/spikesim-fuzz-%ld-XXXXXX", dir, (long)getpid());
    f->fd = mkstemp(f->path);
    if (f->fd < 0) {
        perror(f->path);
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(f->fd, data + done, size - done);
        if (w <= 0) {
            perror(f->path);
            abort();
        }
        done += (size_t)w;
    }
}

void fuzz_file_close(fuzz_file *f) {
    close(f->fd);
    unlink(f->path);
    f->fd = -1;
}
