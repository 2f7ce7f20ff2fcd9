/* testmodel.h: a config with its data and its model, for the test binaries that run one
 * (implemented in testutil.c). Include after <cmocka.h>'s prerequisites. */
#ifndef SNN_TESTMODEL_H
#define SNN_TESTMODEL_H

#include "datasets/dataset.h"
#include "sim/config.h"
#include "sim/model.h"

typedef struct snn_test_model {
    snn_config cfg;
    snn_dataset ds;
    snn_model m;
} snn_test_model;

/* Loads t->cfg's data and builds its model (the caller loaded t->cfg); fails the test on an
 * error. */
void snn_test_model_init(snn_test_model *t);

/* Frees the model, the data and the config. */
void snn_test_model_free(snn_test_model *t);

#endif
