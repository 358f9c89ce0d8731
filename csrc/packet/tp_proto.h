/* Protocol numbers and header sizes used by the packet code, named after
 * their definitions (IEEE 802.3/802.1Q, RFC 791, RFC 8200, RFC 9293, RFC 768).
 * Prefixed TP_ so they never clash with the system's netinet header names. */
#ifndef TP_PROTO_H
#define TP_PROTO_H

/* Ethernet */
#define TP_ETH_ALEN 6                 /* a MAC address */
#define TP_ETH_HLEN 14                /* destination, source, EtherType */
#define TP_VLAN_HLEN 4                /* an 802.1Q / 802.1ad tag: TCI, then the next EtherType */
#define TP_VLAN_VID_MASK 0x0fff
#define TP_VLAN_MAX_TAGS 2            /* QinQ: an outer 802.1ad and an inner 802.1Q tag */

/* EtherTypes */
#define TP_ETH_P_IP 0x0800
#define TP_ETH_P_ARP 0x0806
#define TP_ETH_P_8021Q 0x8100
#define TP_ETH_P_8021AD 0x88A8
#define TP_ETH_P_IPV6 0x86DD

/* IP protocol / IPv6 next-header numbers */
#define TP_IPPROTO_HOPOPTS 0
#define TP_IPPROTO_ICMP 1
#define TP_IPPROTO_TCP 6
#define TP_IPPROTO_UDP 17
#define TP_IPPROTO_ROUTING 43
#define TP_IPPROTO_FRAGMENT 44
#define TP_IPPROTO_ESP 50
#define TP_IPPROTO_AH 51
#define TP_IPPROTO_ICMPV6 58
#define TP_IPPROTO_DSTOPTS 60
#define TP_IPPROTO_SCTP 132
#define TP_IPPROTO_UDPLITE 136

/* IPv4 */
#define TP_IPV4_HLEN 20               /* without options */
#define TP_IPV4_MAX_HLEN 60
#define TP_IP_DF 0x4000               /* in the flags/fragment-offset word */
#define TP_IP_MF 0x2000
#define TP_IP_OFFMASK 0x1fff
#define TP_IPV4_MAX_LEN 65535         /* the total length field */
#define TP_IPV4_TOS 1                 /* field offsets in the header */
#define TP_IPV4_LEN 2
#define TP_IPV4_ID 4
#define TP_IPV4_FRAG 6                /* flags and fragment offset */
#define TP_IPV4_TTL 8
#define TP_IPV4_PROTO 9
#define TP_IPV4_CSUM 10
#define TP_IPV4_SADDR 12
#define TP_IPV4_DADDR 16

/* IPv6 */
#define TP_IPV6_HLEN 40
#define TP_IPV6_PLEN 4                /* field offsets in the header */
#define TP_IPV6_NEXT 6
#define TP_IPV6_HOPS 7
#define TP_IPV6_SADDR 8
#define TP_IPV6_DADDR 24
#define TP_IPV6_FRAG_HLEN 8
#define TP_IPV6_FRAG_OFFMASK 0xfff8   /* in the fragment header's offset word */
#define TP_IPV6_FRAG_MF 0x0001

/* TCP */
#define TP_TCP_HLEN 20                /* without options */
#define TP_TCP_MAX_HLEN 60
#define TP_TCP_FIN 0x01
#define TP_TCP_SYN 0x02
#define TP_TCP_RST 0x04
#define TP_TCP_PSH 0x08
#define TP_TCP_ACK 0x10
#define TP_TCP_URG 0x20
#define TP_TCP_ECE 0x40
#define TP_TCP_CWR 0x80
#define TP_TCP_SEQ 4                  /* field offsets in the header */
#define TP_TCP_ACK_SEQ 8
#define TP_TCP_DOFF 12                /* data offset (header length / 4) in the high nibble */
#define TP_TCP_FLAGS 13
#define TP_TCP_WINDOW 14
#define TP_TCP_CSUM_OFF 16            /* the checksum's offset in the header */

/* UDP (and UDP-Lite, same layout) */
#define TP_UDP_HLEN 8
#define TP_UDP_LEN 4
#define TP_UDP_CSUM_OFF 6

/* ICMP / ICMPv6 */
#define TP_ICMP_HLEN 8
#define TP_ICMP_ECHO_ID 4             /* the echo identifier's offset */
#define TP_ICMP_ECHOREPLY 0
#define TP_ICMP_ECHO 8
#define TP_ICMPV6_ECHO_REQUEST 128
#define TP_ICMPV6_ECHO_REPLY 129
#define TP_ICMPV6_ND_FIRST 133        /* router solicitation ... */
#define TP_ICMPV6_ND_LAST 137         /* ... redirect: neighbour discovery (RFC 4861) */

#endif
