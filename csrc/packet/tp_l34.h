/* What the offloads (split and coalesce) need of a packet's headers: an
 * IP packet (no fragment, no IPv6 extension header) with a complete TCP or
 * UDP header, located by tp_parse; and the header rewrites both do. */
#ifndef TP_L34_H
#define TP_L34_H

#include <stdint.h>

#include "tp_csum.h"
#include "tp_vnet.h"

struct tp_l34 {
    uint32_t l3, iphl, l4, l4hl;   /* offsets and lengths of the IP and L4 headers */
    uint32_t end;                  /* offset just past the IP packet */
    int v6, proto;
};

/* 0, or TP_VNET_EMALFORMED / TP_VNET_EUNSUPPORTED. l2: enum tp_l2. */
int tp_l34_parse(const uint8_t *p, uint32_t len, int l2, struct tp_l34 *o);
/* The pseudo-header sum without the length. */
uint64_t tp_l34_pseudo(const uint8_t *p, const struct tp_l34 *o);
/* Write the IP length for an L4 length (IPv4: and a fresh header checksum). */
void tp_l34_set_ip_len(uint8_t *p, const struct tp_l34 *o, uint32_t l4len);
/* The L4 checksum field's offset in the L4 header. */
int tp_l34_csum_off(int proto);

#endif
