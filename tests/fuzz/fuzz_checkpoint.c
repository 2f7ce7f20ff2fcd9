/*
 * fuzz_checkpoint.c: libFuzzer target for the checkpoint reader (sim/h5io.c).
 *
 * Input: an HDF5 file. It is read the way model.weights and train.resume read a checkpoint:
 * snn_h5_read_parameters_ex against the tensors of the tiny model below (the model of the seed
 * checkpoints, tests/fuzz/make_corpus.sh), then snn_h5_read of every other dataset a resume
 * reads. After every input no HDF5 object may be left open (our
 * leak check: libhdf5's own leaks on malformed files are suppressed in tests/fuzz/lsan.supp,
 * since libhdf5 is not instrumented and not ours to fix; docs/fuzzing.md).
 *
 * `spikesim inspect` is not fuzzed here: its variable-length string reads (/config, attributes)
 * make libhdf5 1.10 allocate gigabytes or crash in H5HG_read within minutes on mutated files,
 * which hides everything else (tests/fuzz/known-libhdf5/README.md).
 */
#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "sim/config.h"
#include "sim/h5io.h"
#include "sim/model.h"
#include "tests/fuzz/fuzz_common.h"

/* The Makefile passes the absolute path of tests/fuzz/checkpoint.yaml, the model make_corpus.sh
 * trains for the seeds: with any other model every seed would be refused at the first tensor. */
#ifndef FUZZ_CHECKPOINT_CONFIG
#error "build with -DFUZZ_CHECKPOINT_CONFIG='\"/path/to/tests/fuzz/checkpoint.yaml\"'"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    static snn_config cfg;
    static snn_model model;
    snn_err err;
    if (!ready) {
        ready = true;
        snn_h5_init(); /* no HDF5 error stack dumps */
        if (snn_config_load_file(&cfg, FUZZ_CHECKPOINT_CONFIG, NULL, 0, stderr) != 0 ||
            snn_model_init(&model, &cfg, &err) != SNN_OK)
            abort();
    }

    fuzz_file f;
    fuzz_file_open(&f, data, size);

    snn_h5_problems all;
    (void)snn_h5_read_parameters_ex(f.path, model.tensors, model.n_tensors, &all, &err);
    snn_h5_problems_free(&all);

    static const struct { const char *path; snn_h5_type type; } resume[] = {
        {"/optimizer/m", SNN_H5_F32},
        {"/optimizer/v", SNN_H5_F32},
        {"/training/state", SNN_H5_I64},
        {"/training/best_val_accuracy", SNN_H5_F64},
        {"/training/best_parameters", SNN_H5_F32},
        {"/training/history/epoch", SNN_H5_F64},
        {"/training/history/val_accuracy", SNN_H5_F64},
    };
    for (size_t i = 0; i < sizeof resume / sizeof resume[0]; i++) {
        int rank;
        uint64_t dims[4];
        void *buf = NULL;
        if (snn_h5_read(f.path, resume[i].path, resume[i].type, &rank, dims, &buf, &err) == SNN_OK)
            free(buf);
    }

    fuzz_file_close(&f);

    ssize_t open_objects = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_objects != 0) {
        fprintf(stderr, "%zd HDF5 object(s) left open\n", open_objects);
        abort();
    }
    return 0;
}
