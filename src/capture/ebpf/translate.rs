//! From the BPF program's records to the pipeline's stream entry points: plaintext as in-order
//! stream bytes of a direction (what the probe could not copy as a gap), TCP state changes of
//! the broker's socket as FINs and RSTs by side, kernel time as real time, in the order things
//! happened.
//!
//! Contract: the broker's socket tells who closed first. ESTABLISHED -> FIN_WAIT1 is the
//! broker's FIN, ESTABLISHED -> CLOSE_WAIT the client's; CLOSE_WAIT -> LAST_ACK is the broker's
//! FIN after the client's, and FIN_WAIT1/FIN_WAIT2 -> CLOSING, TIME_WAIT or CLOSE the client's
//! FIN after the broker's (Linux reports the move to TIME_WAIT as CLOSE). SYN_RECV ->
//! ESTABLISHED is a connection seen from its start. Resets come from the reset tracepoints,
//! received (the client's) or sent (the broker's); the CLOSE that follows adds nothing. TLS
//! close_notify alerts come from libssl (the broker's `SSL_shutdown`, or its `SSL_read`
//! returning 0), as the TLS layer reports them in a decrypted capture.
//!
//! Order: records reach the ring buffer in the order their probes finished, on whatever CPU:
//! a plaintext record only when its SSL call returns, so a client's RST arriving meanwhile (a
//! tracepoint in softirq) can be written first although the broker had sent the bytes before.
//! The program stamps a plaintext record with the time its call began, and [`Translator::push`]
//! keeps records in a window of [`REORDER_WINDOW`], handing them over in the order of their
//! stamps (ties: plaintext first, then the order read). Then the client's closes (its FIN, its
//! RST) wait until the broker is done with the connection (it closes, resets, sends its
//! close_notify or frees the SSL object) or [`CLOSE_HOLD`] passes: the broker reads what came
//! before them (a DISCONNECT) only after the kernel reported them, and no close overtakes data
//! the broker had already read or sent. So no verdict depends on which CPU reported first.
//!
//! Visibility: a connection that carried bytes but none of whose SSL calls could be tied to it
//! closes as not visible ([`TcpChange::NotVisible`]), never as a close without DISCONNECT.

use super::event::{Kind, Record, RecordError, SocketFlags};
use crate::capture::Intake;
use crate::flow::{FlowKey, Side};
use crate::time::Timestamp;
use crate::tracker::{StreamInput, TcpChange};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

/// Linux's TCP states (`include/net/tcp_states.h`).
mod state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_RECV: i32 = 3;
    pub const FIN_WAIT1: i32 = 4;
    pub const FIN_WAIT2: i32 = 5;
    pub const TIME_WAIT: i32 = 6;
    pub const CLOSE: i32 = 7;
    pub const CLOSE_WAIT: i32 = 8;
    pub const LAST_ACK: i32 = 9;
    pub const CLOSING: i32 = 11;
}

/// What a state change of the broker's socket means, if anything.
pub fn tcp_change(old: i32, new: i32) -> Option<TcpChange> {
    use state::*;
    match (old, new) {
        (SYN_RECV, ESTABLISHED) => Some(TcpChange::Established),
        (ESTABLISHED, FIN_WAIT1) | (CLOSE_WAIT, LAST_ACK) => Some(TcpChange::Fin(Side::Broker)),
        (ESTABLISHED, CLOSE_WAIT) => Some(TcpChange::Fin(Side::Client)),
        (FIN_WAIT1 | FIN_WAIT2, CLOSING | TIME_WAIT | CLOSE) => Some(TcpChange::Fin(Side::Client)),
        _ => None,
    }
}

/// The smallest change of the real-time clock against the monotonic one that is followed.
pub const CLOCK_STEP: Duration = Duration::from_millis(1);

/// How long a record waits to be put in order: longer than an SSL call's stamp precedes its
/// record in the ring plus the agent's reading interval (20 ms), shorter than the live loop's
/// grace behind the clock (100 ms), so a record is never handed over after the clock passed it.
pub const REORDER_WINDOW: Duration = Duration::from_millis(50);

/// How long a client's close waits for the broker to be done with the connection.
pub const CLOSE_HOLD: Duration = Duration::from_secs(1);

/// A record in the reorder window: its stamp, its rank among equal stamps (plaintext first),
/// the order it was read, and its bytes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    ns: u64,
    rank: u8,
    seq: u64,
    bytes: Vec<u8>,
}

/// What is known of one connection until it is done.
#[derive(Debug, Default)]
struct ConnState {
    /// Bytes passed on it, and whether an SSL call was tied to it (plaintext seen).
    flags: SocketFlags,
    /// The client's closes held (its FIN, then perhaps its RST), with their times.
    held: Vec<(Timestamp, TcpChange)>,
    /// [`TcpChange::NotVisible`] was handed over.
    hidden_told: bool,
    /// The socket is closed (CLOSE): forgotten once no close is held.
    gone: bool,
    /// The broker is done with it (closed, reset, sent its close_notify or freed the SSL
    /// object): a client's close after that needs no wait.
    broker_done: bool,
}

/// Turns records into pipeline input, in time order, with kernel monotonic time mapped to real
/// time (see the module's doc).
#[derive(Debug, Default)]
pub struct Translator {
    /// Real time minus monotonic time, in nanoseconds (set from the clocks by the caller).
    offset_ns: i64,
    /// Records waiting to be put in order.
    window: BinaryHeap<Reverse<Pending>>,
    /// Records read so far (the order among equal stamps).
    seq: u64,
    /// Connections with a close held or whose visibility is known; removed when done.
    conns: HashMap<FlowKey, ConnState>,
    /// The latest time handed to the pipeline (a held close is not handed over before it).
    last: Timestamp,
}

impl Translator {
    /// A translator mapping monotonic `m` to real time `m + offset_ns`.
    pub fn new(offset_ns: i64) -> Self {
        Translator { offset_ns, ..Default::default() }
    }

    /// Follows a step of the real-time clock: a new offset over [`CLOCK_STEP`] away. Smaller
    /// differences are the jitter of measuring it, and following them would move the records
    /// of one connection against each other (a PINGRESP stamped before its PINGREQ).
    pub fn set_offset(&mut self, offset_ns: i64) {
        if offset_ns.abs_diff(self.offset_ns) > CLOCK_STEP.as_nanos() as u64 {
            self.offset_ns = offset_ns;
        }
    }

    /// The real time of a record.
    pub fn time(&self, r: &Record<'_>) -> Timestamp {
        Timestamp::from_nanos((r.monotonic_ns as i64).saturating_add(self.offset_ns))
    }

    /// Takes one record read from the ring buffer into the reorder window (a copy). A record
    /// that cannot be read is an error (the caller counts it) and is dropped.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        let r = Record::parse(bytes)?;
        let rank = u8::from(!matches!(r.kind, Kind::Data { .. }));
        self.seq += 1;
        self.window.push(Reverse(Pending { ns: r.monotonic_ns, rank, seq: self.seq, bytes: bytes.to_vec() }));
        Ok(())
    }

    /// Records waiting in the reorder window.
    pub fn pending(&self) -> usize {
        self.window.len()
    }

    /// Hands over, in order, the records stamped at or before monotonic `upto_ns` (the
    /// monotonic clock now less [`REORDER_WINDOW`]).
    pub fn release(&mut self, upto_ns: u64, pipeline: &mut dyn Intake) {
        while self.window.peek().is_some_and(|Reverse(p)| p.ns <= upto_ns) {
            let Some(Reverse(p)) = self.window.pop() else { break };
            if let Ok(r) = Record::parse(&p.bytes) {
                self.apply(&r, pipeline);
            }
        }
    }

    /// Hands over every record in the window, in order.
    pub fn flush(&mut self, pipeline: &mut dyn Intake) {
        self.release(u64::MAX, pipeline);
    }

    /// Hands one record, in order, to `pipeline` (a client's close is held: see the module's
    /// doc).
    pub fn apply(&mut self, r: &Record<'_>, pipeline: &mut dyn Intake) {
        let ts = self.time(r);
        self.last = self.last.max(ts);
        let change = match r.kind {
            Kind::Data { from_client, len, data, lost } => {
                let side = if from_client { Side::Client } else { Side::Broker };
                if lost > 0 {
                    pipeline.stream(ts, r.key, side, StreamInput::Lost(lost));
                }
                pipeline.stream(ts, r.key, side, StreamInput::Data(data));
                let short = u64::from(len).saturating_sub(data.len() as u64);
                if short > 0 {
                    pipeline.stream(ts, r.key, side, StreamInput::Lost(short));
                }
                if let Some(c) = self.conns.get_mut(&r.key) {
                    c.flags.tied = true;
                }
                return;
            }
            Kind::State { old, new } => {
                if (old, new) == (state::SYN_RECV, state::ESTABLISHED) {
                    // A new connection on these addresses: the old one's held close first.
                    self.release_held(r.key, pipeline);
                    self.conns.remove(&r.key);
                }
                self.note(r.key, r.flags);
                if (old, new) == (state::ESTABLISHED, state::CLOSE_WAIT) {
                    // The client's FIN, before the broker has read what came before it.
                    self.hold(r.key, ts, TcpChange::Fin(Side::Client))
                } else {
                    tcp_change(old, new)
                }
            }
            Kind::ResetReceived => {
                self.note(r.key, r.flags);
                // The client's RST: the broker may still read what came before it (the kernel
                // keeps the received bytes readable), or be writing what the client read.
                self.hold(r.key, ts, TcpChange::Rst(Side::Client))
            }
            Kind::ResetSent => {
                self.note(r.key, r.flags);
                Some(TcpChange::Rst(Side::Broker))
            }
            Kind::CloseNotify { from_client: true } => Some(TcpChange::CloseNotify(Side::Client)),
            Kind::CloseNotify { from_client: false } => Some(TcpChange::CloseNotify(Side::Broker)),
            Kind::Free => {
                // The broker reads no more of it: what it read went first.
                self.release_held(r.key, pipeline);
                self.broker_done(r.key);
                None
            }
        };
        if matches!(
            change,
            Some(TcpChange::Fin(Side::Broker) | TcpChange::Rst(Side::Broker) | TcpChange::CloseNotify(Side::Broker))
        ) {
            self.broker_done(r.key);
        }
        if r.flags.carried {
            // Bytes passed (TLS the probes may not read): the connection carried payload.
            pipeline.stream(ts, r.key, Side::Client, StreamInput::Hidden(1));
        }
        if let Some(change) = change {
            // Anything but the client's own close comes after what the broker read: the held
            // close goes first.
            if !matches!(change, TcpChange::Fin(Side::Client) | TcpChange::CloseNotify(Side::Client)) {
                self.release_held(r.key, pipeline);
            }
            self.tell_visibility(r.key, ts, pipeline);
            pipeline.tcp(ts, r.key, change);
        }
        if matches!(r.kind, Kind::State { new: state::CLOSE, .. })
            && let Some(c) = self.conns.get_mut(&r.key)
        {
            // The socket is closed, but the broker may still read what it had received (after
            // a client's RST too): a held close waits for the broker; then it is forgotten.
            c.gone = true;
            if c.held.is_empty() {
                self.conns.remove(&r.key);
            }
        }
    }

    /// Adds what a record says of the socket.
    fn note(&mut self, key: FlowKey, flags: SocketFlags) {
        if flags.carried || flags.tied {
            let c = self.conns.entry(key).or_default();
            c.flags.carried |= flags.carried;
            c.flags.tied |= flags.tied;
        }
    }

    /// Holds a client's close (after any held before it) until the broker is done; once it
    /// is, the close is handed over at once (returned).
    fn hold(&mut self, key: FlowKey, ts: Timestamp, change: TcpChange) -> Option<TcpChange> {
        let c = self.conns.entry(key).or_default();
        if c.broker_done && c.held.is_empty() {
            return Some(change);
        }
        c.held.push((ts, change));
        None
    }

    /// Notes that the broker is done with the connection (kept while the entry is).
    fn broker_done(&mut self, key: FlowKey) {
        if let Some(c) = self.conns.get_mut(&key) {
            c.broker_done = true;
        }
    }

    /// Before a close: a connection that carried bytes but was never tied to an SSL call is
    /// not visible.
    fn tell_visibility(&mut self, key: FlowKey, ts: Timestamp, pipeline: &mut dyn Intake) {
        if let Some(c) = self.conns.get_mut(&key)
            && c.flags.carried
            && !c.flags.tied
            && !c.hidden_told
        {
            c.hidden_told = true;
            pipeline.tcp(ts, key, TcpChange::NotVisible);
        }
    }

    /// Hands over the closes held for `key`, if any, in order.
    fn release_held(&mut self, key: FlowKey, pipeline: &mut dyn Intake) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        let gone = c.gone;
        let held = std::mem::take(&mut c.held);
        for (ts, change) in held {
            let ts = ts.max(self.last);
            self.tell_visibility(key, ts, pipeline);
            pipeline.tcp(ts, key, change);
        }
        if gone {
            self.conns.remove(&key);
        }
    }

    /// Hands over the closes held longer than [`CLOSE_HOLD`] at real time `now`.
    pub fn release_due(&mut self, now: Timestamp, pipeline: &mut dyn Intake) {
        let due: Vec<FlowKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.held.first().is_some_and(|(ts, _)| now.since(*ts) >= CLOSE_HOLD))
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            self.release_held(key, pipeline);
            // Anything after this long is stray: forget it.
            self.conns.remove(&key);
        }
    }

    /// Connections whose state is kept (held closes, visibility).
    pub fn tracked(&self) -> usize {
        self.conns.len()
    }

    /// A connection already established when the probes were attached.
    pub fn joined(&self, ts: Timestamp, key: FlowKey, pipeline: &mut dyn Intake) {
        pipeline.tcp(ts, key, TcpChange::Joined);
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::build;
    use super::*;
    use crate::layer::Transport;
    use crate::pipeline::Pipeline;
    use crate::session::EventKind;
    use crate::sink::Sink;
    use crate::synth::mqtt;
    use crate::tracker::TrackerConfig;
    use state::*;

    #[test]
    fn the_clock_offset_follows_steps_not_jitter() {
        let key = FlowKey { client: "127.0.0.1:40005".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let rec = build::state(5_000, 3, key, SYN_RECV, ESTABLISHED);
        let r = Record::parse(&rec).unwrap();
        let mut t = Translator::new(1_000_000_000);
        t.set_offset(1_000_400_000); // 0.4 ms: measuring noise
        assert_eq!(t.time(&r), Timestamp::from_nanos(1_000_005_000));
        t.set_offset(3_000_000_000); // a step of the real-time clock
        assert_eq!(t.time(&r), Timestamp::from_nanos(3_000_005_000));
    }

    #[test]
    fn the_broker_socket_tells_who_closed_first() {
        assert_eq!(tcp_change(SYN_RECV, ESTABLISHED), Some(TcpChange::Established));
        assert_eq!(tcp_change(ESTABLISHED, FIN_WAIT1), Some(TcpChange::Fin(Side::Broker)));
        assert_eq!(tcp_change(FIN_WAIT1, FIN_WAIT2), None, "only the ACK of the broker's FIN");
        assert_eq!(tcp_change(FIN_WAIT2, CLOSE), Some(TcpChange::Fin(Side::Client)));
        assert_eq!(tcp_change(ESTABLISHED, CLOSE_WAIT), Some(TcpChange::Fin(Side::Client)));
        assert_eq!(tcp_change(CLOSE_WAIT, LAST_ACK), Some(TcpChange::Fin(Side::Broker)));
        assert_eq!(tcp_change(LAST_ACK, CLOSE), None);
        assert_eq!(tcp_change(ESTABLISHED, CLOSE), None, "a reset: the reset tracepoints say whose");
        assert_eq!(tcp_change(10, SYN_RECV), None);
    }

    struct Names(Vec<(String, EventKind)>);
    impl Sink for Names {
        fn on_event(&mut self, e: &crate::session::Event) -> std::io::Result<()> {
            self.0.push((e.kind.as_str().to_string(), e.kind.clone()));
            Ok(())
        }
    }

    /// mosquitto's pattern: byte-by-byte header reads, the silent client closed by the broker.
    #[test]
    fn records_become_a_session() {
        let key = FlowKey { client: "127.0.0.1:40000".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let mut p = Pipeline::new(TrackerConfig { stream_transport: Some(Transport::Tls), ..Default::default() });
        let mut t = Translator::new(1_000_000_000_000);
        let s = 1_000_000_000u64;
        let connect = mqtt::connect(4, 2, "dev", true, None);
        let mut recs = vec![build::state(0, 7, key, SYN_RECV, ESTABLISHED)];
        // The type byte, the length byte, then the rest, as mosquitto reads them.
        recs.push(build::data(s / 10, 7, key, true, 1, &connect[..1], 0));
        recs.push(build::data(s / 10, 7, key, true, 1, &connect[1..2], 0));
        recs.push(build::data(s / 10, 7, key, true, connect.len() as u32 - 2, &connect[2..], 0));
        recs.push(build::data(s / 5, 7, key, false, 4, &mqtt::connack(0, None), 0));
        // A write too long to copy whole: the rest is a gap.
        recs.push(build::data(s / 2, 7, key, false, 100, &[0x30, 98, 0, 1, b't'], 0));
        recs.push(build::state(5 * s, 7, key, ESTABLISHED, FIN_WAIT1));
        recs.push(build::state(5 * s + 1000, 7, key, FIN_WAIT1, FIN_WAIT2));
        recs.push(build::state(5 * s + 2000, 7, key, FIN_WAIT2, CLOSE));
        for b in &recs {
            t.apply(&Record::parse(b).unwrap(), &mut p);
        }
        let mut names = Names(Vec::new());
        p.finish(&mut [&mut names]).unwrap();
        let kinds: Vec<&str> = names.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&kinds[..4], ["session_start", "transport", "tls_keys", "connect"], "{kinds:?}");
        assert!(kinds.contains(&"connack") && kinds.contains(&"gap"), "{kinds:?}");
        let close = names.0.iter().find(|(n, _)| n == "close").map(|(_, k)| k).expect("a close");
        assert!(matches!(close, EventKind::Close { by: Side::Broker, .. }), "{close:?}");
        assert_eq!(p.counters().gap_bytes, 95);
        assert!(matches!(names.0[1].1, EventKind::Transport { transport: Transport::Tls }));
    }

    #[test]
    fn a_close_notify_closes_the_session_as_in_a_decrypted_capture() {
        let key = FlowKey { client: "127.0.0.1:40002".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        for from_client in [true, false] {
            let mut p = Pipeline::new(TrackerConfig::default());
            let mut t = Translator::new(0);
            t.apply(&Record::parse(&build::state(0, 3, key, SYN_RECV, ESTABLISHED)).unwrap(), &mut p);
            t.apply(&Record::parse(&build::close_notify(1_000, 3, key, from_client)).unwrap(), &mut p);
            t.apply(&Record::parse(&build::state(2_000, 3, key, ESTABLISHED, FIN_WAIT1)).unwrap(), &mut p);
            let mut names = Names(Vec::new());
            p.finish(&mut [&mut names]).unwrap();
            let closes: Vec<&EventKind> = names.0.iter().filter(|(n, _)| n == "close").map(|(_, k)| k).collect();
            let by = if from_client { Side::Client } else { Side::Broker };
            assert!(
                matches!(closes[..], [EventKind::Close { close: crate::session::CloseKind::CloseNotify, by: b, .. }] if *b == by),
                "the first close only: {closes:?}"
            );
        }
    }

    /// mosquitto_sub sends DISCONNECT and FIN 13 us apart: the kernel reports the FIN before
    /// the broker reads the DISCONNECT.
    #[test]
    fn a_disconnect_read_after_the_fin_arrived_is_still_the_close() {
        let key = FlowKey { client: "127.0.0.1:40003".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let run = |records: Vec<Vec<u8>>, release_at: Option<f64>| {
            let mut p = Pipeline::new(TrackerConfig::default());
            let mut t = Translator::new(0);
            for b in &records {
                t.apply(&Record::parse(b).unwrap(), &mut p);
            }
            if let Some(at) = release_at {
                t.release_due(Timestamp::from_secs_f64(at), &mut p);
            }
            let mut names = Names(Vec::new());
            p.finish(&mut [&mut names]).unwrap();
            names.0
        };
        let connect = mqtt::connect(4, 30, "dev", true, None);
        let mut records = vec![
            build::state(0, 3, key, SYN_RECV, ESTABLISHED),
            build::data(ms, 3, key, true, connect.len() as u32, &connect, 0),
            build::data(2 * ms, 3, key, false, 4, &mqtt::connack(0, None), 0),
            build::state(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT),
            build::data(101 * ms, 3, key, true, 2, &[0xe0, 0], 0),
        ];
        // The broker closes at once: its FIN releases the client's.
        records.push(build::state(102 * ms, 3, key, CLOSE_WAIT, LAST_ACK));
        let events = run(records.clone(), None);
        let close = events.iter().find(|(n, _)| n == "close").map(|(_, k)| k).unwrap();
        assert!(matches!(
            close,
            EventKind::Close { close: crate::session::CloseKind::Disconnect, by: Side::Client, .. }
        ));
        assert!(!events.iter().any(|(n, _)| n == "close_without_disconnect"), "{events:?}");
        assert!(events.iter().any(|(n, _)| n == "session_end"));
        // A broker that does not close: the FIN is handed over after the hold.
        records.truncate(3);
        records.push(build::state(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT));
        let events = run(records.clone(), Some(0.9));
        assert!(!events.iter().any(|(n, _)| n == "close"), "held: {events:?}");
        let events = run(records, Some(1.2));
        let close = events.iter().find(|(n, _)| n == "close").map(|(_, k)| k).unwrap();
        assert!(matches!(close, EventKind::Close { close: crate::session::CloseKind::Fin, by: Side::Client, .. }));
    }

    /// A connection that carried no byte (a load balancer's port check) is not a TLS session,
    /// as in a capture; one whose bytes the probes could not read is.
    #[test]
    fn only_connections_that_carried_bytes_are_tls_sessions() {
        let key = FlowKey { client: "127.0.0.1:40004".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        for carried in [false, true] {
            let mut p = Pipeline::new(TrackerConfig { stream_transport: Some(Transport::Tls), ..Default::default() });
            let mut t = Translator::new(0);
            for b in [
                build::state_after(0, 3, key, SYN_RECV, ESTABLISHED, false),
                build::state_after(1_000, 3, key, ESTABLISHED, FIN_WAIT1, carried),
                build::state_after(2_000, 3, key, FIN_WAIT2, CLOSE, carried),
            ] {
                t.apply(&Record::parse(&b).unwrap(), &mut p);
            }
            let mut names = Names(Vec::new());
            p.finish(&mut [&mut names]).unwrap();
            let tls = names.0.iter().any(|(_, k)| matches!(k, EventKind::Transport { transport: Transport::Tls }));
            let mqtt = names.0.iter().any(|(_, k)| matches!(k, EventKind::SessionEnd { mqtt: true, .. }));
            assert_eq!((tls, mqtt), (carried, carried), "carried {carried}: {:?}", names.0);
            assert_eq!(p.counters().flows_without_payload, u64::from(!carried));
        }
    }

    #[test]
    fn a_connection_joined_before_the_probes_closes_with_its_side() {
        let key = FlowKey { client: "127.0.0.1:40001".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let mut p = Pipeline::new(TrackerConfig::default());
        let mut t = Translator::new(0);
        t.joined(Timestamp::from_secs_f64(1.0), key, &mut p);
        t.apply(&Record::parse(&build::reset(2_000_000_000, 9, key, false)).unwrap(), &mut p);
        // The client's RST waits for the broker (here: for the hold to pass).
        t.release_due(Timestamp::from_secs_f64(2.5), &mut p);
        assert_eq!(t.tracked(), 1, "held");
        t.release_due(Timestamp::from_secs_f64(3.1), &mut p);
        let mut names = Names(Vec::new());
        p.finish(&mut [&mut names]).unwrap();
        let close = names.0.iter().find(|(n, _)| n == "close").map(|(_, k)| k).expect("a close");
        assert!(matches!(close, EventKind::Close { by: Side::Client, .. }), "{close:?}");
    }

    /// Pushes `records` into a translator in the order `order`, reading the window as the agent
    /// does (every `read_every` records, releasing what is older than the window at `now_ns`),
    /// then flushes; the events' Debug forms.
    fn pushed(records: &[Vec<u8>], order: &[usize], release_at: Option<f64>) -> Vec<String> {
        let mut p = Pipeline::new(TrackerConfig { stream_transport: Some(Transport::Tls), ..Default::default() });
        let mut t = Translator::new(0);
        for &i in order {
            t.push(&records[i]).unwrap();
        }
        t.flush(&mut p);
        if let Some(at) = release_at {
            t.release_due(Timestamp::from_secs_f64(at), &mut p);
        }
        let mut names = Names(Vec::new());
        p.finish(&mut [&mut names]).unwrap();
        assert_eq!(t.pending(), 0);
        names.0.iter().map(|(n, k)| format!("{n} {k:?}")).collect()
    }

    /// Every order of reading `records`' last five (after the others, in order), and all of
    /// them backwards, gives the same events; returns them.
    fn same_in_every_order(records: &[Vec<u8>], release_at: Option<f64>) -> Vec<String> {
        fn permutations(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut out = Vec::new();
            for p in permutations(n - 1) {
                for at in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(at, n - 1);
                    out.push(q);
                }
            }
            out
        }
        let n = records.len();
        let expected = pushed(records, &(0..n).collect::<Vec<_>>(), release_at);
        let fixed = n.saturating_sub(5);
        let mut orders: Vec<Vec<usize>> = permutations(n - fixed)
            .into_iter()
            .map(|tail| (0..fixed).chain(tail.into_iter().map(|i| i + fixed)).collect())
            .collect();
        orders.push((0..n).rev().collect());
        for order in orders {
            assert_eq!(pushed(records, &order, release_at), expected, "records read in the order {order:?}");
        }
        expected
    }

    fn has(events: &[String], prefix: &str) -> bool {
        events.iter().any(|e| e.starts_with(prefix))
    }

    /// The shape seen under churn: PINGREQ, the broker's SSL_write of the PINGRESP, and the
    /// client, having read it, aborts at once. The RST's tracepoint (softirq, another CPU)
    /// writes its record before the SSL_write returns to write the PINGRESP's; in every order
    /// of reading, the PINGRESP goes first and the ping is answered.
    #[test]
    fn a_pingresp_written_before_the_clients_rst_is_answered_in_any_order() {
        let key = FlowKey { client: "127.0.0.1:40010".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let connect = mqtt::connect(4, 5, "abort", false, None);
        let records = [
            build::state(0, 3, key, SYN_RECV, ESTABLISHED),
            build::data(ms, 3, key, true, connect.len() as u32, &connect, 0),
            build::data(2 * ms, 3, key, false, 4, &mqtt::connack(0, None), 0),
            build::data(100 * ms, 3, key, true, 2, &[0xc0, 0], 0),
            // The SSL_write began at 101 ms; the RST arrived 50 us later, its CLOSE with it.
            build::data(101 * ms, 3, key, false, 2, &[0xd0, 0], 0),
            build::reset(101 * ms + 50_000, 3, key, false),
            build::state(101 * ms + 51_000, 3, key, ESTABLISHED, CLOSE),
            build::free(102 * ms, 3, key),
        ];
        let events = same_in_every_order(&records, None);
        assert!(has(&events, "pingresp"), "{events:#?}");
        assert!(!has(&events, "ping_unanswered"), "{events:#?}");
        assert!(has(&events, "close Close { close: Rst, by: Client"), "{events:#?}");
    }

    /// A client sends DISCONNECT and aborts at once: the broker reads the DISCONNECT after the
    /// RST reached its socket (the received bytes stay readable), then frees the connection. In
    /// every order of reading, the close is the DISCONNECT.
    #[test]
    fn a_disconnect_read_after_the_clients_rst_is_the_close_in_any_order() {
        let key = FlowKey { client: "127.0.0.1:40011".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let connect = mqtt::connect(4, 5, "bye", true, None);
        let records = [
            build::state(0, 3, key, SYN_RECV, ESTABLISHED),
            build::data(ms, 3, key, true, connect.len() as u32, &connect, 0),
            build::data(2 * ms, 3, key, false, 4, &mqtt::connack(0, None), 0),
            build::reset(100 * ms, 3, key, false),
            build::state(100 * ms + 1_000, 3, key, ESTABLISHED, CLOSE),
            // Read 30 ms later, a busy broker.
            build::data(130 * ms, 3, key, true, 2, &[0xe0, 0], 0),
            build::close_notify(131 * ms, 3, key, false),
            build::free(132 * ms, 3, key),
        ];
        let events = same_in_every_order(&records, None);
        assert!(has(&events, "close Close { close: Disconnect, by: Client"), "{events:#?}");
        assert!(!has(&events, "close_without_disconnect"), "{events:#?}");
    }

    /// A client's FIN after its DISCONNECT, read by a broker 800 ms late: held until the broker
    /// frees the connection, within the hold.
    #[test]
    fn a_disconnect_read_late_is_the_close() {
        let key = FlowKey { client: "127.0.0.1:40012".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let connect = mqtt::connect(4, 5, "late", true, None);
        let mut records = vec![
            build::state(0, 3, key, SYN_RECV, ESTABLISHED),
            build::data(ms, 3, key, true, connect.len() as u32, &connect, 0),
            build::data(2 * ms, 3, key, false, 4, &mqtt::connack(0, None), 0),
            build::state(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT),
            build::data(900 * ms, 3, key, true, 2, &[0xe0, 0], 0),
            build::free(901 * ms, 3, key),
            build::state(902 * ms, 3, key, CLOSE_WAIT, LAST_ACK),
        ];
        let events = pushed(&records, &(0..records.len()).collect::<Vec<_>>(), Some(0.95));
        assert!(has(&events, "close Close { close: Disconnect, by: Client"), "{events:#?}");
        assert!(!has(&events, "close_without_disconnect"), "{events:#?}");
        // Had the broker never read it, the FIN would be the close, once the hold passed.
        records.truncate(4);
        let events = pushed(&records, &[0, 1, 2, 3], Some(0.95));
        assert!(!has(&events, "close "), "still held: {events:#?}");
        let events = pushed(&records, &[0, 1, 2, 3], Some(1.2));
        assert!(has(&events, "close Close { close: Fin, by: Client"), "{events:#?}");
    }

    /// A connection whose bytes passed but none of whose SSL calls could be tied to it (a
    /// broker feeding OpenSSL from its own buffers): closed as not visible, not as a close
    /// without DISCONNECT.
    #[test]
    fn a_connection_never_tied_to_ssl_calls_is_not_visible() {
        let key = FlowKey { client: "127.0.0.1:40013".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let hidden = SocketFlags { carried: true, tied: false };
        let records = [
            build::state_after(0, 3, key, SYN_RECV, ESTABLISHED, false),
            build::state_with(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT, hidden),
            build::state_with(101 * ms, 3, key, CLOSE_WAIT, LAST_ACK, hidden),
            build::state_with(102 * ms, 3, key, LAST_ACK, CLOSE, hidden),
        ];
        let events = same_in_every_order(&records, None);
        assert!(has(&events, "tls_keys TlsKeys { decrypted: false, reason: Some(\"not_visible\")"), "{events:#?}");
        assert!(has(&events, "close Close { close: Fin, by: Client"), "{events:#?}");
        assert!(!has(&events, "close_without_disconnect"), "{events:#?}");
        // Tied (its plaintext seen): an ordinary close without DISCONNECT.
        let seen = SocketFlags { carried: true, tied: true };
        let records = [
            build::state_after(0, 3, key, SYN_RECV, ESTABLISHED, false),
            build::state_with(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT, seen),
            build::state_with(101 * ms, 3, key, CLOSE_WAIT, LAST_ACK, seen),
        ];
        let events = pushed(&records, &[0, 1, 2], None);
        assert!(!has(&events, "tls_keys"), "{events:#?}");
        assert!(has(&events, "close_without_disconnect"), "{events:#?}");
    }

    /// The window hands over only what is older than its cutoff, in stamp order.
    #[test]
    fn the_window_releases_in_stamp_order_up_to_the_cutoff() {
        let key = FlowKey { client: "127.0.0.1:40014".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let mut p = Pipeline::new(TrackerConfig::default());
        let mut t = Translator::new(0);
        let connect = mqtt::connect(4, 5, "w", false, None);
        t.push(&build::data(20, 3, key, true, connect.len() as u32, &connect, 0)).unwrap();
        t.push(&build::state_after(10, 3, key, SYN_RECV, ESTABLISHED, false)).unwrap();
        t.push(&build::data(30, 3, key, false, 4, &mqtt::connack(0, None), 0)).unwrap();
        assert!(t.push(&[1, 2, 3]).is_err(), "a bad record is an error, not a panic");
        t.release(25, &mut p);
        assert_eq!(t.pending(), 1);
        let mut names = Names(Vec::new());
        p.drain(&mut [&mut names]).unwrap();
        let kinds: Vec<&str> = names.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(&kinds[..2], ["session_start", "connect"], "the state record first, though read second");
        t.flush(&mut p);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.tracked(), 0);
    }

    /// A client's RST after the broker closed (its close_notify reaching a client that had
    /// gone) is not held: the session ends at once.
    #[test]
    fn a_clients_rst_after_the_broker_is_done_is_not_held() {
        let key = FlowKey { client: "127.0.0.1:40015".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let connect = mqtt::connect(4, 5, "gone", false, None);
        let records = [
            build::state(0, 3, key, SYN_RECV, ESTABLISHED),
            build::data(ms, 3, key, true, connect.len() as u32, &connect, 0),
            build::data(2 * ms, 3, key, false, 4, &mqtt::connack(0, None), 0),
            build::state(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT),
            build::free(101 * ms, 3, key),
            build::reset(102 * ms, 3, key, false),
            build::state(102 * ms + 1, 3, key, CLOSE_WAIT, CLOSE),
        ];
        let mut p = Pipeline::new(TrackerConfig { stream_transport: Some(Transport::Tls), ..Default::default() });
        let mut t = Translator::new(0);
        for b in &records {
            t.push(b).unwrap();
        }
        t.flush(&mut p);
        assert_eq!(t.tracked(), 0, "nothing held, nothing kept");
        let mut names = Names(Vec::new());
        p.drain(&mut [&mut names]).unwrap();
        let kinds: Vec<&str> = names.0.iter().map(|(n, _)| n.as_str()).collect();
        assert!(kinds.ends_with(&["close", "close_without_disconnect", "session_end"]), "{kinds:?}");
    }

    /// A client's FIN then its RST (its kernel answering bytes after the process died), both
    /// while the broker still reads: both go over once it is done, and the session ends.
    #[test]
    fn a_clients_fin_and_rst_are_both_held_and_end_the_session() {
        let key = FlowKey { client: "127.0.0.1:40016".parse().unwrap(), broker: "127.0.0.1:8883".parse().unwrap() };
        let ms = 1_000_000u64;
        let connect = mqtt::connect(4, 5, "killed", true, None);
        let records = [
            build::state(0, 3, key, SYN_RECV, ESTABLISHED),
            build::data(ms, 3, key, true, connect.len() as u32, &connect, 0),
            build::data(2 * ms, 3, key, false, 4, &mqtt::connack(0, None), 0),
            build::state(100 * ms, 3, key, ESTABLISHED, CLOSE_WAIT),
            build::reset(100 * ms + 200_000, 3, key, false),
            build::state(100 * ms + 201_000, 3, key, CLOSE_WAIT, CLOSE),
            build::free(101 * ms, 3, key),
        ];
        let events = same_in_every_order(&records, None);
        assert!(has(&events, "close Close { close: Fin, by: Client"), "{events:#?}");
        assert!(events.iter().any(|e| e.starts_with("session_end") && e.contains("open: false")), "{events:#?}");
    }
}
