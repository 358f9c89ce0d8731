/* Flows: the key parsed from a packet (tp_flow_key.h) and a worker's table
 * of them (tp_flow_table.h). One include for the callers that use both. */
#ifndef TP_FLOW_H
#define TP_FLOW_H

#include "tp_flow_key.h"
#include "tp_flow_table.h"

#endif
