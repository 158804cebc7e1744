//! From the BPF program's records to the pipeline's stream entry points: plaintext as in-order
//! stream bytes of a direction (what the probe could not copy as a gap), TCP state changes of
//! the broker's socket as FINs and RSTs by side, kernel time as real time.
//!
//! Contract: the broker's socket tells who closed first. ESTABLISHED -> FIN_WAIT1 is the
//! broker's FIN, ESTABLISHED -> CLOSE_WAIT the client's; CLOSE_WAIT -> LAST_ACK is the broker's
//! FIN after the client's, and FIN_WAIT1/FIN_WAIT2 -> CLOSING, TIME_WAIT or CLOSE the client's
//! FIN after the broker's (Linux reports the move to TIME_WAIT as CLOSE). SYN_RECV ->
//! ESTABLISHED is a connection seen from its start. Resets come from the reset tracepoints,
//! received (the client's) or sent (the broker's); the CLOSE that follows adds nothing. TLS
//! close_notify alerts come from libssl (the broker's `SSL_shutdown`, or its `SSL_read`
//! returning 0), as the TLS layer reports them in a decrypted capture.

use super::event::{Kind, Record};
use crate::capture::Intake;
use crate::flow::{FlowKey, Side};
use crate::time::Timestamp;
use crate::tracker::{StreamInput, TcpChange};

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
pub const CLOCK_STEP: std::time::Duration = std::time::Duration::from_millis(1);

/// How long a client's FIN waits for the broker to read what came before it.
pub const FIN_HOLD: std::time::Duration = std::time::Duration::from_millis(500);

/// Turns records into pipeline input, with kernel monotonic time mapped to real time.
///
/// The kernel reports a client's FIN when it arrives, but the broker reads the bytes sent
/// before it (a DISCONNECT, typically sent a few microseconds before the FIN) only later, and
/// the plaintext is seen as the broker reads it. So a client's FIN is held until the broker
/// closes (its FIN, a reset, its close_notify) or [`FIN_HOLD`] passes, and the plaintext read
/// meanwhile goes first, in the order a capture of the wire has them.
#[derive(Debug, Default)]
pub struct Translator {
    /// Real time minus monotonic time, in nanoseconds (set from the clocks by the caller).
    offset_ns: i64,
    /// Client FINs held, with their times.
    held: std::collections::HashMap<FlowKey, Timestamp>,
    /// The latest time handed to the pipeline (a held FIN is not handed over before it).
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

    /// Hands one record to `pipeline` (a client's FIN is held: see the type's doc).
    pub fn apply(&mut self, r: &Record<'_>, pipeline: &mut dyn Intake) {
        let ts = self.time(r);
        self.last = self.last.max(ts);
        let (change, carried) = match r.kind {
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
                return;
            }
            Kind::State { old, new, carried } => {
                if (old, new) == (state::ESTABLISHED, state::CLOSE_WAIT) {
                    // The client's FIN, before the broker has read what came before it.
                    self.held.insert(r.key, ts);
                    (None, carried)
                } else {
                    (tcp_change(old, new), carried)
                }
            }
            Kind::ResetReceived { carried } => (Some(TcpChange::Rst(Side::Client)), carried),
            Kind::ResetSent { carried } => (Some(TcpChange::Rst(Side::Broker)), carried),
            Kind::CloseNotify { from_client: true } => (Some(TcpChange::CloseNotify(Side::Client)), false),
            Kind::CloseNotify { from_client: false } => (Some(TcpChange::CloseNotify(Side::Broker)), false),
        };
        if carried {
            // Bytes passed (TLS the probes may not read): the connection carried payload.
            pipeline.stream(ts, r.key, Side::Client, StreamInput::Hidden(1));
        }
        let Some(change) = change else { return };
        // Anything but the client's own close comes after what the broker read: the held FIN
        // goes first.
        if !matches!(change, TcpChange::Fin(Side::Client) | TcpChange::CloseNotify(Side::Client)) {
            self.release(r.key, pipeline);
        }
        pipeline.tcp(ts, r.key, change);
    }

    /// Hands over the FIN held for `key`, if any.
    fn release(&mut self, key: FlowKey, pipeline: &mut dyn Intake) {
        if let Some(ts) = self.held.remove(&key) {
            pipeline.tcp(ts.max(self.last), key, TcpChange::Fin(Side::Client));
        }
    }

    /// Hands over the FINs held longer than [`FIN_HOLD`] at real time `now`.
    pub fn release_due(&mut self, now: Timestamp, pipeline: &mut dyn Intake) {
        if self.held.is_empty() {
            return;
        }
        let due: Vec<FlowKey> =
            self.held.iter().filter(|(_, ts)| now.since(**ts) >= FIN_HOLD).map(|(key, _)| *key).collect();
        for key in due {
            self.release(key, pipeline);
        }
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
        let events = run(records.clone(), Some(0.3));
        assert!(!events.iter().any(|(n, _)| n == "close"), "held: {events:?}");
        let events = run(records, Some(0.7));
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
        let mut names = Names(Vec::new());
        p.finish(&mut [&mut names]).unwrap();
        let close = names.0.iter().find(|(n, _)| n == "close").map(|(_, k)| k).expect("a close");
        assert!(matches!(close, EventKind::Close { by: Side::Client, .. }), "{close:?}");
    }
}
