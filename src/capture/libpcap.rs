//! Live capture through libpcap (cargo feature `libpcap`), via the `pcap` crate.
//!
//! Contract: as [`super::afpacket::AfPacket`], with libpcap doing the capture: one handle per
//! interface in immediate mode with nanosecond timestamps, the port filter (or a full BPF
//! expression from `--filter`) compiled by libpcap, frames yielded with their link type.

use super::{KernelStats, LinkType, LiveCaptureError, Packet, interface_names};
use crate::time::Timestamp;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Live capture on one or more interfaces through libpcap.
pub struct Libpcap {
    caps: Vec<(String, pcap::Capture<pcap::Active>)>,
    pollfds: Vec<libc::pollfd>,
    next: usize,
    stats: Vec<KernelStats>,
    buf: Vec<u8>,
}

fn err(iface: &str, what: &'static str, e: pcap::Error) -> LiveCaptureError {
    let text = e.to_string();
    if text.contains("ermission") || text.contains("not permitted") {
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mqtt-keepalive".into());
        return LiveCaptureError::Permission { iface: iface.into(), exe };
    }
    if text.contains("No such device") || text.contains("doesn't exist") {
        return LiveCaptureError::NoSuchInterface { name: iface.into(), existing: interface_names() };
    }
    LiveCaptureError::Os { iface: iface.into(), what, source: std::io::Error::other(text) }
}

/// The libpcap filter expression for the broker ports.
pub fn port_expression(ports: &[u16]) -> String {
    ports.iter().map(|p| format!("tcp port {p}")).collect::<Vec<_>>().join(" or ")
}

impl Libpcap {
    /// Opens `interfaces` with the port filter, or `filter` when given.
    pub fn open(interfaces: &[String], ports: &[u16], filter: Option<&str>) -> Result<Self, LiveCaptureError> {
        let expr = filter.map_or_else(|| port_expression(ports), str::to_string);
        let mut caps = Vec::new();
        for iface in interfaces {
            let mut cap = pcap::Capture::from_device(iface.as_str())
                .and_then(|c| {
                    c.promisc(false)
                        .snaplen(super::bpf::SNAPLEN as i32)
                        .immediate_mode(true)
                        .precision(pcap::Precision::Nano)
                        .buffer_size(64 << 20)
                        .open()
                })
                .map_err(|e| err(iface, "open", e))?;
            cap.filter(&expr, true).map_err(|e| err(iface, "compile the filter", e))?;
            let cap = cap.setnonblock().map_err(|e| err(iface, "set non-blocking", e))?;
            caps.push((iface.clone(), cap));
        }
        let pollfds =
            caps.iter().map(|(_, c)| libc::pollfd { fd: c.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        let stats = vec![KernelStats::default(); caps.len()];
        Ok(Libpcap { caps, pollfds, next: 0, stats, buf: Vec::new() })
    }

    /// The next frame, waiting at most `timeout`.
    pub fn next_packet(&mut self, timeout: Duration, _now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        for pass in 0..2 {
            // Try every handle once (round robin), then wait on all of them, then try again.
            for _ in 0..self.caps.len() {
                let i = self.next;
                self.next = (self.next + 1) % self.caps.len();
                let link = LinkType(self.caps[i].1.get_datalink().0 as u32);
                match self.caps[i].1.next_packet() {
                    Ok(p) => {
                        // Copied out: a borrow of the handle cannot leave this loop (NLL).
                        let ts =
                            Timestamp::from_parts(p.header.ts.tv_sec as u64, p.header.ts.tv_usec as u64, 1_000_000_000);
                        let orig_len = p.header.len;
                        self.buf.clear();
                        self.buf.extend_from_slice(p.data);
                        return Ok(Some(Packet { ts, link, data: &self.buf, orig_len }));
                    }
                    Err(pcap::Error::TimeoutExpired | pcap::Error::NoMorePackets) => {}
                    Err(e) => return Err(err(&self.caps[i].0, "receive", e)),
                }
            }
            if timeout.is_zero() {
                break; // only what is already queued: no poll
            }
            if pass == 0 {
                super::poll::wait(&mut self.pollfds, timeout).map_err(|source| LiveCaptureError::Os {
                    iface: self.caps[0].0.clone(),
                    what: "poll",
                    source,
                })?;
            }
        }
        Ok(None)
    }

    /// libpcap's counts since the capture opened.
    pub fn stats(&mut self) -> KernelStats {
        for (i, (_, cap)) in self.caps.iter_mut().enumerate() {
            if let Ok(s) = cap.stats() {
                self.stats[i] = KernelStats {
                    received: u64::from(s.received),
                    dropped: u64::from(s.dropped) + u64::from(s.if_dropped),
                    freezes: 0,
                };
            }
        }
        self.stats.iter().fold(KernelStats::default(), |a, s| KernelStats {
            received: a.received + s.received,
            dropped: a.dropped + s.dropped,
            freezes: 0,
        })
    }
}

impl super::LiveSource for Libpcap {
    fn next_packet(&mut self, timeout: Duration, now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        Libpcap::next_packet(self, timeout, now)
    }
    fn stats(&mut self) -> KernelStats {
        Libpcap::stats(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_expression_covers_every_port() {
        assert_eq!(port_expression(&[1883, 8883]), "tcp port 1883 or tcp port 8883");
    }
}
