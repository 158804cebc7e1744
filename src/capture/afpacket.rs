//! Live capture through Linux AF_PACKET sockets, with no system library (`unsafe` code, kept to
//! the system calls).
//!
//! Contract: [`AfPacket::open`] opens one `SOCK_DGRAM` packet socket per interface (`any`: all
//! interfaces), attaches the kernel BPF filter from [`super::bpf::port_filter`] before binding
//! (so nothing unfiltered is queued), asks for nanosecond kernel timestamps, and enlarges the
//! receive buffer. [`AfPacket::next_packet`] waits at most the given time and yields IP packets
//! (link type RAW) with their kernel timestamps. On loopback each packet is seen twice by a
//! packet socket; the outgoing copy is dropped, as libpcap does. [`AfPacket::stats`] reads the
//! kernel's received and dropped counts.
#![allow(unsafe_code)] // AF_PACKET sockets are system calls; each block says why it is sound

use super::bpf::{self, Insn};
use super::packet_socket::{self, ARPHRD_LOOPBACK, ETH_P_ALL, os_err, packet_statistics, setsockopt};
use super::{KernelStats, LinkType, LiveCaptureError, Packet};
use crate::time::Timestamp;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

struct Sock {
    fd: OwnedFd,
    iface: String,
}

/// Live capture on one or more interfaces.
pub struct AfPacket {
    socks: Vec<Sock>,
    pollfds: Vec<libc::pollfd>,
    /// Index of the next socket to read without polling (round robin over ready sockets).
    ready: Vec<usize>,
    buf: Vec<u8>,
    stats: KernelStats,
}

const RECV_BUFFER: libc::c_int = 64 << 20;

impl AfPacket {
    /// Opens the capture on `interfaces` for TCP to or from `ports`.
    pub fn open(interfaces: &[String], ports: &[u16]) -> Result<Self, LiveCaptureError> {
        let filter = bpf::port_filter(ports);
        let mut socks = Vec::new();
        for iface in interfaces {
            socks.push(open_one(iface, &filter)?);
        }
        let pollfds =
            socks.iter().map(|s| libc::pollfd { fd: s.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        Ok(AfPacket {
            socks,
            pollfds,
            ready: Vec::new(),
            buf: vec![0; bpf::SNAPLEN as usize],
            stats: KernelStats::default(),
        })
    }

    /// The next packet, waiting at most `timeout`; `Ok(None)` when none came. A packet without a
    /// kernel timestamp is stamped `now`.
    pub fn next_packet(&mut self, timeout: Duration, now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        let mut waited = false;
        loop {
            while let Some(i) = self.ready.pop() {
                if let Some((len, orig_len, ts)) = self.recv(i)? {
                    let ts = ts.unwrap_or(now);
                    self.ready.push(i); // more may be queued on this socket
                    return Ok(Some(Packet { ts, link: LinkType::RAW, data: &self.buf[..len], orig_len }));
                }
            }
            if waited || timeout.is_zero() {
                return Ok(None); // a zero timeout takes only what is known to be queued: no poll
            }
            if let Err(e) = super::poll::wait(&mut self.pollfds, timeout) {
                return Err(LiveCaptureError::Os { iface: self.socks[0].iface.clone(), what: "poll", source: e });
            }
            for (i, p) in self.pollfds.iter().enumerate() {
                if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    let iface = self.socks[i].iface.clone();
                    let source = io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the interface went down or disappeared (start the agent again once it is back; the systemd unit restarts it)",
                    );
                    return Err(LiveCaptureError::Os { iface, what: "receive", source });
                }
                if p.revents & libc::POLLIN != 0 {
                    self.ready.push(i);
                }
            }
            waited = true;
        }
    }

    /// Reads one packet from socket `i` into `buf`: (captured length, wire length, kernel
    /// timestamp if any), or `None` when nothing is queued. Outgoing loopback copies are skipped.
    fn recv(&mut self, i: usize) -> Result<Option<(usize, u32, Option<Timestamp>)>, LiveCaptureError> {
        loop {
            // SAFETY: all-zero is a valid value for these plain C structs.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut control = [0u64; 8]; // aligned room for one SCM_TIMESTAMPNS message
            let mut iov = libc::iovec { iov_base: self.buf.as_mut_ptr().cast(), iov_len: self.buf.len() };
            // SAFETY: as above.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_name = (&mut addr as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control);
            let fd = self.socks[i].fd.as_raw_fd();
            // SAFETY: `msg` points at live buffers of the sizes it states.
            let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                    _ => Err(LiveCaptureError::Os { iface: self.socks[i].iface.clone(), what: "receive", source: e }),
                };
            }
            if addr.sll_pkttype == libc::PACKET_OUTGOING && addr.sll_hatype == ARPHRD_LOOPBACK {
                continue;
            }
            let ts = timestamp_of(&msg);
            let orig_len = n as usize;
            return Ok(Some((orig_len.min(self.buf.len()), orig_len as u32, ts)));
        }
    }

    /// Kernel counts since the capture opened (the kernel resets its counters on each read).
    pub fn stats(&mut self) -> KernelStats {
        for s in &self.socks {
            if let Some(st) = packet_statistics(&s.fd, libc::tpacket_stats { tp_packets: 0, tp_drops: 0 }) {
                self.stats.received += u64::from(st.tp_packets);
                self.stats.dropped += u64::from(st.tp_drops);
            }
        }
        self.stats
    }
}

impl super::LiveSource for AfPacket {
    fn next_packet(&mut self, timeout: Duration, now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        AfPacket::next_packet(self, timeout, now)
    }
    fn stats(&mut self) -> KernelStats {
        AfPacket::stats(self)
    }
}

fn open_one(iface: &str, filter: &[Insn]) -> Result<Sock, LiveCaptureError> {
    let (fd, ifindex) = packet_socket::open(iface, ETH_P_ALL.to_be(), filter)?;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1 as &libc::c_int)
        .map_err(|_| os_err(iface, "enable timestamps"))?;
    // A large buffer absorbs bursts; FORCE needs CAP_NET_ADMIN, the plain one is capped by rmem_max.
    if setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RECV_BUFFER).is_err() {
        let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &RECV_BUFFER);
    }
    packet_socket::bind(&fd, iface, ifindex)?;
    Ok(Sock { fd, iface: iface.into() })
}

/// The SCM_TIMESTAMPNS control message of a received packet.
fn timestamp_of(msg: &libc::msghdr) -> Option<Timestamp> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer in bounds.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                return Some(Timestamp::from_parts(ts.tv_sec as u64, ts.tv_nsec as u64, 1_000_000_000));
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interface_names_the_ones_that_exist() {
        let Err(e) = AfPacket::open(&["no-such-if0".into()], &[1883]) else { panic!("opened a missing interface") };
        let msg = e.to_string();
        assert!(msg.contains("no-such-if0") && msg.contains("lo") && msg.contains("any"), "{msg}");
    }
}
