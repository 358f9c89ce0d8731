/* TUN/TAP and UDP offload constants the system headers may lack.
 *
 * The machine's headers are older than its kernel (USO arrived in 6.2), so every
 * constant tunpump uses is defined here when missing. Values are the kernel's
 * uapi values (include/uapi/linux/if_tun.h). The virtio_net_hdr values are
 * packet code's (csrc/packet/tp_vnet.h). */
#ifndef TP_COMPAT_H
#define TP_COMPAT_H

#include <linux/if_tun.h>
#include <linux/types.h>
#include <sys/ioctl.h>

#ifndef IFF_TUN
#define IFF_TUN 0x0001
#endif
#ifndef IFF_TAP
#define IFF_TAP 0x0002
#endif
#ifndef IFF_NO_PI
#define IFF_NO_PI 0x1000
#endif
#ifndef IFF_VNET_HDR
#define IFF_VNET_HDR 0x4000
#endif
#ifndef IFF_TUN_EXCL
#define IFF_TUN_EXCL 0x8000
#endif
#ifndef IFF_MULTI_QUEUE
#define IFF_MULTI_QUEUE 0x0100
#endif
#ifndef IFF_ATTACH_QUEUE
#define IFF_ATTACH_QUEUE 0x0200
#endif
#ifndef IFF_DETACH_QUEUE
#define IFF_DETACH_QUEUE 0x0400
#endif
#ifndef IFF_PERSIST
#define IFF_PERSIST 0x0800
#endif

#ifndef TUN_F_CSUM
#define TUN_F_CSUM 0x01
#endif
#ifndef TUN_F_TSO4
#define TUN_F_TSO4 0x02
#endif
#ifndef TUN_F_TSO6
#define TUN_F_TSO6 0x04
#endif
#ifndef TUN_F_TSO_ECN
#define TUN_F_TSO_ECN 0x08
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

#ifndef TUNSETIFF
#define TUNSETIFF _IOW('T', 202, int)
#endif
#ifndef TUNSETPERSIST
#define TUNSETPERSIST _IOW('T', 203, int)
#endif
#ifndef TUNSETOWNER
#define TUNSETOWNER _IOW('T', 204, int)
#endif
#ifndef TUNSETGROUP
#define TUNSETGROUP _IOW('T', 206, int)
#endif
#ifndef TUNGETFEATURES
#define TUNGETFEATURES _IOR('T', 207, unsigned int)
#endif
#ifndef TUNSETOFFLOAD
#define TUNSETOFFLOAD _IOW('T', 208, unsigned int)
#endif
#ifndef TUNGETIFF
#define TUNGETIFF _IOR('T', 210, unsigned int)
#endif
#ifndef TUNGETVNETHDRSZ
#define TUNGETVNETHDRSZ _IOR('T', 215, int)
#endif
#ifndef TUNSETVNETHDRSZ
#define TUNSETVNETHDRSZ _IOW('T', 216, int)
#endif
#ifndef TUNSETQUEUE
#define TUNSETQUEUE _IOW('T', 217, int)
#endif

/* UDP segmentation offload socket options (include/uapi/linux/udp.h). */
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#endif
