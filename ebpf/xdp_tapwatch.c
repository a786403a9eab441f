// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * tapwatch's XDP program: TCP goes to the AF_XDP socket of the packet's rx queue;
 * everything else gets the configured action (drop on a tap port, pass on a host
 * that needs its own traffic), and every decision is counted.
 *
 * Parsed: Ethernet II; up to two VLAN tags (0x8100, 0x88a8, 0x9100, in any order);
 * IPv4 with options; IPv6 with up to TW_IPV6_EXT_MAX extension headers (hop-by-hop,
 * routing, destination options, AH, and a fragment header that does not fragment);
 * the first 20 bytes of TCP. Not parsed: tunnels (GRE, VXLAN, GENEVE, IP-in-IP),
 * MPLS, PPPoE, 802.3 length frames with LLC/SNAP (all NOT_IP or NOT_TCP); TCP inside
 * IPsec ESP (NOT_TCP); IP fragments (IP_FRAGMENT: tapwatch does not reassemble IP).
 * A VLAN tag that the NIC strips into the packet's metadata (rx-vlan-offload) is not
 * in the frame and so neither seen here nor in the AF_XDP frame.
 *
 * Never does: modify the packet (a redirected frame gets metadata in front of it,
 * struct tw_meta: the time the program saw it), call a helper other than map
 * lookups, bpf_xdp_adjust_meta, bpf_ktime_get_ns and bpf_redirect_map, or loop
 * without a compile-time bound. Map layouts, metadata and counter meanings:
 * xdp_tapwatch.h and README.md in this directory.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#include "xdp_tapwatch.h"

/* IPv6 next-header values (IANA "Assigned Internet Protocol Numbers"). */
#define TW_NH_HOPOPTS 0
#define TW_NH_ROUTING 43
#define TW_NH_FRAGMENT 44
#define TW_NH_AH 51
#define TW_NH_DSTOPTS 60

/* classify() returns a tw_counter reason, or this: a TCP packet we want. */
#define TW_MATCHED TW_CNT_MAX

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, TW_XSKS_MAX);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tw_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TW_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	/* Per-CPU value, and XDP runs with preemption off: a plain add is enough. */
	if (v)
		*v += 1;
}

/* Big-endian 16 bits, by bytes: no alignment assumption. The caller has checked
 * that p + 2 <= data_end. */
static __always_inline __u16 be16(const __u8 *p)
{
	return (__u16)((__u16)p[0] << 8 | p[1]);
}

static __always_inline int is_vlan(__u16 ethertype)
{
	return ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD ||
	       ethertype == 0x9100; /* old QinQ outer tag */
}

static __always_inline __u32 port_filter(const __u8 *tcp, const struct tw_config *cfg)
{
	__u16 sport = be16(tcp);
	__u16 dport = be16(tcp + 2);
	__u16 any = 0;

	if (!cfg)
		return TW_MATCHED;
#pragma unroll
	for (int i = 0; i < TW_MAX_PORTS; i++) {
		__u16 p = cfg->tcp_ports[i];

		any |= p;
		if (p != 0 && (p == sport || p == dport))
			return TW_MATCHED;
	}
	return any ? TW_CNT_PORT_FILTERED : TW_MATCHED;
}

/* Where the TCP header starts in an IPv6 packet, or a reason in *reason. */
static __always_inline const __u8 *ipv6_tcp(const __u8 *ip, const __u8 *end, __u32 *reason)
{
	const __u8 *h = ip + 40;
	__u8 nh;

	if (ip + 40 > end) {
		*reason = TW_CNT_TRUNCATED;
		return 0;
	}
	if ((ip[0] >> 4) != 6) {
		*reason = TW_CNT_MALFORMED;
		return 0;
	}
	nh = ip[6];
#pragma unroll
	for (int i = 0; i < TW_IPV6_EXT_MAX; i++) {
		if (nh == IPPROTO_TCP)
			return h;
		if (nh == TW_NH_HOPOPTS || nh == TW_NH_ROUTING || nh == TW_NH_DSTOPTS) {
			/* RFC 8200 4.3-4.6: length in 8-octet units, not counting the first 8. */
			if (h + 8 > end)
				goto truncated;
			nh = h[0];
			h += ((__u32)h[1] + 1) * 8;
		} else if (nh == TW_NH_AH) {
			/* RFC 4302 2.2: length in 4-octet units, minus 2. */
			if (h + 8 > end)
				goto truncated;
			nh = h[0];
			h += ((__u32)h[1] + 2) * 4;
		} else if (nh == TW_NH_FRAGMENT) {
			/* RFC 8200 4.5: 8 bytes; offset (13 bits), 2 reserved, M. */
			if (h + 8 > end)
				goto truncated;
			if (be16(h + 2) & 0xfff9) {
				*reason = h[0] == IPPROTO_TCP ? TW_CNT_IP_FRAGMENT : TW_CNT_NOT_TCP;
				return 0;
			}
			/* An atomic fragment (RFC 6946): a whole packet. */
			nh = h[0];
			h += 8;
		} else {
			*reason = TW_CNT_NOT_TCP;
			return 0;
		}
	}
	if (nh == IPPROTO_TCP)
		return h;
	*reason = (nh == TW_NH_HOPOPTS || nh == TW_NH_ROUTING || nh == TW_NH_DSTOPTS ||
		   nh == TW_NH_AH || nh == TW_NH_FRAGMENT)
			  ? TW_CNT_IPV6_EXT_UNHANDLED
			  : TW_CNT_NOT_TCP;
	return 0;
truncated:
	*reason = TW_CNT_TRUNCATED;
	return 0;
}

/* TW_MATCHED for a TCP packet we want, else the reason it is not for us. */
static __always_inline __u32 classify(const __u8 *data, const __u8 *end,
				      const struct tw_config *cfg)
{
	const __u8 *cur = data + ETH_HLEN;
	const __u8 *tcp;
	__u16 ethertype;
	__u32 reason = TW_CNT_MALFORMED;

	if (cur > end)
		return TW_CNT_TRUNCATED;
	ethertype = be16(data + 12);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (is_vlan(ethertype)) {
			/* TCI (2 bytes), then the inner EtherType. */
			if (cur + 4 > end)
				return TW_CNT_TRUNCATED;
			ethertype = be16(cur + 2);
			cur += 4;
		}
	}

	if (ethertype == ETH_P_IP) {
		__u8 ihl;

		if (cur + 20 > end)
			return TW_CNT_TRUNCATED;
		ihl = cur[0] & 0x0f;
		if ((cur[0] >> 4) != 4 || ihl < 5)
			return TW_CNT_MALFORMED;
		if (cur[9] != IPPROTO_TCP)
			return TW_CNT_NOT_TCP;
		/* Flags and fragment offset: MF (0x2000) or an offset is a fragment. */
		if (be16(cur + 6) & 0x3fff)
			return TW_CNT_IP_FRAGMENT;
		tcp = cur + (__u32)ihl * 4;
	} else if (ethertype == ETH_P_IPV6) {
		tcp = ipv6_tcp(cur, end, &reason);
		if (!tcp)
			return reason;
	} else {
		return TW_CNT_NOT_IP;
	}

	if (tcp + 20 > end)
		return TW_CNT_TRUNCATED;
	/* Data offset, in 32-bit words: at least the 5 of the fixed header. */
	if ((tcp[12] >> 4) < 5)
		return TW_CNT_MALFORMED;
	return port_filter(tcp, cfg);
}

/* Writes struct tw_meta in front of the frame; nothing if the driver has no room
 * for metadata (userspace then uses its own clock). */
static __always_inline void stamp(struct xdp_md *ctx, __u32 queue)
{
	struct tw_meta *meta;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct tw_meta)))
		return;
	meta = (struct tw_meta *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > (void *)(long)ctx->data)
		return;
	meta->ts_ns = bpf_ktime_get_ns();
	meta->magic = TW_META_MAGIC;
	meta->rx_queue = queue;
}

SEC("xdp")
int xdp_tapwatch(struct xdp_md *ctx)
{
	const __u8 *data = (const __u8 *)(long)ctx->data;
	const __u8 *end = (const __u8 *)(long)ctx->data_end;
	__u32 key = TW_CONFIG_KEY;
	const struct tw_config *cfg = bpf_map_lookup_elem(&config, &key);
	__u32 not_matched = (cfg && cfg->not_matched_action == XDP_DROP) ? XDP_DROP : XDP_PASS;
	__u32 reason = classify(data, end, cfg);

	if (reason == TW_MATCHED) {
		__u32 queue = ctx->rx_queue_index;

		if (queue < TW_XSKS_MAX) {
			stamp(ctx, queue);
			/* The low two bits of flags are what the helper returns when the
			 * lookup finds no socket at that index (kernel 5.3 and later). */
			if (bpf_redirect_map(&xsks, queue, not_matched) == XDP_REDIRECT) {
				count(TW_CNT_REDIRECTED);
				return XDP_REDIRECT;
			}
			reason = TW_CNT_REDIRECT_FAILED_NO_SOCKET;
		} else {
			reason = TW_CNT_REDIRECT_FAILED_QUEUE_RANGE;
		}
	}
	count(reason);
	count(not_matched == XDP_DROP ? TW_CNT_DROPPED : TW_CNT_PASSED);
	return not_matched;
}

/* The file is Apache-2.0 (the project's licence) or GPL-2.0-only, at the user's
 * choice. The kernel knows a fixed list of licence strings; "GPL" states the licence
 * under which the object is GPL-compatible. */
char _license[] SEC("license") = "GPL";
