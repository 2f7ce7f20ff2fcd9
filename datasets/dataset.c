/*
 * dataset.c: releasing a dataset. Kept apart from the loaders so that every way of filling an
 * snn_dataset (IDX files, synthetic images) shares one definition of what it owns.
 */
#include "datasets/dataset.h"

#include <stdlib.h>
#include <string.h>

/* Frees the three buffers and zeroes the struct, so a second call (or a call on a dataset a
 * loader left zeroed after an error) is a no-op. */
void snn_dataset_free(snn_dataset *ds) {
    if (!ds) return;
    free(ds->pixels);
    free(ds->labels);
    free(ds->index);
    memset(ds, 0, sizeof *ds);
}
