# cython: language_level=3
# The C API, declared once (from csrc/*/*.h) for every Cython module:
# tunpump/_core.pyx (the library's binding) and tunpump/bench/_tools.pyx (the
# bench's loops). Sizes and limits are C's names, never literals repeated here.

from libc.stdint cimport uint8_t, uint16_t, int16_t, uint32_t, int32_t, int64_t, uint64_t


cdef extern from "<net/if.h>":
    enum:
        C_IFNAMSIZ "IFNAMSIZ"


cdef extern from "tp_compat.h":
    enum:
        IFF_TUN, IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_TUN_EXCL, IFF_MULTI_QUEUE
        IFF_PERSIST, IFF_ATTACH_QUEUE, IFF_DETACH_QUEUE
        TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_USO4, TUN_F_USO6


cdef extern from "tp_device.h":
    int tp_device_open_queue(const char *path, const char *name, unsigned flags,
                             char *name_out, const char **failed_step) nogil
    int tp_device_set_vnet_hdr_sz(int fd, int size) nogil
    int tp_device_get_vnet_hdr_sz(int fd, int *size) nogil
    int tp_device_negotiate_offloads(int fd, unsigned wanted, unsigned *got) nogil
    int tp_device_set_queue(int fd, int attach) nogil
    int tp_device_set_persist(int fd, int on) nogil
    int tp_device_set_owner(int fd, unsigned uid) nogil
    int tp_device_set_group(int fd, unsigned gid) nogil
    int tp_device_get_features(int fd, unsigned *features) nogil
    int tp_device_get_iff(int fd, char *name_out, unsigned *flags) nogil


cdef extern from "tp_netns.h":
    int tp_netns_open(const char *name_or_path) nogil
    int tp_netns_enter(int ns_fd, int *saved) nogil
    int tp_netns_restore(int saved) nogil


cdef extern from "tp_flow.h":
    enum:
        TP_FLOW_TABLE_MAX
    enum tp_flow_class:
        TP_FLOW_IP, TP_FLOW_FRAGMENT, TP_FLOW_ARP, TP_FLOW_ND, TP_FLOW_OTHER, TP_FLOW_UNPARSED
    struct tp_flow_key:
        uint8_t cls
        uint8_t ip_version
        uint8_t proto
        uint16_t sport, dport
        uint16_t vlan
        uint16_t ethertype
        uint8_t src[16]
        uint8_t dst[16]
    enum tp_verdict:
        TP_VERDICT_NONE, TP_VERDICT_FORWARD, TP_VERDICT_DROP, TP_VERDICT_PUNT, TP_VERDICT_ROUTE
    struct tp_flow:
        pass
    struct tp_flow_table:
        uint32_t count
    void tp_flow_parse(const uint8_t *p, uint32_t len, int l2, tp_flow_key *k) nogil
    uint32_t tp_flow_hash(const tp_flow_key *k) nogil
    int tp_flow_table_init(tp_flow_table *t, uint32_t cap) nogil
    void tp_flow_table_free(tp_flow_table *t) nogil
    int32_t tp_flow_lookup(tp_flow_table *t, const tp_flow_key *k, uint32_t hash) nogil
    int32_t tp_flow_insert(tp_flow_table *t, const tp_flow_key *k, uint32_t hash, int64_t now,
                           tp_flow *old, int32_t *evicted) nogil
    void tp_flow_touch(tp_flow_table *t, int32_t i) nogil


cdef extern from "tunpump.h":
    # The public transform ABI (tunpump/include/tunpump.h): what the binding checks.
    enum:
        TUNPUMP_TRANSFORM_ABI, TUNPUMP_CONTROL_MAX, TUNPUMP_NEEDS_SEGMENTS, TUNPUMP_UNKNOWN_SOURCES
        TUNPUMP_AUTHENTICATED, TUNPUMP_IN_PLACE_TO_DEVICE, TUNPUMP_GATHER_TO_ENDPOINT, TUNPUMP_ALL_FLAGS, TUNPUMP_MAX_DROP_REASONS
        TUNPUMP_MIN_HEADROOM, TUNPUMP_MIN_TAILROOM
    const char *TUNPUMP_TRANSFORM_CAPSULE
    struct tunpump_transform_ops:
        uint32_t abi
        uint32_t flags
        const char *name
        void *batch
        void *control
        const char **drop_reasons
    struct tunpump_transform:
        const tunpump_transform_ops *ops
        const void *config
        size_t config_len


cdef extern from "tp_null.h":
    const tunpump_transform tp_null_transform


cdef extern from "tp_pump.h":
    enum:
        TP_MAX_BATCH, TP_MAX_WORKERS, TP_MAX_PEERS, TP_MAX_PENDING
        TP_DEFAULT_PUNT_RING, TP_MAX_PUNT_RING
    enum tp_kind:
        TP_KIND_TUN, TP_KIND_UDP, TP_KIND_TCP
    enum:
        TP_DROP__COUNT     # enum tp_drop: the number of drop reasons
        TP_XF_MAX_DROP_REASONS
    struct tp_fmt:
        int pi
        int vnet_hdr_sz
        int tap
        unsigned offloads
    struct tp_dev_cfg:
        int nfds
        const int *fds
        tp_fmt fmt
    struct tp_sock_cfg:
        int family
        unsigned char local_addr[16]
        unsigned local_port
        int has_remote
        int nremotes
        unsigned char remote_addr[TP_MAX_PEERS][16]
        unsigned remote_port[TP_MAX_PEERS]
        int listen
        int learn_peer
        int sock_buf
        int netns_fd
        unsigned max_frame
        int64_t peer_timeout_ns
    struct tp_ctl_cfg:
        int enabled
        int events
        uint32_t table_size
        int64_t idle_ns
        int64_t decision_ns
        uint8_t default_verdict
        uint32_t pending_limit
        uint32_t punt_ring
    struct tp_pump_cfg:
        int nworkers
        int batch
        tp_dev_cfg dev
        int kind
        tp_dev_cfg peer_dev
        tp_sock_cfg sock
        tp_ctl_cfg ctl
        const tunpump_transform *xf
    struct tp_dir_stats:
        uint64_t pkts_in, bytes_in, pkts_out, bytes_out
        uint64_t batches, read_calls, write_calls
        uint64_t read_bytes, write_bytes
        uint64_t gso_split, gso_passed, gro_built, gso_fallbacks
        uint64_t punted
        uint64_t drops[TP_DROP__COUNT]
        uint64_t xf_drops[TP_XF_MAX_DROP_REASONS]
    struct tp_worker_stats:
        tp_dir_stats dir[2]
        uint64_t wakeups, connects, disconnects, protocol_errors, peer_learned
        uint64_t flows_new, flows_evicted, flows_active, verdicts, decision_timeouts, events_lost, punted
        uint64_t refused_connections
        uint64_t peers_moved, roams_refused
        uint64_t connect_attempts
    enum tp_event_type:
        TP_EV_FLOW, TP_EV_PACKET, TP_EV_EVICTED, TP_EV_PEER_UP, TP_EV_PEER_DOWN, TP_EV_ERROR, TP_EV_PUNT
        TP_EV_PEER_MOVED, TP_EV_UNREACHABLE
    enum:
        TP_EVICT_IDLE, TP_EVICT_FULL
    enum:
        TP_UNREACH_SEND, TP_UNREACH_CONNECT
    struct tp_event:
        uint8_t type
        uint8_t reason
        uint16_t worker
        int32_t flow
        uint32_t gen
        int32_t err
        uint32_t len
        tp_flow_key key
        uint64_t packets, bytes
        int64_t age_ns
        const char *where
        uint8_t addr[16]
        uint16_t port
        uint8_t family
        uint8_t dir
        int16_t peer
    struct tp_pump:
        pass
    const char *tp_drop_names[]
    int tp_pump_start(const tp_pump_cfg *cfg, tp_pump **out, const char **err) nogil
    int tp_pump_stop(tp_pump *p) nogil
    int tp_pump_wait(tp_pump *p, int timeout_ms) nogil
    int tp_pump_error(const tp_pump *p, int *worker, const char **where) nogil
    int tp_pump_nworkers(const tp_pump *p) nogil
    void tp_pump_stats(const tp_pump *p, int worker, tp_worker_stats *out) nogil
    void tp_pump_free(tp_pump *p) nogil
    int tp_pump_event_fd(const tp_pump *p) nogil
    const tp_event *tp_pump_next_event(tp_pump *p, int *worker, const uint8_t **data) nogil
    void tp_pump_event_done(tp_pump *p, int worker, int type) nogil
    int tp_pump_verdict(tp_pump *p, int worker, int32_t flow, uint32_t gen, int verdict, int route,
                        uint32_t ttl_ms) nogil
    void tp_pump_kick(tp_pump *p) nogil
    int tp_pump_inject_udp(tp_pump *p, int worker, int route, const uint8_t *data, size_t len) nogil
    int tp_pump_inject_udp_addr(tp_pump *p, int worker, int family, const uint8_t *addr, unsigned port,
                                const uint8_t *data, size_t len) nogil
    int tp_pump_inject_transform(tp_pump *p, int worker, int route, const uint8_t *data, size_t len) nogil
    int tp_pump_transform_control(tp_pump *p, int worker, const uint8_t *msg, size_t len) nogil
    int tp_pump_set_peer(tp_pump *p, int idx, int family, const uint8_t *addr, unsigned port) nogil
    int tp_pump_peers_pending(tp_pump *p) nogil
    int tp_pump_get_peer(tp_pump *p, int worker, int idx, int *family, uint8_t *addr, unsigned *port) nogil
    int tp_pump_local_addr(tp_pump *p, int worker, int *family, uint8_t *addr, unsigned *port) nogil


cdef extern from "tp_ring.h":
    struct tp_ring:
        pass
    int tp_ring_init(tp_ring *r, uint32_t capacity, uint32_t rec_size) nogil
    void tp_ring_free(tp_ring *r) nogil
    void *tp_ring_reserve(tp_ring *r) nogil
    void tp_ring_publish(tp_ring *r) nogil
    void *tp_ring_peek(tp_ring *r) nogil
    void tp_ring_release(tp_ring *r) nogil
    uint32_t tp_ring_count(const tp_ring *r) nogil


cdef extern from "tp_vnet.h":
    enum:
        TP_VNET_MAX_SEGS, TP_VNET_HDR_ROOM, TP_GRO_TCP, TP_GRO_UDP
        TP_VNET_EMALFORMED, TP_VNET_ETOOMANY, TP_VNET_EUNSUPPORTED
    struct tp_vnet_hdr:
        uint8_t flags
        uint8_t gso_type
        uint16_t hdr_len
        uint16_t gso_size
        uint16_t csum_start
        uint16_t csum_offset
    struct tp_seg:
        uint8_t *hdr
        uint32_t hdr_len
        uint8_t *data
        uint32_t len
    struct tp_gro_pkt:
        uint8_t *data
        uint32_t len
    struct tp_gro_unit:
        int first
        int last
        int count
        tp_vnet_hdr vh
    void tp_vnet_hdr_read(const uint8_t *p, tp_vnet_hdr *h) nogil
    void tp_vnet_hdr_write(uint8_t *p, const tp_vnet_hdr *h, int size) nogil
    uint64_t tp_csum_add(uint64_t sum, const void *data, size_t len) nogil
    uint16_t tp_csum_fold(uint64_t sum) nogil
    int tp_vnet_split(const tp_vnet_hdr *h, uint8_t *pkt, uint32_t len, int l2,
                      uint8_t *scratch, tp_seg *segs, int max_segs) nogil
    int tp_gro_coalesce(tp_gro_pkt *pkts, int n, int l2, unsigned what, int *next,
                        uint32_t *skip, tp_gro_unit *units) nogil


cdef extern from "<linux/virtio_net.h>":
    # Only its size is used: the shortest vnet header a device reads and writes.
    struct virtio_net_hdr:
        uint8_t flags


cdef extern from "tp_aead.h":
    # The built-in AEAD's core (the binding's transform, the bench's tools).
    enum:
        TP_AEAD_KEY_LEN
        TP_AEAD_HEADER_LEN
        TP_AEAD_TAG_LEN
        TP_AEAD_OVERHEAD
        TP_AEAD_MAX_PLAIN
        TP_AEAD_NREASONS
        TP_AEAD_OK
    enum:
        TP_AEAD_AES_256_GCM
        TP_AEAD_CHACHA20_POLY1305
    struct tp_aead_cfg:
        int cipher
        uint32_t tx_sender
        uint32_t rx_sender
        uint64_t counter_start
        uint64_t grace_ns
    struct tp_aead:
        pass
    int tp_aead_available()
    const char *tp_aead_unavailable_reason()
    const char *tp_aead_reason_name(int reason)
    uint64_t tp_aead_counter_start_now()
    int tp_aead_new(const tp_aead_cfg *cfg, tp_aead **out)
    void tp_aead_free(tp_aead *st)
    int tp_aead_stage_key(tp_aead *st, unsigned char id, const unsigned char *key, uint64_t now_ns,
                          uint64_t switch_ns)
    int tp_aead_set_key(tp_aead *st, unsigned char id, const unsigned char *key, uint64_t now_ns)
    void tp_aead_tick(tp_aead *st, uint64_t now_ns)
    uint64_t tp_aead_next_counter(const tp_aead *st)
    int tp_aead_seal(tp_aead *st, unsigned char *data, uint32_t len, uint32_t headroom, uint32_t tailroom,
                     unsigned char **out, uint32_t *out_len)
    int tp_aead_open(tp_aead *st, unsigned char *data, uint32_t len, unsigned char **out, uint32_t *out_len)


cdef extern from "tp_aead_xf.h":
    # The AEAD as a transform (csrc/transform/tp_aead_xf.h).
    struct tp_aead_xf_cfg:
        int32_t cipher
        uint32_t side
        uint64_t grace_ns
        uint8_t key_id
        uint8_t key[TP_AEAD_KEY_LEN]
    enum:
        TP_AEAD_XF_REKEY, TP_AEAD_XF_REKEY_LEN
    tunpump_transform *tp_aead_xf_make(const tp_aead_xf_cfg *cfg)
    void tp_aead_xf_release(tunpump_transform *t)
