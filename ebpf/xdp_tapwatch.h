/* SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only */
/*
 * The contract between the XDP program (xdp_tapwatch.c) and the userspace that loads
 * it: map names, sizes, the config value and the counter indices. This header is the
 * source of truth (STYLE.md, convention 3); the Rust side mirrors it as #[repr(C)]
 * types with compile-time size asserts. ebpf/README.md lists the same layout byte by
 * byte. Change both together, and rebuild the object (scripts/build-ebpf.sh).
 *
 * All multi-byte values in map keys and values are in the host's byte order (the
 * kernel stores what userspace writes; little-endian on x86_64 and arm64).
 */
#ifndef TAPWATCH_XDP_TAPWATCH_H
#define TAPWATCH_XDP_TAPWATCH_H

#include <linux/types.h>

/* Map "xsks": BPF_MAP_TYPE_XSKMAP, key __u32 = rx queue index, value __u32 = the
 * AF_XDP socket's file descriptor (written by userspace; read back it is not the fd).
 * A queue at or above TW_XSKS_MAX never gets a socket. */
#define TW_XSKS_MAX 64

/* Map "config": BPF_MAP_TYPE_ARRAY, one entry, key __u32 = 0, value struct tw_config. */
#define TW_CONFIG_KEY 0

/* TCP ports in the optional port filter. */
#define TW_MAX_PORTS 8

struct tw_config {
	/* What happens to a packet that is not for us (not TCP, a TCP port outside the
	 * filter, a frame that cannot be parsed) and to a TCP packet whose rx queue has
	 * no socket in "xsks": XDP_DROP (1) drops it (a tap or SPAN port, whose traffic
	 * is not for this host); XDP_PASS (2) and any other value hand it to the
	 * kernel's stack (a host that needs its own traffic). The map starts zeroed, so
	 * a program nobody configured passes everything it does not redirect. */
	__u32 not_matched_action;
	/* TCP ports to keep, host byte order; 0 is an empty slot. A TCP packet is kept
	 * when its source or its destination port is one of the non-zero entries (both
	 * directions of a session). All eight 0: every TCP packet is kept. */
	__u16 tcp_ports[TW_MAX_PORTS];
};
/* offset 0: not_matched_action (u32); offset 4: tcp_ports[0..8] (8 x u16); size 20,
 * alignment 4, no padding. */
_Static_assert(sizeof(struct tw_config) == 20, "struct tw_config is 20 bytes");

/* Map "counters": BPF_MAP_TYPE_PERCPU_ARRAY, key __u32 = one of the indices below,
 * value __u64 per possible CPU (userspace sums them). Every packet the program sees
 * adds 1 to exactly one of REDIRECTED, PASSED, DROPPED (their sum is the packets
 * seen), and every packet it does not redirect adds 1 to exactly one reason
 * (REDIRECT_FAILED_NO_SOCKET .. MALFORMED), so PASSED + DROPPED = the sum of the
 * reasons. */
enum tw_counter {
	/* bpf_redirect_map() found a socket for the rx queue and returned XDP_REDIRECT.
	 * The kernel may still drop the frame on delivery (the socket's RX ring full,
	 * bound to another queue): the socket's XDP_STATISTICS count that. */
	TW_CNT_REDIRECTED = 0,
	/* Returned XDP_PASS, for any of the reasons below. */
	TW_CNT_PASSED = 1,
	/* Returned XDP_DROP, for any of the reasons below. */
	TW_CNT_DROPPED = 2,
	/* Reason: a TCP packet for us, but "xsks" has no socket at its rx queue index:
	 * bpf_redirect_map() returned the fallback action (not_matched_action). */
	TW_CNT_REDIRECT_FAILED_NO_SOCKET = 3,
	/* Reason: a TCP packet for us on an rx queue >= TW_XSKS_MAX. */
	TW_CNT_REDIRECT_FAILED_QUEUE_RANGE = 4,
	/* Reason: neither IPv4 nor IPv6 after at most two VLAN tags (ARP, LLDP, a third
	 * VLAN tag, ...). */
	TW_CNT_NOT_IP = 5,
	/* Reason: IPv4 or IPv6 whose protocol is not TCP (after the IPv6 extension
	 * headers that are walked), including fragments of other protocols. */
	TW_CNT_NOT_TCP = 6,
	/* Reason: a fragment of a TCP packet (IPv4 MF or offset; an IPv6 fragment
	 * header with MF or an offset). tapwatch does not reassemble IP. */
	TW_CNT_IP_FRAGMENT = 7,
	/* Reason: an IPv6 extension-header chain longer than TW_IPV6_EXT_MAX headers. */
	TW_CNT_IPV6_EXT_UNHANDLED = 8,
	/* Reason: TCP, but neither port is in a non-empty port filter. */
	TW_CNT_PORT_FILTERED = 9,
	/* Reason: the frame ends inside a header that had to be read (Ethernet, VLAN,
	 * IPv4, IPv6, an IPv6 extension header, the 20 fixed bytes of TCP). */
	TW_CNT_TRUNCATED = 10,
	/* Reason: a header that cannot be valid: IP version not matching the
	 * EtherType, IPv4 header length below 20, TCP data offset below 20. */
	TW_CNT_MALFORMED = 11,
	TW_CNT_MAX = 12,
};

/* Metadata the program writes in front of every frame it redirects (the 16 bytes
 * just before the frame's first byte in the UMEM; bpf_xdp_adjust_meta), so that
 * userspace knows when the kernel saw the packet, not only when the capture thread
 * read it: packets of different queues and interfaces are merged by this time. A
 * driver without room for metadata makes bpf_xdp_adjust_meta fail; the frame is
 * redirected without it, and userspace, not finding the magic, uses its own clock
 * (and counts the frame). */
#define TW_META_MAGIC 0x74617077 /* "tapw" */

struct tw_meta {
	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC, nanoseconds. */
	__u64 ts_ns;
	/* TW_META_MAGIC when the rest is valid. */
	__u32 magic;
	/* ctx->rx_queue_index. */
	__u32 rx_queue;
};
/* offset 0: ts_ns (u64); 8: magic (u32); 12: rx_queue (u32); size 16, no padding.
 * Metadata must be a multiple of 4 bytes and at most 32. */
_Static_assert(sizeof(struct tw_meta) == 16, "struct tw_meta is 16 bytes");

/* IPv6 extension headers walked before giving up (hop-by-hop, routing, destination
 * options, AH, and a fragment header that does not fragment). */
#define TW_IPV6_EXT_MAX 4

#endif /* TAPWATCH_XDP_TAPWATCH_H */
