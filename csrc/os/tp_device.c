#include "tp_device.h"
#include "tp_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static int tp__ioctl(int fd, unsigned long req, void *arg)
{
    int rc;
    do {
        rc = ioctl(fd, req, arg);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

/* Scalar ioctls take their argument by value, not by pointer. */
static int tp__ioctl_val(int fd, unsigned long req, unsigned long val)
{
    int rc;
    do {
        rc = ioctl(fd, req, val);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

int tp_device_open_queue(const char *path, const char *name, unsigned flags,
                         char name_out[IFNAMSIZ], const char **failed_step)
{
    struct ifreq ifr;
    int fd, rc;

    *failed_step = "open";
    if (strlen(name) >= IFNAMSIZ)
        return -ENAMETOOLONG;
    do {
        fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;

    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, name, strlen(name));
    ifr.ifr_flags = (short)flags;
    *failed_step = "TUNSETIFF";
    rc = tp__ioctl(fd, TUNSETIFF, &ifr);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = '\0';
    *failed_step = NULL;
    return fd;
}

int tp_device_set_vnet_hdr_sz(int fd, int size)
{
    return tp__ioctl(fd, TUNSETVNETHDRSZ, &size);
}

int tp_device_get_vnet_hdr_sz(int fd, int *size)
{
    return tp__ioctl(fd, TUNGETVNETHDRSZ, size);
}

int tp_device_negotiate_offloads(int fd, unsigned wanted, unsigned *got)
{
    int rc = tp__ioctl_val(fd, TUNSETOFFLOAD, wanted);

    if (rc == -EINVAL && (wanted & (TUN_F_USO4 | TUN_F_USO6))) {
        wanted &= ~(unsigned)(TUN_F_USO4 | TUN_F_USO6);
        rc = tp__ioctl_val(fd, TUNSETOFFLOAD, wanted);
    }
    if (rc == 0)
        *got = wanted;
    return rc;
}

int tp_device_set_queue(int fd, int attach)
{
    struct ifreq ifr;

    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    return tp__ioctl(fd, TUNSETQUEUE, &ifr);
}

int tp_device_set_persist(int fd, int on)
{
    return tp__ioctl_val(fd, TUNSETPERSIST, on ? 1 : 0);
}

int tp_device_set_owner(int fd, uid_t uid)
{
    return tp__ioctl_val(fd, TUNSETOWNER, (unsigned long)uid);
}

int tp_device_set_group(int fd, gid_t gid)
{
    return tp__ioctl_val(fd, TUNSETGROUP, (unsigned long)gid);
}

int tp_device_get_features(int fd, unsigned *features)
{
    return tp__ioctl(fd, TUNGETFEATURES, features);
}

int tp_device_get_iff(int fd, char name_out[IFNAMSIZ], unsigned *flags)
{
    struct ifreq ifr;
    int rc;

    memset(&ifr, 0, sizeof(ifr));
    rc = tp__ioctl(fd, TUNGETIFF, &ifr);
    if (rc < 0)
        return rc;
    memcpy(name_out, ifr.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = '\0';
    *flags = (unsigned short)ifr.ifr_flags;
    return 0;
}
