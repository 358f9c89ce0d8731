# cython: language_level=3
# tunpump's public C API for transforms (tunpump.h), for Cython:
#     from tunpump cimport tunpump   # with include_dirs=[tunpump.get_include()]
# or `cdef extern from "tunpump.h"` through this file. ABI version 2.

from libc.stdint cimport uint8_t, uint16_t, int16_t, uint32_t, int32_t


cdef extern from "<sys/socket.h>":
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass


cdef extern from "tunpump.h" nogil:
    enum:
        TUNPUMP_TRANSFORM_ABI
        TUNPUMP_MIN_HEADROOM
        TUNPUMP_MIN_TAILROOM
        TUNPUMP_MAX_PACKET
        TUNPUMP_CONTROL_MAX
        TUNPUMP_MAX_DROP_REASONS
        TUNPUMP_NEEDS_SEGMENTS
        TUNPUMP_UNKNOWN_SOURCES
        TUNPUMP_AUTHENTICATED
        TUNPUMP_IN_PLACE_TO_DEVICE
        TUNPUMP_GATHER_TO_ENDPOINT
        TUNPUMP_ALL_FLAGS
    const char *TUNPUMP_TRANSFORM_CAPSULE

    enum tunpump_dir:
        TUNPUMP_DIR_TO_ENDPOINT
        TUNPUMP_DIR_TO_DEVICE

    enum tunpump_outcome:
        TUNPUMP_PASS
        TUNPUMP_DROP
        TUNPUMP_TO_PYTHON

    struct tunpump_pkt:
        uint8_t *data
        uint32_t len
        uint32_t headroom
        uint32_t tailroom
        uint16_t queue
        int16_t peer
        int32_t flow
        uint8_t gso
        uint8_t outcome
        uint16_t gso_size
        const sockaddr *src
        socklen_t src_len
        uint8_t drop_reason
        uint8_t roam
        const uint8_t *head
        uint8_t *out
        uint32_t head_len
        uint32_t out_size

    struct tunpump_transform_ops:
        uint32_t abi
        uint32_t flags
        const char *name
        int (*create)(const void *config, size_t config_len, int queue, int nqueues, void **state)
        void (*destroy)(void *state)
        void (*batch)(void *state, tunpump_dir dir, tunpump_pkt *pkts, unsigned n)
        void (*control)(void *state, const uint8_t *msg, size_t len)
        const char *const *drop_reasons

    struct tunpump_transform:
        const tunpump_transform_ops *ops
        const void *config
        size_t config_len
