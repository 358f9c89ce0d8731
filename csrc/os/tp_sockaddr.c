#include "tp_sockaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

socklen_t tp_sockaddr_make(struct sockaddr_storage *ss, int family, const unsigned char *addr,
                           unsigned port)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *s = (void *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons((uint16_t)port);
        if (addr)
            memcpy(&s->sin_addr, addr, 4);
        return sizeof(*s);
    }
    struct sockaddr_in6 *s6 = (void *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    if (addr)
        memcpy(&s6->sin6_addr, addr, 16);
    return sizeof(*s6);
}
