/*
 * textout.h: small shared helpers for the text outputs (SVG, HTML, CSV, JSON, Markdown) of
 * `spikesim raster`, `rates` and `compare`: atomic file writes and XML escaping.
 */
#ifndef SNN_TEXTOUT_H
#define SNN_TEXTOUT_H

#include <stddef.h>
#include <stdio.h>

#include "sim/util.h"

/* Writes data to path atomically: a temporary file in the same directory (same filesystem,
 * so rename is atomic), fsync, rename, fsync of the directory. On failure no file is left and
 * an existing file at path is untouched. Errors: "<path>: cannot create output file: REASON",
 * "<path>: cannot write: REASON". */
int snn_write_file_atomic(const char *path, const char *data, size_t n, snn_err *err);

/* Writes s to f with &, <, >, " and ' escaped; control characters other than tab and newline
 * (not allowed in XML 1.0) are dropped. */
void snn_xml_text(FILE *f, const char *s);

#endif
