/* worker.h - `veil run`'s loop: one consumer, one transactional producer,
 * the filter chain between them, one Kafka transaction per batch. */
#ifndef VEIL_CONNECTORS_WORKER_H
#define VEIL_CONNECTORS_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct veil_worker_opts {
        /* Stop (after committing) once every assigned partition has been
         * read to its end: for demos and batch jobs. */
        bool once;
        /* The file the config came from: SIGHUP (veil_worker_reload())
         * loads it again between batches. NULL: reloads are refused. */
        const char *config_path;
};

/* Runs until veil_worker_stop() (SIGINT/SIGTERM), --once completes, or a
 * fatal error. config must be loaded with its key. Returns 0 after a clean
 * shutdown, or a VEIL_E* code with errstr (fatal Kafka error, setup
 * failure). */
int veil_worker_run(const struct veil_config *config,
                    const struct veil_worker_opts *opts, char *errstr,
                    size_t errstr_size);

/* Asks the running worker to finish its batch, commit and return.
 * Async-signal-safe. */
void veil_worker_stop(void);

/* Asks the running worker to load its config file again after the open
 * batch: new plans from the next batch on; a file that does not load is
 * rejected (logged) and the running policy stays. Async-signal-safe. */
void veil_worker_reload(void);

#endif
