/* The L3/L4 parser and flow keys (tp_parse, tp_flow_parse), TUN and TAP.
 * Input: one control byte (bit 0: TAP), then the packet. Offsets must stay
 * inside the packet, statuses must agree with the fields, and the flow key
 * must follow from the parse. */
#include "fuzz_util.h"
#include "tp_flow_key.h"

static void check_parsed(int st, const struct tp_parsed *pp, uint32_t len)
{
    require(st >= TP_PARSE_OK && st <= TP_PARSE_BAD_L2);
    require(pp->l3 <= len && pp->end <= len && pp->n_ext <= TP_PARSE_MAX_EXT);
    if (st == TP_PARSE_OK || st == TP_PARSE_FRAGMENT) {
        require(pp->ip_version == 4 || pp->ip_version == 6);
        require(pp->l3 < pp->l4 && pp->l4 <= pp->end && pp->end > pp->l3);
        require((st == TP_PARSE_FRAGMENT) == (pp->frag != TP_FRAG_NONE));
    }
    if (st == TP_PARSE_UNPARSED)
        require(pp->ip_version == 4 || pp->ip_version == 6);
    if (st == TP_PARSE_BAD_IP || st == TP_PARSE_NOT_IP || st == TP_PARSE_BAD_L2)
        require(pp->ip_version == 0);
    if (pp->ip_version == 4)
        require(len - pp->l3 >= TP_IPV4_HLEN);
    if (pp->ip_version == 6)
        require(len - pp->l3 >= TP_IPV6_HLEN);
}

static void check_key(int st, const struct tp_parsed *pp, const struct tp_flow_key *k)
{
    static const uint8_t want_cls[] = {
        [TP_PARSE_OK] = TP_FLOW_IP, [TP_PARSE_FRAGMENT] = TP_FLOW_FRAGMENT,
        [TP_PARSE_UNPARSED] = TP_FLOW_UNPARSED, [TP_PARSE_BAD_IP] = TP_FLOW_OTHER,
        [TP_PARSE_NOT_IP] = TP_FLOW_OTHER, [TP_PARSE_BAD_L2] = TP_FLOW_OTHER,
    };

    require(k->ip_version == pp->ip_version && k->vlan == pp->vlan && k->ethertype == pp->ethertype);
    if (st == TP_PARSE_OK)
        require(k->cls == TP_FLOW_IP || k->cls == TP_FLOW_ND);
    else if (st == TP_PARSE_NOT_IP && pp->ethertype == TP_ETH_P_ARP)
        require(k->cls == TP_FLOW_ARP);
    else
        require(k->cls == want_cls[st]);
    if (k->cls != TP_FLOW_IP)
        require(k->sport == 0 && k->dport == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tp_parsed pp, again;
    struct tp_flow_key k, k2;

    if (size < 1 || size > 65536)
        return 0;
    int l2 = data[0] & 1;
    uint32_t len = (uint32_t)(size - 1);
    uint8_t *p = malloc(len ? len : 1);
    memcpy(p, data + 1, len);
    int st = tp_parse(p, len, l2, &pp);
    check_parsed(st, &pp, len);
    require(tp_parse(p, len, l2, &again) == st && memcmp(&pp, &again, sizeof(pp)) == 0);
    tp_flow_parse(p, len, l2, &k);
    check_key(st, &pp, &k);
    tp_flow_parse(p, len, l2, &k2);
    require(memcmp(&k, &k2, sizeof(k)) == 0 && tp_flow_hash(&k) == tp_flow_hash(&k2));
    free(p);
    return 0;
}
