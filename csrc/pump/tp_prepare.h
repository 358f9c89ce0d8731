/* Batch preparation, between a read and a write: classify (device ->
 * endpoint, with the control plane on), split super-packets a sink cannot
 * take, and plan the device writes (coalescing where the device takes
 * super-packets). Not public. */
#ifndef TP_PREPARE_H
#define TP_PREPARE_H

#include "tp_batch.h"
#include "tp_ctl_worker.h"

/* What a device lets us build by coalescing (TP_GRO_*). */
unsigned tp__gro_what(const struct tp_fmt *dst);

/* Prepare d (just read in direction dir) for its sink: classify (ctl: each
 * packet first; NULL: no control plane in this direction), split, run the
 * transform (d->xf), plan the device writes. */
void tp__prepare(struct tp__dir *d, enum tp_dir dir, struct tp_dir_stats *st, struct tp__ctl *ctl);

#endif
