/* A bounded UDP load generator and sink, for the bench: many datagrams per
 * system call (sendmmsg / recvmmsg), no Python per packet. */
#ifndef TP_TRAFFIC_H
#define TP_TRAFFIC_H

#include <stdint.h>

struct tp_traffic_result {
    uint64_t packets;
    uint64_t bytes;
    uint64_t calls;
    double seconds;     /* from the first to the last packet (sink) or of sending (source) */
};

/* Send up to `count` datagrams of `size` bytes to addr:port (family
 * AF_INET/AF_INET6, addr 4 or 16 bytes), stopping after `seconds`. With
 * nports > 1, datagram i goes to port + i % nports: that many flows. */
int tp_udp_source(int family, const unsigned char *addr, unsigned port, unsigned nports, unsigned size,
                  uint64_t count, double seconds, struct tp_traffic_result *out);

/* Count datagrams arriving on the bound UDP socket fd until `seconds` pass or
 * nothing came for `idle` seconds after the first one. The caller binds (so
 * it knows when the sink is ready) and closes. */
int tp_udp_sink(int fd, double seconds, double idle, struct tp_traffic_result *out);

#endif
