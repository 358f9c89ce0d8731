#define _GNU_SOURCE
#include "tp_netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int tp_netns_open(const char *name_or_path)
{
    char path[4096];
    int fd;

    if (strchr(name_or_path, '/'))
        snprintf(path, sizeof(path), "%s", name_or_path);
    else
        snprintf(path, sizeof(path), "/run/netns/%s", name_or_path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int tp_netns_enter(int ns_fd, int *saved)
{
    /* thread-self: /proc/self would name the main thread's namespace. */
    int cur = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

    if (cur < 0)
        return -errno;
    if (setns(ns_fd, CLONE_NEWNET) < 0) {
        int err = errno;
        close(cur);
        return -err;
    }
    *saved = cur;
    return 0;
}

int tp_netns_restore(int saved)
{
    int rc = setns(saved, CLONE_NEWNET) < 0 ? -errno : 0;

    close(saved);
    return rc;
}
