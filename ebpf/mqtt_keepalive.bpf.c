// SPDX-License-Identifier: GPL-2.0
//
// mqtt-keepalive's eBPF probes on a broker host (see src/capture/ebpf/mod.rs for the user space).
//
// What it reports, through the ring buffer `events` (one `struct event` header, then for data
// events the bytes copied):
// - the plaintext the broker reads and writes through OpenSSL's libssl (uprobes and uretprobes
//   on SSL_read and SSL_read_ex, uprobes only on SSL_write and SSL_write_ex, whose data is all
//   there at entry; SSL_shutdown; SSL_free), tied to the TCP socket the call used:
//   while an SSL call is in flight on a thread, the socket the same thread receives from or
//   sends to (tracepoints sock:sock_recv_length / sock_send_length, or, selectable for older
//   kernels, syscalls:sys_enter_read/write/recvfrom/sendto with the fd looked up in the task's
//   file table) is the SSL object's socket. An SSL_read that touched no socket (a broker that
//   feeds OpenSSL through memory BIOs: Python's asyncio) is tied to the broker-port socket the
//   same thread received from last, and the tie is kept per SSL object until SSL_free. Only
//   sockets whose local port is a broker port (map `ports`) are bound; calls of processes
//   outside `pids` are ignored when FILTER_PIDS.
// - Plaintext records are stamped when the call began (a read: or when the bytes it returns
//   reached the broker, if that was later), so that user space can put them in the order things
//   happened: a record reaches the ring only when its call returns, after a tracepoint on
//   another CPU (a client's RST) may already have written a later one.
// - TLS closes: SSL_read returning 0 (the client's close_notify) and the broker's SSL_shutdown;
//   SSL_free of a watched connection's SSL object (the broker reads no more of it).
// - TCP state changes of broker-port sockets (sock:inet_sock_set_state) and resets
//   (tcp:tcp_receive_reset, tcp:tcp_send_reset), for every connection on the port, plaintext
//   visible or not.
// Bytes that could not be copied (a call longer than MAX_COPY, or an event the ring buffer had
// no room for) are counted: per connection in the next event's `lost`, and in `stats`.
//
// Build (the compiled object is committed beside this file; `cargo build --features
// ebpf-rebuild` runs the same command from build.rs):
//   clang -target bpf -O2 -g -D__TARGET_ARCH_x86 -I/usr/include/x86_64-linux-gnu \
//         -c ebpf/mqtt_keepalive.bpf.c -o ebpf/mqtt_keepalive.bpf.o

#include <linux/bpf.h>
#include <linux/types.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#include "mqtt_keepalive.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_LISTEN 10

// What an SSL object is tied to.
struct conn {
	__u64 sk;
	struct tuple t;
	__u64 lost[2]; // per direction: [0] read, [1] written
	__u64 retry_buf; // the write the socket refused (EAGAIN): OpenSSL's caller repeats it
	__u32 retry_len;
	__u8 watched; // 1: a broker-port socket; 0: another socket, ignored
	__u8 retry;   // retry_buf/retry_len are set
	__u8 pad[2];
};

// The SSL_write a thread called last (its record is written at entry: no return probe).
struct write_call {
	__u64 ssl;
	__u64 buf;
	__u32 len;
	__u32 pad;
};

// An SSL call in flight on a thread.
struct call {
	__u64 ts; // when it began (a read: or when bytes last reached the socket during it)
	__u64 ssl;
	__u64 buf;
	__u64 len_ptr; // the _ex forms: where the length moved is written
	__u8 write;
	__u8 rx_seen; // the thread received from a socket during the call
	__u8 pad[2];
	__s32 rx_ret; // the last such receive's result (< 0 an error, 0 the peer's FIN)
};

struct scratch {
	struct event e;
	__u8 data[MAX_COPY];
};

const volatile __u8 FILTER_PIDS = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct call);
} calls SEC(".maps");

// The broker-port socket each thread received from last, outside SSL calls: what an SSL_read
// that touches no socket itself (memory BIOs) is tied to.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} last_rx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct write_call);
} last_write SEC(".maps");

// Broker-port sockets seen changing state, by address: a socket that is reset as it closes
// has already lost its port (Linux unhashes it before sending the RST of an abortive close).
// An entry outlives its socket (the LRU map forgets it), and the kernel gives the memory to new
// sockets: an entry is this socket's only while its addresses are (`same_peer`, `same_conn`).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, __u64);
	__type(value, struct tuple);
} socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

// Kernel structures, only the fields read, relocated by CO-RE against the running kernel's BTF.
struct in6_addr___mk {
	__u8 bytes[16];
};

struct sock_common {
	union {
		__u64 skc_addrpair;
		struct {
			__u32 skc_daddr;
			__u32 skc_rcv_saddr;
		};
	};
	union {
		__u32 skc_portpair;
		struct {
			__u16 skc_dport;
			__u16 skc_num;
		};
	};
	unsigned short skc_family;
	struct in6_addr___mk skc_v6_daddr;
	struct in6_addr___mk skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));


struct file {
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
} __attribute__((preserve_access_index));

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += n;
}

static __always_inline int pid_watched(__u32 tgid)
{
	if (!FILTER_PIDS)
		return 1;
	return bpf_map_lookup_elem(&pids, &tgid) != 0;
}

static __always_inline int port_watched(__u16 port)
{
	return bpf_map_lookup_elem(&ports, &port) != 0;
}

// The broker-side tuple of `sk`; 0 when it is not a TCP/IP socket.
static __always_inline int read_tuple(struct sock *sk, struct tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	t->family = family;
	t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(t->laddr, &l, 4);
		__builtin_memcpy(t->raddr, &r, 4);
	} else {
		bpf_core_read(&t->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(&t->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	return 1;
}

// Two addresses equal (16 bytes; BPF has no memcmp).
static __always_inline int same_addr(const __u8 *a, const __u8 *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;
	return x[0] == y[0] && x[1] == y[1];
}

// The same remote end (the part of a socket's addresses that closing it does not clear).
static __always_inline int same_peer(const struct tuple *a, const struct tuple *b)
{
	return a->family == b->family && a->rport == b->rport && same_addr(a->raddr, b->raddr);
}

// The same connection: both ends.
static __always_inline int same_conn(const struct tuple *a, const struct tuple *b)
{
	return same_peer(a, b) && a->lport == b->lport && same_addr(a->laddr, b->laddr);
}

// Notes that a broker-port socket carried bytes (a connection that carried none, a load
// balancer's port check, is not a session), whatever the broker's TLS library.
static __always_inline void mark(__u64 sk, __u16 flags)
{
	struct tuple *t = bpf_map_lookup_elem(&socks, &sk);
	if (t)
		t->flags |= flags;
}

// Ties the SSL call `c` to `sk`.
static __always_inline void bind_call(struct call *c, struct sock *sk)
{
	__u64 ssl = c->ssl;
	struct conn *known = bpf_map_lookup_elem(&conns, &ssl);
	if (known && known->sk == (__u64)sk)
		return;
	struct conn n = {};
	n.sk = (__u64)sk;
	if (read_tuple(sk, &n.t) && BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP && port_watched(n.t.lport)) {
		n.watched = 1;
		mark((__u64)sk, FL_CARRIED | FL_TIED); // the TLS handshake passed on it
	}
	bpf_map_update_elem(&conns, &ssl, &n, BPF_ANY);
}

// Ties the SSL call in flight on this thread (if any, and not yet tied) to `sk`.
static __always_inline void bind_socket(struct sock *sk)
{
	if (!sk)
		return;
	__u64 id = bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &id);
	if (!c)
		return;
	bind_call(c, sk);
}

static __always_inline int call_enter(__u64 ssl, __u64 buf, __u64 len_ptr, __u8 write)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_watched(id >> 32))
		return 0;
	struct call c = {};
	c.ts = bpf_ktime_get_ns();
	c.ssl = ssl;
	c.buf = buf;
	c.len_ptr = len_ptr;
	c.write = write;
	bpf_map_update_elem(&calls, &id, &c, BPF_ANY);
	return 0;
}

// Data records do not wake the agent, which reads the ring buffer at least every
// 20 ms (READ_INTERVAL in src/capture/ebpf/mod.rs; a wake-up per record is an interrupt per SSL call: on a VM, an exit each);
// past WAKEUP_BYTES waiting it is woken at once. Close records always wake it.
#define WAKEUP_BYTES (256u << 10)

static __always_inline __u64 data_wakeup(void)
{
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > WAKEUP_BYTES)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

// A record without data: a TCP change or a TLS close of the connection on socket `sk`.
static __always_inline void emit_at(__u64 ts, __u8 kind, __u64 sk, struct tuple *t, int oldstate, int newstate)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(struct event), 0);
	if (!e) {
		count(ST_RING_DROPS, 1);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = ts;
	e->sk = sk;
	e->t = *t;
	e->tgid = bpf_get_current_pid_tgid() >> 32;
	e->kind = kind;
	e->oldstate = oldstate;
	e->newstate = newstate;
	bpf_ringbuf_submit(e, 0);
}

static __always_inline void emit(__u8 kind, __u64 sk, struct tuple *t, int oldstate, int newstate)
{
	emit_at(bpf_ktime_get_ns(), kind, sk, t, oldstate, newstate);
}

// A data record: `len` bytes at `buf`, moved by an SSL call on `conn` that began at `ts`.
static __always_inline int emit_data(struct conn *conn, __u8 write, __u64 buf, __u64 len, __u64 ts, __u32 tgid)
{
	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	__u64 copy = len < MAX_COPY ? len : MAX_COPY;
	s->e.ts = ts;
	s->e.sk = conn->sk;
	s->e.t = conn->t;
	s->e.tgid = tgid;
	s->e.kind = write ? EV_WRITE : EV_READ;
	s->e.oldstate = 0;
	s->e.newstate = 0;
	s->e.len = len;
	__u32 dir = write ? 1 : 0;
	s->e.lost = conn->lost[dir];
	if (copy > MAX_COPY)
		copy = MAX_COPY;
	if (bpf_probe_read_user(s->data, copy, (void *)buf))
		copy = 0;
	s->e.copied = copy;
	if (copy < len)
		count(ST_LOST_BYTES, len - copy);
	__u64 size = sizeof(struct event) + copy;
	if (size > sizeof(struct scratch))
		size = sizeof(struct scratch);
	if (bpf_ringbuf_output(&events, s, size, data_wakeup())) {
		count(ST_RING_DROPS, 1);
		count(ST_LOST_BYTES, len);
		conn->lost[dir] += len;
	} else {
		conn->lost[dir] = 0;
	}
	return 0;
}

// How a read function's return value says what it moved.
#define RET_COUNT 0 // SSL_read: the count (0: a close_notify, or the receive ended)
#define RET_EX 1    // SSL_read_ex: 1 and the count at `len_ptr`, else 0 (a close_notify not told apart)
#define RET_INNER 2 // ssl_read_internal: > 0 and the count at `len_ptr`, 0 as SSL_read's, < 0 none

// The read returned `ret`: report what it moved.
static __always_inline int call_exit(long ret, int how)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *cp = bpf_map_lookup_elem(&calls, &id);
	if (!cp)
		return 0;
	struct call c = *cp;
	bpf_map_delete_elem(&calls, &id);
	long moved = ret;
	if (how != RET_COUNT && ret > 0) {
		__u64 n = 0;
		if ((how == RET_EX && ret != 1) || !c.len_ptr || bpf_probe_read_user(&n, sizeof(n), (void *)c.len_ptr))
			return 0;
		moved = n;
	}
	if (ret == 0 && how != RET_EX && !c.write) {
		// SSL_read returns 0 for a close_notify, but also when the socket's receive ended
		// without one (the peer's FIN or RST): a close_notify is bytes received.
		if (c.rx_seen && c.rx_ret <= 0)
			return 0;
		struct conn *closed = bpf_map_lookup_elem(&conns, &c.ssl);
		if (closed && closed->watched)
			emit_at(c.ts, EV_CLOSE_NOTIFY_RX, closed->sk, &closed->t, 0, 0);
		return 0;
	}
	if (moved <= 0)
		return 0;
	struct conn *conn = bpf_map_lookup_elem(&conns, &c.ssl);
	if (!conn && !c.write) {
		// It touched no socket (a memory BIO): the socket this thread received from last.
		__u64 *rx = bpf_map_lookup_elem(&last_rx, &id);
		if (rx) {
			bind_call(&c, (struct sock *)*rx);
			conn = bpf_map_lookup_elem(&conns, &c.ssl);
		}
	}
	if (!conn) {
		count(ST_UNBOUND, 1);
		count(ST_UNBOUND_BYTES, moved);
		return 0;
	}
	if (!conn->watched)
		return 0;
	return emit_data(conn, c.write, c.buf, moved, c.ts, id >> 32);
}

SEC("uprobe/SSL_read")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return call_enter((__u64)ssl, (__u64)buf, 0, 0);
}

SEC("uretprobe/SSL_read")
int BPF_KRETPROBE(ssl_read_exit, int ret)
{
	return call_exit(ret, RET_COUNT);
}

// SSL_write has its data at entry: the record is written there, with no return probe (a
// uretprobe costs a second trap per call). A write the socket refused (EAGAIN, seen by the
// send tracepoint on the same thread) is repeated by OpenSSL's caller with the same buffer and
// length: that repetition is not written again. SSL_write is assumed to write all or nothing
// (OpenSSL's default; SSL_MODE_ENABLE_PARTIAL_WRITE would make its retries overlap).
static __always_inline int write_enter(__u64 ssl, __u64 buf, __u64 num)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_watched(id >> 32))
		return 0;
	__u64 ts = bpf_ktime_get_ns();
	struct write_call w = {};
	w.ssl = ssl;
	w.buf = buf;
	w.len = num;
	bpf_map_update_elem(&last_write, &id, &w, BPF_ANY);
	if ((__s64)num <= 0)
		return 0;
	struct conn *conn = bpf_map_lookup_elem(&conns, &ssl);
	if (!conn) {
		count(ST_UNBOUND, 1);
		count(ST_UNBOUND_BYTES, num);
		return 0;
	}
	if (!conn->watched)
		return 0;
	if (conn->retry) {
		conn->retry = 0;
		if (conn->retry_buf == buf && conn->retry_len == (__u32)num)
			return 0;
	}
	return emit_data(conn, 1, buf, num, ts, id >> 32);
}

SEC("uprobe/SSL_write")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return write_enter((__u64)ssl, (__u64)buf, (__u64)(__s64)num);
}

SEC("uprobe/SSL_read_ex")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	return call_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, 0);
}

SEC("uretprobe/SSL_read_ex")
int BPF_KRETPROBE(ssl_read_ex_exit, int ret)
{
	return call_exit(ret, RET_EX);
}

SEC("uprobe/SSL_write_ex")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	return write_enter((__u64)ssl, (__u64)buf, num);
}

// The functions OpenSSL's SSL_read and SSL_read_ex (and SSL_write and SSL_write_ex) both wrap,
// `ssl_read_internal(s, buf, num, &readbytes)` and `ssl_write_internal(s, buf, num, &written)`:
// not exported, found in the library's code by the agent (src/capture/ebpf/inner.rs) and
// probed by file offset instead of the wrappers when it finds them. They begin with a `push`,
// which the kernel emulates: a probe there costs one trap; the wrappers begin with `sub
// $N,%rsp`, single-stepped out of line: two traps (on a VM, 10-20x the cost).
SEC("uprobe/ssl_read_internal")
int BPF_KPROBE(ssl_read_inner_enter, void *ssl, void *buf, __u64 num, __u64 *readbytes)
{
	return call_enter((__u64)ssl, (__u64)buf, (__u64)readbytes, 0);
}

SEC("uretprobe/ssl_read_internal")
int BPF_KRETPROBE(ssl_read_inner_exit, int ret)
{
	return call_exit(ret, RET_INNER);
}

SEC("uprobe/ssl_write_internal")
int BPF_KPROBE(ssl_write_inner_enter, void *ssl, const void *buf, __u64 num, __u64 *written)
{
	return write_enter((__u64)ssl, (__u64)buf, num);
}

// The broker closes TLS: SSL_shutdown sends its close_notify (first call; later calls only
// wait for the peer's).
SEC("uprobe/SSL_shutdown")
int BPF_KPROBE(ssl_shutdown, void *ssl)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!pid_watched(id >> 32))
		return 0;
	__u64 key = (__u64)ssl;
	struct conn *conn = bpf_map_lookup_elem(&conns, &key);
	if (conn && conn->watched)
		emit(EV_CLOSE_NOTIFY_TX, conn->sk, &conn->t, 0, 0);
	return 0;
}

// SSL objects' addresses are reused at once: forget the tie when one is freed.
SEC("uprobe/SSL_free")
int BPF_KPROBE(ssl_free, void *ssl)
{
	__u64 key = (__u64)ssl;
	struct conn *conn = bpf_map_lookup_elem(&conns, &key);
	if (!conn)
		return 0;
	if (conn->watched)
		emit(EV_FREE, conn->sk, &conn->t, 0, 0);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

#define EAGAIN 11

// The socket refused what this thread's last SSL_write sent (EAGAIN): if it is that SSL
// object's socket, the write will be repeated.
static __always_inline void refused_write(__u64 id, __u64 sk)
{
	struct write_call *w = bpf_map_lookup_elem(&last_write, &id);
	if (!w)
		return;
	__u64 ssl = w->ssl;
	struct conn *conn = bpf_map_lookup_elem(&conns, &ssl);
	if (!conn || conn->sk != sk)
		return;
	conn->retry = 1;
	conn->retry_buf = w->buf;
	conn->retry_len = w->len;
}

// sock:sock_recv_length and sock:sock_send_length (Linux 6.3 and later): `sk` at offset 8,
// `ret` (bytes moved, or an error) at 20.
struct sock_length_args {
	__u64 common;
	struct sock *sk;
	__u16 family;
	__u16 protocol;
	int ret;
};


// The broker (or anything) received or sent on `sk`: it carried bytes, and ties an SSL call.
// A receive outside an SSL call on a broker-port socket is remembered for the thread's next
// SSL_read (memory BIOs); one during an SSL_read moves the read's time to when its bytes came.
static __always_inline int sock_length(struct sock_length_args *args, int rx)
{
	__u64 sk = (__u64)args->sk;
	struct tuple *t = 0;
	if (args->ret > 0) {
		t = bpf_map_lookup_elem(&socks, &sk);
		if (t)
			t->flags |= FL_CARRIED;
	}
	__u64 id = bpf_get_current_pid_tgid();
	struct call *c = bpf_map_lookup_elem(&calls, &id);
	if (c) {
		if (rx) {
			c->rx_seen = 1;
			c->rx_ret = args->ret;
		}
		if (rx && args->ret > 0 && !c->write)
			c->ts = bpf_ktime_get_ns();
		bind_call(c, args->sk);
	} else if (rx && t && pid_watched(id >> 32)) {
		bpf_map_update_elem(&last_rx, &id, &sk, BPF_ANY);
	}
	if (!rx && args->ret == -EAGAIN)
		refused_write(id, sk);
	return 0;
}

SEC("tracepoint/sock/sock_recv_length")
int sock_recv_length(struct sock_length_args *args)
{
	return sock_length(args, 1);
}

SEC("tracepoint/sock/sock_send_length")
int sock_send_length(struct sock_length_args *args)
{
	return sock_length(args, 0);
}

// The fallback for kernels without those: the fd a read/write/recvfrom/sendto system call
// names, on the thread with an SSL call in flight, resolved through the task's file table.
struct sys_enter_args {
	__u64 common;
	long id;
	unsigned long args[6];
};

static __always_inline void bind_fd(unsigned long fd)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&calls, &id))
		return;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd & 0xfffff]) || !f)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return;
	bind_socket(BPF_CORE_READ(sock, sk));
}

#define SYS_ENTER(call)                                          \
	SEC("tracepoint/syscalls/sys_enter_" #call)              \
	int sys_enter_##call(struct sys_enter_args *args)        \
	{                                                        \
		bind_fd(args->args[0]);                          \
		return 0;                                        \
	}

SYS_ENTER(read)
SYS_ENTER(write)
SYS_ENTER(recvfrom)
SYS_ENTER(sendto)


// sock:inet_sock_set_state (Linux 4.16 and later; this layout has not changed since).
struct set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state(struct set_state_args *args)
{
	if (args->protocol != IPPROTO_TCP || !port_watched(args->sport))
		return 0;
	struct tuple t = {};
	t.family = args->family;
	t.lport = args->sport;
	t.rport = args->dport;
	if (args->family == AF_INET) {
		__builtin_memcpy(t.laddr, args->saddr, 4);
		__builtin_memcpy(t.raddr, args->daddr, 4);
	} else {
		__builtin_memcpy(t.laddr, args->saddr_v6, 16);
		__builtin_memcpy(t.raddr, args->daddr_v6, 16);
	}
	__u64 sk = (__u64)args->skaddr;
	struct tuple *known = bpf_map_lookup_elem(&socks, &sk);
	// A new connection (a listener's child) starts afresh; an entry for other addresses is a
	// closed socket whose memory the kernel gave to this one: its flags are not this one's.
	if (known && args->oldstate != TCP_LISTEN && same_conn(known, &t))
		t.flags = known->flags;
	bpf_map_update_elem(&socks, &sk, &t, BPF_ANY);
	emit(EV_STATE, sk, &t, args->oldstate, args->newstate);
	return 0;
}

static __always_inline void reset(__u8 kind, struct sock *sk)
{
	if (!sk)
		return;
	__u64 key = (__u64)sk;
	struct tuple t = {};
	if (!read_tuple(sk, &t))
		return;
	// The entry kept for this address tells a socket already closed (Linux unhashes it, and
	// forgets its port, before the RST of an abortive close) - if it is this connection's: the
	// kernel gives a closed socket's memory to new sockets, and another socket's RST (a
	// client's, on the same machine) must not end the old connection's successor.
	struct tuple *known = bpf_map_lookup_elem(&socks, &key);
	if (known && same_peer(known, &t))
		t = *known;
	else if (!port_watched(t.lport))
		return;
	emit(kind, key, &t, 0, 0);
}

// tcp:tcp_receive_reset: `skaddr` at offset 8.
struct receive_reset_args {
	__u64 common;
	struct sock *skaddr;
};

SEC("tracepoint/tcp/tcp_receive_reset")
int tcp_receive_reset(struct receive_reset_args *args)
{
	reset(EV_RESET_RX, args->skaddr);
	return 0;
}

// tcp:tcp_send_reset: `skbaddr` at 8, `skaddr` at 16 (NULL for a reset answering no socket).
struct send_reset_args {
	__u64 common;
	const void *skbaddr;
	struct sock *skaddr;
};

SEC("tracepoint/tcp/tcp_send_reset")
int tcp_send_reset(struct send_reset_args *args)
{
	reset(EV_RESET_TX, args->skaddr);
	return 0;
}
