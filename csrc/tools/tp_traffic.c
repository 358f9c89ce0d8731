#define _GNU_SOURCE
#include "tp_traffic.h"
#include "tp_sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TP__TBATCH 64

static double tp__now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int tp_udp_source(int family, const unsigned char *addr, unsigned port, unsigned nports, unsigned size,
                  uint64_t count, double seconds, struct tp_traffic_result *out)
{
    struct sockaddr_storage to[TP__TBATCH];
    socklen_t tolen = 0;
    struct mmsghdr msgs[TP__TBATCH];
    struct iovec iov;
    unsigned char *payload;
    double start, end;
    int fd, buf = 4 << 20;

    memset(out, 0, sizeof(*out));
    if (size < 1 || size > 65507 || nports < 1 || port + nports - 1 > 65535)
        return -EINVAL;
    for (int i = 0; i < TP__TBATCH; i++)
        tolen = tp_sockaddr_make(&to[i], family, addr, port);
    payload = malloc(size);
    if (!payload)
        return -ENOMEM;
    for (unsigned i = 0; i < size; i++)
        payload[i] = (unsigned char)(i * 7);
    fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        free(payload);
        return -errno;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    iov.iov_base = payload;
    iov.iov_len = size;
    memset(msgs, 0, sizeof(msgs));
    for (int i = 0; i < TP__TBATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to[i];
        msgs[i].msg_hdr.msg_namelen = tolen;
    }
    start = tp__now();
    end = start + seconds;
    while (out->packets < count) {
        uint64_t left = count - out->packets;
        if (nports > 1) {
            for (int i = 0; i < TP__TBATCH; i++) {
                uint16_t p = htons((uint16_t)(port + (out->packets + (uint64_t)i) % nports));
                if (family == AF_INET)
                    ((struct sockaddr_in *)&to[i])->sin_port = p;
                else
                    ((struct sockaddr_in6 *)&to[i])->sin6_port = p;
            }
        }
        int n = sendmmsg(fd, msgs, left < TP__TBATCH ? (unsigned)left : TP__TBATCH, 0);
        out->calls++;
        if (n < 0) {
            if (errno == EINTR || errno == ENOBUFS || errno == ECONNREFUSED)
                continue;   /* a full queue or an ICMP error: keep going until the bounds */
            break;
        }
        out->packets += (uint64_t)n;
        out->bytes += (uint64_t)n * size;
        if ((out->calls & 15) == 0 && tp__now() >= end)
            break;
    }
    out->seconds = tp__now() - start;
    close(fd);
    free(payload);
    return 0;
}

int tp_udp_sink(int fd, double seconds, double idle, struct tp_traffic_result *out)
{
    struct mmsghdr msgs[TP__TBATCH];
    struct iovec iov[TP__TBATCH];
    unsigned char *bufs;
    double start = tp__now(), first = 0, last = 0;
    int buf = 16 << 20;

    memset(out, 0, sizeof(*out));
    bufs = malloc((size_t)TP__TBATCH * 65536);
    if (!bufs)
        return -ENOMEM;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    for (;;) {
        double now = tp__now();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        if (now - start >= seconds || (first > 0 && now - last >= idle))
            break;
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        memset(msgs, 0, sizeof(msgs));
        for (int i = 0; i < TP__TBATCH; i++) {
            iov[i].iov_base = bufs + (size_t)i * 65536;
            iov[i].iov_len = 65536;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(fd, msgs, TP__TBATCH, MSG_DONTWAIT, NULL);
        out->calls++;
        if (n <= 0)
            continue;
        last = tp__now();
        if (first == 0)
            first = last;
        out->packets += (uint64_t)n;
        for (int i = 0; i < n; i++)
            out->bytes += msgs[i].msg_len;
    }
    out->seconds = first > 0 ? last - first : 0;
    free(bufs);
    return 0;
}
