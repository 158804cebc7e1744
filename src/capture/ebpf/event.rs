//! The records the BPF program writes to its ring buffer, parsed (the layout of `struct event`
//! in `ebpf/mqtt_keepalive.bpf.c`, little-endian, 88 bytes, then the copied plaintext).
//!
//! Contract: [`Record::parse`] never panics; a record shorter than its header or with an
//! unknown kind is an error the caller counts, and a data record's bytes are cut to what the
//! record really holds.

use crate::flow::FlowKey;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Bytes of the header before the copied data.
pub const HEADER_LEN: usize = 88;
/// Most plaintext bytes one record carries (`MAX_COPY` in the BPF program).
pub const MAX_COPY: usize = 16384;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// What a record reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// Plaintext the broker read (sent by the client) or wrote (to it): `len` bytes moved by
    /// the call, of which `data` was copied; `lost` bytes of this direction were lost before.
    Data { from_client: bool, len: u32, data: &'a [u8], lost: u64 },
    /// The broker's socket went from one TCP state to another (Linux's `TCP_*` numbers);
    /// `carried`: bytes have passed on it.
    State { old: i32, new: i32, carried: bool },
    /// The broker's socket received an RST.
    ResetReceived { carried: bool },
    /// The broker's socket sent an RST.
    ResetSent { carried: bool },
    /// A TLS close_notify: the client's (the broker's `SSL_read` returned 0) or the broker's
    /// (it called `SSL_shutdown`).
    CloseNotify { from_client: bool },
}

/// One ring-buffer record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// `bpf_ktime_get_ns`: nanoseconds of `CLOCK_MONOTONIC`.
    pub monotonic_ns: u64,
    /// The kernel socket's address: the connection's identity while it lives.
    pub sk: u64,
    /// The connection, the broker being the socket's local end.
    pub key: FlowKey,
    /// The process the probe fired in (for tracepoints, whatever ran: not meaningful).
    pub tgid: u32,
    pub kind: Kind<'a>,
}

/// Why a record could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a ring-buffer record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("a ring-buffer record of unknown kind {0}")]
    Kind(u8),
    #[error("a ring-buffer record of unknown address family {0}")]
    Family(u16),
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn addr(family: u16, raw: &[u8], port: u16) -> Result<SocketAddr, RecordError> {
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        AF_INET6 => {
            let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&raw[..16]).expect("16 bytes"));
            // A v4 client of a dual-stack listener: report it as the v4 address it is.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        other => return Err(RecordError::Family(other)),
    };
    Ok(SocketAddr::new(ip, port))
}

impl<'a> Record<'a> {
    /// Parses one record.
    pub fn parse(b: &'a [u8]) -> Result<Self, RecordError> {
        if b.len() < HEADER_LEN {
            return Err(RecordError::Short(b.len()));
        }
        // struct tuple at 16: laddr[16], raddr[16], lport, rport, family.
        let family = u16_at(b, 52);
        let broker = addr(family, &b[16..32], u16_at(b, 48))?;
        let client = addr(family, &b[32..48], u16_at(b, 50))?;
        // The tuple's flags: bit 0, bytes passed on the connection.
        let carried = u16_at(b, 54) & 1 == 1;
        let kind = match b[60] {
            k @ (1 | 2) => {
                let copied = (u32_at(b, 76) as usize).min(b.len() - HEADER_LEN).min(MAX_COPY);
                Kind::Data {
                    from_client: k == 1,
                    len: u32_at(b, 72),
                    data: &b[HEADER_LEN..HEADER_LEN + copied],
                    lost: u64_at(b, 80),
                }
            }
            3 => Kind::State { old: u32_at(b, 64) as i32, new: u32_at(b, 68) as i32, carried },
            4 => Kind::ResetReceived { carried },
            5 => Kind::ResetSent { carried },
            k @ (6 | 7) => Kind::CloseNotify { from_client: k == 6 },
            other => return Err(RecordError::Kind(other)),
        };
        Ok(Record {
            monotonic_ns: u64_at(b, 0),
            sk: u64_at(b, 8),
            key: FlowKey { client, broker },
            tgid: u32_at(b, 56),
            kind,
        })
    }
}

/// Builds records as the BPF program writes them (tests and benchmarks).
pub mod build {
    use super::*;

    fn header(ns: u64, sk: u64, key: FlowKey, kind: u8) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&ns.to_le_bytes());
        b[8..16].copy_from_slice(&sk.to_le_bytes());
        let family = match (key.broker.ip(), key.client.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                b[16..20].copy_from_slice(&l.octets());
                b[32..36].copy_from_slice(&r.octets());
                AF_INET
            }
            (l, r) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                b[16..32].copy_from_slice(&v6(l).octets());
                b[32..48].copy_from_slice(&v6(r).octets());
                AF_INET6
            }
        };
        b[48..50].copy_from_slice(&key.broker.port().to_le_bytes());
        b[50..52].copy_from_slice(&key.client.port().to_le_bytes());
        b[52..54].copy_from_slice(&family.to_le_bytes());
        b[60] = kind;
        b
    }

    /// A data record: `data` copied of `len` moved.
    pub fn data(ns: u64, sk: u64, key: FlowKey, from_client: bool, len: u32, data: &[u8], lost: u64) -> Vec<u8> {
        let mut b = header(ns, sk, key, if from_client { 1 } else { 2 });
        b[72..76].copy_from_slice(&len.to_le_bytes());
        b[76..80].copy_from_slice(&(data.len() as u32).to_le_bytes());
        b[80..88].copy_from_slice(&lost.to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    /// A state-change record of a socket that carried bytes.
    pub fn state(ns: u64, sk: u64, key: FlowKey, old: i32, new: i32) -> Vec<u8> {
        state_after(ns, sk, key, old, new, true)
    }

    /// A state-change record; `carried`: bytes passed on the socket.
    pub fn state_after(ns: u64, sk: u64, key: FlowKey, old: i32, new: i32, carried: bool) -> Vec<u8> {
        let mut b = header(ns, sk, key, 3);
        b[64..68].copy_from_slice(&old.to_le_bytes());
        b[68..72].copy_from_slice(&new.to_le_bytes());
        b[54] = u8::from(carried);
        b
    }

    /// A reset record (`sent`: by the broker's socket) of a socket that carried bytes.
    pub fn reset(ns: u64, sk: u64, key: FlowKey, sent: bool) -> Vec<u8> {
        let mut b = header(ns, sk, key, if sent { 5 } else { 4 });
        b[54] = 1;
        b
    }

    /// A TLS close_notify record.
    pub fn close_notify(ns: u64, sk: u64, key: FlowKey, from_client: bool) -> Vec<u8> {
        header(ns, sk, key, if from_client { 6 } else { 7 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FlowKey {
        FlowKey { client: "10.1.2.3:40000".parse().unwrap(), broker: "10.0.0.9:8883".parse().unwrap() }
    }

    #[test]
    fn records_round_trip() {
        let b = build::data(5, 0xffff_8888, key(), true, 20, b"\xc0\x00", 3);
        let r = Record::parse(&b).unwrap();
        assert_eq!((r.monotonic_ns, r.sk, r.key), (5, 0xffff_8888, key()));
        assert_eq!(r.kind, Kind::Data { from_client: true, len: 20, data: b"\xc0\x00", lost: 3 });
        let b = build::state(6, 1, key(), 1, 4);
        assert_eq!(Record::parse(&b).unwrap().kind, Kind::State { old: 1, new: 4, carried: true });
        let b = build::state_after(6, 1, key(), 1, 4, false);
        assert_eq!(Record::parse(&b).unwrap().kind, Kind::State { old: 1, new: 4, carried: false });
        assert_eq!(Record::parse(&build::reset(7, 1, key(), true)).unwrap().kind, Kind::ResetSent { carried: true });
        let b = build::reset(7, 1, key(), false);
        assert_eq!(Record::parse(&b).unwrap().kind, Kind::ResetReceived { carried: true });
        let b = build::close_notify(8, 1, key(), true);
        assert_eq!(Record::parse(&b).unwrap().kind, Kind::CloseNotify { from_client: true });
        let b = build::close_notify(8, 1, key(), false);
        assert_eq!(Record::parse(&b).unwrap().kind, Kind::CloseNotify { from_client: false });
    }

    #[test]
    fn v6_and_v4_mapped_addresses() {
        let v6 =
            FlowKey { client: "[2001:db8::1]:5000".parse().unwrap(), broker: "[2001:db8::9]:8883".parse().unwrap() };
        assert_eq!(Record::parse(&build::state(1, 1, v6, 3, 1)).unwrap().key, v6);
        // A dual-stack listener's v4 client is reported as v4.
        let mut b = build::state(1, 1, v6, 3, 1);
        b[32..48].copy_from_slice(&"10.1.2.3".parse::<Ipv4Addr>().unwrap().to_ipv6_mapped().octets());
        assert_eq!(Record::parse(&b).unwrap().key.client, "10.1.2.3:5000".parse().unwrap());
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(Record::parse(&[0; 10]), Err(RecordError::Short(10)));
        let mut b = build::state(1, 1, key(), 3, 1);
        b[60] = 8;
        assert_eq!(Record::parse(&b), Err(RecordError::Kind(8)));
        b[60] = 3;
        b[52] = 7;
        assert_eq!(Record::parse(&b), Err(RecordError::Family(7)));
        // A data record claiming more bytes than it holds gives what it holds.
        let mut b = build::data(1, 1, key(), false, 100, b"abc", 0);
        b[76..80].copy_from_slice(&100u32.to_le_bytes());
        assert!(matches!(Record::parse(&b).unwrap().kind, Kind::Data { data: b"abc", .. }));
        for n in 0..b.len() {
            let _ = Record::parse(&b[..n]);
        }
    }
}
