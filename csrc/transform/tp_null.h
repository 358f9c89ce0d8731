/* The null transform: every packet passes unchanged. It measures what the
 * transform hook itself costs (the copy into room, the call, the checks). */
#ifndef TP_NULL_H
#define TP_NULL_H

#include "tunpump.h"

extern const struct tunpump_transform tp_null_transform;

#endif
