/* textout.c: see textout.h (moved here from inspect.c so that compare.c shares them). */
#include "sim/textout.h"
#include "sim/interrupt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void snn_xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            /* Control characters are not allowed in XML 1.0. */
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n') fputc(*s, f);
            break;
        }
    }
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int snn_write_file_atomic(const char *path, const char *data, size_t n, snn_err *err) {
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? snn_xstrdup(".") : slash == path ? snn_xstrdup("/")
                                                          : snn_xasprintf("%.*s", (int)(slash - path), path);
    static unsigned counter;
    char *tmp = snn_xasprintf("%s/.%s.tmp.%ld.%u", dir, base_name(path), (long)getpid(), counter++);
    int rc = SNN_ERR;
    snn_interrupt_track(tmp); /* a signal from now on removes it (interrupt.h) */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        snn_err_set(err, "%s: cannot create output file: %s", path, strerror(errno));
        goto done;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snn_err_set(err, "%s: cannot write: %s", path, strerror(w < 0 ? errno : EIO));
            close(fd);
            unlink(tmp);
            goto done;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        snn_err_set(err, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        snn_err_set(err, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    int dfd = open(dir, O_RDONLY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    rc = SNN_OK;
done:
    snn_interrupt_untrack(tmp);
    free(tmp);
    free(dir);
    return rc;
}

