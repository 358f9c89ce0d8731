/* TUN/TAP device control: one queue fd at a time, thin wrappers over the
 * /dev/net/tun ioctls. Every function returns 0 (or an fd) on success and
 * -errno on failure, so the caller can name the ioctl that failed. */
#ifndef TP_DEVICE_H
#define TP_DEVICE_H

#include <net/if.h>
#include <sys/types.h>

/* Open one queue: open(path) then TUNSETIFF(name, flags). The fd is O_RDWR,
 * O_NONBLOCK and O_CLOEXEC. The kernel-chosen name (for patterns such as
 * "tp%d") is copied to name_out. Returns the fd or -errno; *failed_step
 * names the call that failed ("open" or "TUNSETIFF"). */
int tp_device_open_queue(const char *path, const char *name, unsigned flags,
                         char name_out[IFNAMSIZ], const char **failed_step);

int tp_device_set_vnet_hdr_sz(int fd, int size);
int tp_device_get_vnet_hdr_sz(int fd, int *size);

/* TUNSETOFFLOAD with `wanted`; when the kernel refuses USO (EINVAL, kernels
 * before 6.2) retry without it. *got receives the offloads in force. */
int tp_device_negotiate_offloads(int fd, unsigned wanted, unsigned *got);

int tp_device_set_queue(int fd, int attach);
int tp_device_set_persist(int fd, int on);
int tp_device_set_owner(int fd, uid_t uid);
int tp_device_set_group(int fd, gid_t gid);
int tp_device_get_features(int fd, unsigned *features);
int tp_device_get_iff(int fd, char name_out[IFNAMSIZ], unsigned *flags);

#endif
