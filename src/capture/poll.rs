//! The one `poll(2)` every capture loop waits with (the AF_PACKET ring and `recvmsg` socket,
//! libpcap's handles, the eBPF ring buffer).
//!
//! Contract: [`wait`] waits until one of the descriptors is ready (readable, or in error or
//! hung up: the caller reads `revents`), at most `timeout`. A zero timeout returns at once
//! without the system call (a caller asked for what is already queued). Any other timeout is
//! rounded up to whole milliseconds, poll's unit, so a wait under a millisecond is never a zero
//! timeout, which would spin. A signal ending the wait early is not an error: it returns 0, as a
//! timeout does, and the loop looks at its stop flag. Any other failure is returned.
#![allow(unsafe_code)] // poll(2); the block says why it is sound

use std::io;
use std::time::Duration;

/// Descriptors ready after waiting at most `timeout` (0: none, or a signal). See the module doc.
pub fn wait(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    if timeout.is_zero() || fds.is_empty() {
        return Ok(0);
    }
    let ms = timeout.as_nanos().div_ceil(1_000_000).clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn pollfd(fd: &impl AsRawFd) -> libc::pollfd {
        libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }
    }

    #[test]
    fn waits_for_data_and_rounds_short_timeouts_up() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut fds = [pollfd(&b)];
        assert_eq!(wait(&mut fds, Duration::ZERO).unwrap(), 0, "a zero timeout does not poll");
        #[allow(clippy::disallowed_methods)] // the wait itself is what is checked: its lower bound
        let started = std::time::Instant::now();
        assert_eq!(wait(&mut fds, Duration::from_nanos(1)).unwrap(), 0, "nothing to read");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1), "1 ns is a 1 ms poll, not a spin: {waited:?}");
        a.write_all(b"x").unwrap();
        assert_eq!(wait(&mut fds, Duration::from_secs(5)).unwrap(), 1);
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
    }

    #[test]
    fn a_bad_descriptor_is_reported_not_hidden() {
        let mut fds = [libc::pollfd { fd: -1, events: libc::POLLIN, revents: 0 }];
        // A negative fd is ignored by poll(2): nothing ready, no error.
        assert_eq!(wait(&mut fds, Duration::from_millis(1)).unwrap(), 0);
        let mut closed = [libc::pollfd { fd: 1 << 20, events: libc::POLLIN, revents: 0 }];
        assert_eq!(wait(&mut closed, Duration::from_millis(1)).unwrap(), 1, "an fd not open is ready, with POLLNVAL");
        assert_ne!(closed[0].revents & libc::POLLNVAL, 0);
    }
}
