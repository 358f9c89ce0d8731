/* Build an IPv4/IPv6 socket address from raw bytes and a port. */
#ifndef TP_SOCKADDR_H
#define TP_SOCKADDR_H

#include <sys/socket.h>

/* addr: 4 bytes (AF_INET) or 16 (AF_INET6), or NULL for the wildcard;
 * port in host order. Returns the address length. */
socklen_t tp_sockaddr_make(struct sockaddr_storage *ss, int family, const unsigned char *addr,
                           unsigned port);

#endif
