// SPDX-License-Identifier: GPL-2.0
//
// The record layout mqtt-keepalive's BPF program writes to its ring buffer, defined once: the C
// program includes this header, and build.rs reads the `#define`s and the `_Static_assert` lines
// below to generate the Rust constants src/capture/ebpf/event.rs parses records with. clang
// checks every asserted offset against the structure when it compiles the program (the
// `ebpf-rebuild` feature), so the C, the numbers here and the Rust cannot drift apart.
//
// build.rs's grammar (one item a line): `#define NAME NUMBER` (NAME starting EV_, FL_, ST_ or
// MAX_), `_Static_assert(sizeof(struct event) == N, ...)` and
// `_Static_assert(__builtin_offsetof(struct event, FIELD) == N, ...)`.

#ifndef MQTT_KEEPALIVE_H
#define MQTT_KEEPALIVE_H


// Most plaintext bytes one record carries.
#define MAX_COPY 16384

// Record kinds (struct event's `kind`).
#define EV_READ 1            // plaintext the broker read (from the client)
#define EV_WRITE 2           // plaintext the broker wrote (to the client)
#define EV_STATE 3           // TCP state change of a broker socket
#define EV_RESET_RX 4        // the broker's socket received an RST (from the client)
#define EV_RESET_TX 5        // the broker's socket sent an RST
#define EV_CLOSE_NOTIFY_RX 6 // the broker's SSL_read returned 0: the client's TLS close_notify
#define EV_CLOSE_NOTIFY_TX 7 // the broker called SSL_shutdown: its TLS close_notify
#define EV_FREE 8            // the broker freed the connection's SSL object: it reads no more

// struct tuple's `flags`.
#define FL_CARRIED 1 // bytes passed on the socket (the broker read or wrote some)
#define FL_TIED 2    // an SSL call of the broker was tied to the socket: its plaintext is visible

// Indexes of the `stats` array.
#define ST_RING_DROPS 0    // events the ring buffer had no room for
#define ST_LOST_BYTES 1    // plaintext bytes not copied (too long or dropped)
#define ST_UNBOUND 2       // SSL calls that could not be tied to a socket
#define ST_UNBOUND_BYTES 3 // their bytes
#define ST_MAX 4

// The connection as the broker's socket sees it: local = broker, remote = client.
struct tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u16 family;
	__u16 flags; // FL_*
};

struct event {
	__u64 ts;     // bpf_ktime_get_ns (CLOCK_MONOTONIC): for plaintext, when the SSL call began
	              // (a read: or when its bytes reached the broker, if later); else when it happened
	__u64 sk;     // kernel socket address: the connection's identity while it lives
	struct tuple t;
	__u32 tgid;
	__u8 kind;    // EV_*
	__u8 pad[3];
	__s32 oldstate;
	__s32 newstate;
	__u32 len;    // bytes the call moved
	__u32 copied; // bytes following this header
	__u64 lost;   // bytes of this direction lost before this event
};

_Static_assert(sizeof(struct event) == 88, "the record header");
_Static_assert(__builtin_offsetof(struct event, ts) == 0, "ts");
_Static_assert(__builtin_offsetof(struct event, sk) == 8, "sk");
_Static_assert(__builtin_offsetof(struct event, t.laddr) == 16, "t.laddr");
_Static_assert(__builtin_offsetof(struct event, t.raddr) == 32, "t.raddr");
_Static_assert(__builtin_offsetof(struct event, t.lport) == 48, "t.lport");
_Static_assert(__builtin_offsetof(struct event, t.rport) == 50, "t.rport");
_Static_assert(__builtin_offsetof(struct event, t.family) == 52, "t.family");
_Static_assert(__builtin_offsetof(struct event, t.flags) == 54, "t.flags");
_Static_assert(__builtin_offsetof(struct event, tgid) == 56, "tgid");
_Static_assert(__builtin_offsetof(struct event, kind) == 60, "kind");
_Static_assert(__builtin_offsetof(struct event, oldstate) == 64, "oldstate");
_Static_assert(__builtin_offsetof(struct event, newstate) == 68, "newstate");
_Static_assert(__builtin_offsetof(struct event, len) == 72, "len");
_Static_assert(__builtin_offsetof(struct event, copied) == 76, "copied");
_Static_assert(__builtin_offsetof(struct event, lost) == 80, "lost");

#endif
