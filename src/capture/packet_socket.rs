//! The system calls both AF_PACKET captures share (the recvmsg socket of `afpacket` and the
//! TPACKET_V3 ring of `ring`): opening a packet socket, attaching the kernel BPF filter, binding
//! to an interface, socket options and the kernel's packet statistics.
//!
//! Contract: every function maps its failure to a [`LiveCaptureError`] naming the interface and
//! the step (a missing interface lists the ones that exist; a refused socket names
//! CAP_NET_RAW), and none reads a clock.
#![allow(unsafe_code)] // system calls; each block says why it is sound

use super::bpf::Insn;
use super::{LiveCaptureError, interface_names};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Every protocol (`ETH_P_ALL`), in network order when bound.
pub(super) const ETH_P_ALL: u16 = 0x0003;
/// The hardware type of loopback (its outgoing copies are dropped, as libpcap does).
pub(super) const ARPHRD_LOOPBACK: u16 = 772;

/// The last OS error at step `what` on `iface`.
pub(super) fn os_err(iface: &str, what: &'static str) -> LiveCaptureError {
    LiveCaptureError::Os { iface: iface.to_string(), what, source: io::Error::last_os_error() }
}

pub(super) fn no_such(iface: &str) -> LiveCaptureError {
    LiveCaptureError::NoSuchInterface { name: iface.into(), existing: interface_names() }
}

/// Sets a socket option to `value`.
pub(super) fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The kernel's packet statistics of the socket, read into `st` (a zeroed `tpacket_stats`, or
/// `tpacket_stats_v3` for a TPACKET_V3 ring); reset by each read; `None` when the call fails.
pub(super) fn packet_statistics<T>(fd: &OwnedFd, mut st: T) -> Option<T> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `st` is a live `T` and `len` its size; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut T).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(st)
}

/// A new `SOCK_DGRAM` packet socket for `protocol` (network order; 0: nothing until bound) on
/// `iface`, with `filter` attached, and the index to bind it to (0 for `any`).
pub(super) fn open(iface: &str, protocol: u16, filter: &[Insn]) -> Result<(OwnedFd, libc::c_int), LiveCaptureError> {
    let ifindex = if iface == "any" {
        0
    } else {
        let name = std::ffi::CString::new(iface).map_err(|_| no_such(iface))?;
        // SAFETY: `name` is a NUL-terminated string.
        match unsafe { libc::if_nametoindex(name.as_ptr()) } {
            0 => return Err(no_such(iface)),
            i => i as libc::c_int,
        }
    };
    // SAFETY: plain socket(2) call.
    let raw =
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::c_int::from(protocol)) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::PermissionDenied {
            let exe =
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mqtt-keepalive".into());
            return Err(LiveCaptureError::Permission { iface: iface.into(), exe });
        }
        return Err(LiveCaptureError::Os { iface: iface.into(), what: "socket", source: e });
    }
    // SAFETY: `raw` is a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut libc::sock_filter };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog).map_err(|_| os_err(iface, "attach BPF filter"))?;
    Ok((fd, ifindex))
}

/// Binds the socket to every protocol on interface `ifindex` (0: all): packets flow from now.
pub(super) fn bind(fd: &OwnedFd, iface: &str, ifindex: libc::c_int) -> Result<(), LiveCaptureError> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex;
    // SAFETY: `addr` is a sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 { Err(os_err(iface, "bind")) } else { Ok(()) }
}
