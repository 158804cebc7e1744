//! A realistic synthetic broker workload, written straight to a pcap file in time order.
//!
//! N sessions connect in the first seconds (handshake, CONNECT, CONNACK), then: publishers send
//! QoS 0 PUBLISHes with payloads (sometimes several in one segment) and ping when idle for a
//! keepalive; idle clients only ping; a share of clients fall silent and are closed by the
//! broker with a bare FIN at 1.5 x keepalive (plus a little lateness); the rest DISCONNECT at the
//! end. Broker ACKs follow client data. Sessions are interleaved by a k-way merge on each
//! session's next action, so memory stays O(sessions) whatever the capture size. Deterministic
//! for a given seed.

use super::mqtt;
use super::{Encap, Flags, build_frame, write_pcap_header, write_pcap_record};
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Workload shape.
#[derive(Clone, Debug)]
pub struct Workload {
    pub sessions: u32,
    pub duration: Duration,
    /// Mean seconds between a publisher's PUBLISHes.
    pub publish_interval_s: f64,
    /// Largest PUBLISH payload (uniform 16..max).
    pub max_payload: usize,
    /// Share of sessions that only ping.
    pub idle_share: f64,
    /// Share of sessions that fall silent and are closed by the broker.
    pub silent_share: f64,
    /// Scale mode: each session only connects and pings once, and stays open.
    pub connect_only: bool,
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            sessions: 2000,
            duration: Duration::from_secs(600),
            publish_interval_s: 2.0,
            max_payload: 600,
            idle_share: 0.25,
            silent_share: 0.05,
            connect_only: false,
            seed: 1,
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub packets: u64,
    pub bytes: u64,
    /// Sessions closed by the broker for silence.
    pub silent: u32,
}

/// splitmix64: a small deterministic generator (no dependency needed for test data).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Exponentially distributed with the given mean.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Publisher,
    Idle,
    Silent,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Syn,
    SynAck,
    Ack,
    Connect,
    ConnAck,
    /// The next client action: publish or ping.
    Act,
    PingResp,
    BrokerAck,
    Disconnect,
    ClientFin,
    BrokerFin,
    LastAck,
    Done,
}

struct Session {
    client: SocketAddr,
    broker: SocketAddr,
    cseq: u32,
    bseq: u32,
    kind: Kind,
    keepalive: u16,
    last_sent: f64,
    /// When a silent client stops.
    falls_silent: f64,
    step: Step,
    /// Client FIN first (normal end) or broker FIN first (silent client).
    broker_closes: bool,
}

const US: f64 = 1e-6;

impl Session {
    fn frame(&mut self, from_client: bool, flags: Flags, payload: &[u8]) -> Vec<u8> {
        let f = if from_client {
            build_frame(Encap::Ethernet, self.client, self.broker, self.cseq, self.bseq, flags, payload)
        } else {
            build_frame(Encap::Ethernet, self.broker, self.client, self.bseq, self.cseq, flags, payload)
        };
        let consumed = payload.len() as u32 + u32::from(flags.syn) + u32::from(flags.fin);
        if from_client {
            self.cseq = self.cseq.wrapping_add(consumed);
        } else {
            self.bseq = self.bseq.wrapping_add(consumed);
        }
        f
    }

    /// Emits this step's frame and returns the time of the next step (None: finished).
    fn step(
        &mut self,
        now: f64,
        end: f64,
        w: &Workload,
        rng: &mut Rng,
        out: &mut impl FnMut(f64, Vec<u8>),
    ) -> Option<f64> {
        let ack = Flags { ack: true, ..Default::default() };
        let (next_step, at) = match self.step {
            Step::Syn => {
                out(now, self.frame(true, Flags { syn: true, ..Default::default() }, &[]));
                (Step::SynAck, now + 30.0 * US)
            }
            Step::SynAck => {
                out(now, self.frame(false, Flags { syn: true, ack: true, ..Default::default() }, &[]));
                (Step::Ack, now + 20.0 * US)
            }
            Step::Ack => {
                out(now, self.frame(true, ack, &[]));
                (Step::Connect, now + 100.0 * US)
            }
            Step::Connect => {
                let id = format!("device-{:08x}", self.client.port() as u64 ^ (u64::from(self.cseq) << 16));
                let p = mqtt::connect(4, self.keepalive, &id, rng.below(2) == 0, None);
                out(now, self.frame(true, ack, &p));
                self.last_sent = now;
                (Step::ConnAck, now + 150.0 * US)
            }
            Step::ConnAck => {
                out(now, self.frame(false, ack, &mqtt::connack(0, None)));
                let next = if w.connect_only {
                    now + f64::from(self.keepalive) * 0.5
                } else {
                    self.next_action_time(now, w, rng)
                };
                (Step::Act, next)
            }
            Step::Act => {
                let ka = f64::from(self.keepalive);
                if w.connect_only {
                    out(now, self.frame(true, ack, &mqtt::pingreq()));
                    self.step = Step::PingResp;
                    return Some(now + 200.0 * US);
                }
                if self.kind == Kind::Silent && now >= self.falls_silent {
                    // Silent from its last packet: the broker closes it at 1.5 x keepalive, a bit late.
                    self.broker_closes = true;
                    let close_at = self.last_sent + 1.5 * ka + rng.unit() * 2.0;
                    self.step = Step::BrokerFin;
                    return Some(close_at.max(now));
                }
                if now >= end {
                    self.step = Step::Disconnect;
                    return Some(now);
                }
                let idle_for = now - self.last_sent;
                if self.kind == Kind::Publisher && idle_for < ka {
                    // One to three PUBLISHes in one segment.
                    let mut payload = Vec::new();
                    for _ in 0..1 + (rng.below(10) / 8) {
                        let size = 16 + rng.below(w.max_payload.saturating_sub(16) as u64) as usize;
                        payload.extend_from_slice(&mqtt::publish("sensors/telemetry", &vec![b'x'; size]));
                    }
                    out(now, self.frame(true, ack, &payload));
                    self.last_sent = now;
                    self.step = Step::BrokerAck;
                    return Some(now + 40.0 * US);
                }
                out(now, self.frame(true, ack, &mqtt::pingreq()));
                self.last_sent = now;
                (Step::PingResp, now + 200.0 * US)
            }
            Step::PingResp => {
                out(now, self.frame(false, ack, &mqtt::pingresp()));
                if w.connect_only {
                    self.step = Step::Done;
                    return None;
                }
                (Step::Act, self.next_action_time(now, w, rng))
            }
            Step::BrokerAck => {
                out(now, self.frame(false, ack, &[]));
                (Step::Act, self.next_action_time(now, w, rng))
            }
            Step::Disconnect => {
                out(now, self.frame(true, ack, &mqtt::disconnect(None)));
                (Step::ClientFin, now + 50.0 * US)
            }
            Step::ClientFin => {
                out(now, self.frame(true, Flags { fin: true, ack: true, ..Default::default() }, &[]));
                (if self.broker_closes { Step::LastAck } else { Step::BrokerFin }, now + 60.0 * US)
            }
            Step::BrokerFin => {
                out(now, self.frame(false, Flags { fin: true, ack: true, ..Default::default() }, &[]));
                (if self.broker_closes { Step::ClientFin } else { Step::LastAck }, now + 60.0 * US)
            }
            Step::LastAck => {
                let from_client = !self.broker_closes;
                out(now, self.frame(from_client, ack, &[]));
                (Step::Done, now)
            }
            Step::Done => return None,
        };
        self.step = next_step;
        (next_step != Step::Done).then_some(at)
    }

    fn next_action_time(&self, now: f64, w: &Workload, rng: &mut Rng) -> f64 {
        let ka = f64::from(self.keepalive);
        match self.kind {
            Kind::Idle => self.last_sent + ka,
            Kind::Silent if now >= self.falls_silent => now,
            Kind::Publisher | Kind::Silent => (now + rng.exp(w.publish_interval_s)).min(self.last_sent + ka),
        }
    }
}

/// Writes the workload as a classic pcap to `out`.
pub fn write(w: &Workload, out: impl Write) -> io::Result<Written> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    let mut header = Vec::new();
    write_pcap_header(&mut header, Encap::Ethernet.link_type(), 65535);
    out.write_all(&header)?;
    let mut rng = Rng(w.seed);
    let start = 1_750_000_000.0;
    let end = start + w.duration.as_secs_f64();
    let broker = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 1883);
    let mut sessions = Vec::with_capacity(w.sessions as usize);
    let mut heap = BinaryHeap::with_capacity(w.sessions as usize);
    let mut written = Written::default();
    for i in 0..w.sessions {
        let r = rng.unit();
        let kind = if r < w.silent_share {
            Kind::Silent
        } else if r < w.silent_share + w.idle_share {
            Kind::Idle
        } else {
            Kind::Publisher
        };
        written.silent += u32::from(kind == Kind::Silent && !w.connect_only);
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x0a01_0000 + i / 60000 * 65536 + i % 60000)),
            1024 + (i % 60000) as u16,
        );
        let ramp = if w.connect_only { w.duration.as_secs_f64() } else { 5.0 };
        let t0 = start + rng.unit() * ramp;
        let keepalive = [10u16, 30, 60][rng.below(3) as usize];
        let falls_silent = t0 + rng.unit() * (w.duration.as_secs_f64() * 0.8);
        sessions.push(Session {
            client,
            broker,
            cseq: rng.next() as u32,
            bseq: rng.next() as u32,
            kind,
            keepalive,
            last_sent: t0,
            falls_silent,
            step: Step::Syn,
            broker_closes: false,
        });
        heap.push(Reverse((OrdF64(t0), i)));
    }
    let mut buf = Vec::with_capacity(2048);
    while let Some(Reverse((OrdF64(now), i))) = heap.pop() {
        let s = &mut sessions[i as usize];
        let next = s.step(now, end, w, &mut rng, &mut |ts, frame| {
            buf.clear();
            let ts = Timestamp::from_nanos((ts * 1e9).round() as i64);
            write_pcap_record(&mut buf, ts, &frame, usize::MAX);
            written.packets += 1;
            written.bytes += frame.len() as u64;
            // Errors surface at the flush below.
            let _ = out.write_all(&buf);
        });
        if let Some(at) = next {
            heap.push(Reverse((OrdF64(at), i)));
        }
    }
    out.flush()?;
    Ok(written)
}

/// f64 with a total order (times are finite).
#[derive(Clone, Copy, PartialEq)]
struct OrdF64(f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{OfflineReader, PacketSource};

    #[test]
    fn workload_is_time_ordered_and_deterministic() {
        let w = Workload { sessions: 20, duration: Duration::from_secs(120), ..Default::default() };
        let mut a = Vec::new();
        let written = write(&w, &mut a).unwrap();
        let mut b = Vec::new();
        write(&w, &mut b).unwrap();
        assert_eq!(a, b);
        let mut r = OfflineReader::from_reader(std::path::Path::new("gen"), std::io::Cursor::new(a), None).unwrap();
        let mut last = Timestamp::from_nanos(0);
        let mut n = 0;
        while let Some(p) = r.next_packet().unwrap() {
            assert!(p.ts >= last);
            last = p.ts;
            n += 1;
        }
        assert_eq!(n, written.packets);
        assert!(written.packets > 20 * 10);
    }
}
