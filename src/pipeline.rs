//! The one loop body every input runs through: captured frames (or a stream source's bytes) in,
//! events and session records out.
//!
//! Contract: a [`Pipeline`] owns the tracker, the packet clock ([`PacketClock`]: one rule for
//! every loop: time never goes back, earlier stamps are counted), the capture statistics and the
//! counts of skipped frames. Its callers only move data and time:
//! - [`Pipeline::frame`]: a captured frame ([`Pipeline::segment`] when it was decoded elsewhere,
//!   as `analyze` does on its reader thread);
//! - [`Pipeline::stream`] and [`Pipeline::tcp`]: what a stream source (one that sees in-order
//!   bytes and TCP state changes rather than packets) hands over;
//! - [`Pipeline::poll`]: time passed without packets (live), so deadlines fire on the clock;
//! - [`Pipeline::drain`]: events, then finished sessions' records, to the sinks;
//! - [`Pipeline::finish`]: the input ended; every session still open is settled and drained.
//!
//! The same frames at the same times give the same events and records whoever calls it:
//! `analyze`, `live`, the fuzz target and the benchmarks all do. Warnings about the input (an
//! unsupported link type) are kept in the statistics and handed out once by
//! [`Pipeline::take_new_warnings`] for the caller to show.

use crate::capture::Intake;
use crate::decode::{self, Segment, Skip};
use crate::flow::{FlowKey, Side};
use crate::link::LinkType;
use crate::model::stats::{CaptureStats, OTHER_PORTS_LISTED, PortSegments};
use crate::sink::Sink;
use crate::time::{PacketClock, Timestamp};
use crate::tracker::{StreamInput, TcpChange, Tracker, TrackerConfig, TrackerCounters};
use std::collections::HashSet;

/// Sessions settled per step at the end of the input, with a drain between steps (so a
/// million sessions open at the end are never all held as records at once).
const FINISH_STEP: usize = 1024;

/// The analysis of one input, from frames to events.
pub struct Pipeline {
    tracker: Tracker,
    clock: PacketClock,
    stats: CaptureStats,
    warned_links: HashSet<u32>,
    /// What the frames come from, for warnings (the file being read).
    source: String,
    new_warnings: Vec<String>,
    /// TCP segments on other ports, by port (allocated at the first one; 512 KiB at most).
    other_ports: Vec<u64>,
}

impl Pipeline {
    pub fn new(cfg: TrackerConfig) -> Self {
        Pipeline {
            tracker: Tracker::new(cfg),
            clock: PacketClock::default(),
            stats: CaptureStats::default(),
            warned_links: HashSet::new(),
            source: String::new(),
            new_warnings: Vec::new(),
            other_ports: Vec::new(),
        }
    }

    /// Names what the next frames come from (a file), for warnings.
    pub fn set_source(&mut self, name: impl Into<String>) {
        self.source = name.into();
    }

    /// A captured frame stamped `ts`, `orig_len` bytes long on the wire.
    pub fn frame(&mut self, ts: Timestamp, link: LinkType, data: &[u8], orig_len: u32) {
        let decoded = decode::decode(link, data);
        self.segment(ts, data.len() as u32, orig_len, decoded);
    }

    /// A frame of `captured` bytes (`orig_len` on the wire) stamped `ts`, already decoded.
    #[inline]
    pub fn segment(&mut self, ts: Timestamp, captured: u32, orig_len: u32, decoded: Result<Segment<'_>, Skip>) {
        self.stats.packets += 1;
        self.stats.bytes += u64::from(captured);
        let now = self.clock.packet(ts);
        if captured < orig_len {
            self.stats.truncated_packets += 1;
        }
        match decoded {
            Ok(seg) => {
                if !self.tracker.on_segment(now, &seg) {
                    self.stats.other_tcp_segments += 1;
                    self.count_other_port(&seg);
                }
            }
            Err(skip) => {
                if let Skip::UnsupportedLink(link) = skip
                    && self.warned_links.insert(link)
                {
                    let name = LinkType(link).name();
                    self.warn(format!("{}: packets with unsupported link type {name} skipped", self.source));
                }
                *self.stats.skipped.entry(skip.as_str()).or_default() += 1; // no allocation per skipped frame
            }
        }
    }

    /// Counts a segment on another port by its server's port: a SYN's destination, a SYN-ACK's
    /// source, else the lower of the two (servers listen low, clients' ephemeral ports are high).
    fn count_other_port(&mut self, seg: &Segment<'_>) {
        let port = match (seg.syn, seg.ack.is_some()) {
            (true, false) => seg.dst.port(),
            (true, true) => seg.src.port(),
            _ => seg.src.port().min(seg.dst.port()),
        };
        if self.other_ports.is_empty() {
            self.other_ports = vec![0; 1 << 16];
        }
        self.other_ports[usize::from(port)] += 1;
    }

    /// In-order bytes (or lost ones) of one side of a connection, from a stream source.
    pub fn stream(&mut self, ts: Timestamp, key: FlowKey, from: Side, input: StreamInput<'_>) {
        let now = self.clock.packet(ts);
        self.tracker.on_stream(now, key, from, input);
    }

    /// A TCP state change of a connection, from a stream source.
    pub fn tcp(&mut self, ts: Timestamp, key: FlowKey, change: TcpChange) {
        let now = self.clock.packet(ts);
        self.tracker.on_tcp(now, key, change);
    }

    /// Time has come to `now` with no packet: fires every deadline before it (the clock never
    /// moves back).
    pub fn poll(&mut self, now: Timestamp) {
        let now = self.clock.advance_to(now);
        self.tracker.poll(now);
    }

    /// The earliest time at which [`Pipeline::poll`] has work.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.tracker.next_deadline()
    }

    /// Hands the events so far to every sink (in time order), then the records of the sessions
    /// that ended (in the order they ended). Stops at the first error.
    #[inline]
    pub fn drain(&mut self, sinks: &mut [&mut dyn Sink]) -> std::io::Result<()> {
        if self.tracker.events().is_empty() && self.tracker.finished().is_empty() {
            return Ok(()); // most packets (a PUBLISH, an ACK) change nothing worth telling
        }
        for event in self.tracker.events().drain(..) {
            for sink in sinks.iter_mut() {
                sink.on_event(&event)?;
            }
        }
        for record in self.tracker.finished().drain(..) {
            for sink in sinks.iter_mut() {
                sink.on_record(&record)?;
            }
        }
        Ok(())
    }

    /// The input ended: settles every session still open (in the order they began) and drains
    /// as it goes. The pipeline takes no more input after this.
    pub fn finish(&mut self, sinks: &mut [&mut dyn Sink]) -> std::io::Result<()> {
        if let Some(end) = self.clock.now() {
            let mut ending = self.tracker.start_finish(end);
            while self.tracker.finish_some(&mut ending, FINISH_STEP) {
                self.drain(sinks)?;
            }
        }
        self.drain(sinks)
    }

    /// Notes a problem with the input (kept in the statistics, and handed out once by
    /// [`Pipeline::take_new_warnings`]).
    pub fn warn(&mut self, warning: String) {
        self.stats.warnings.push(warning.clone());
        self.new_warnings.push(warning);
    }

    /// Warnings noted since the last call.
    pub fn take_new_warnings(&mut self) -> impl Iterator<Item = String> + '_ {
        self.new_warnings.drain(..)
    }

    /// Counts a file that ended inside a record.
    pub fn count_truncated_file(&mut self) {
        self.stats.truncated_files += 1;
    }

    /// The capture figures so far (`files` is the caller's to fill).
    pub fn stats(&self) -> CaptureStats {
        CaptureStats {
            first_ts: self.clock.first_packet(),
            last_ts: self.clock.now(),
            timestamps_out_of_order: self.clock.backwards(),
            other_tcp_ports: busiest_ports(&self.other_ports),
            ..self.stats.clone()
        }
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.stats.packets
    }

    /// The tracker's counters.
    pub fn counters(&self) -> &TrackerCounters {
        self.tracker.counters()
    }

    /// The tracker (for reading open sessions and table sizes).
    pub fn tracker(&self) -> &Tracker {
        &self.tracker
    }
}

/// Where every source hands its input.
impl Intake for Pipeline {
    #[inline]
    fn frame(&mut self, ts: Timestamp, link: LinkType, data: &[u8], orig_len: u32) {
        Pipeline::frame(self, ts, link, data, orig_len);
    }

    fn stream(&mut self, ts: Timestamp, key: FlowKey, from: Side, input: StreamInput<'_>) {
        Pipeline::stream(self, ts, key, from, input);
    }

    fn tcp(&mut self, ts: Timestamp, key: FlowKey, change: TcpChange) {
        Pipeline::tcp(self, ts, key, change);
    }
}

/// The [`OTHER_PORTS_LISTED`] ports with the most segments, busiest first (then by number).
fn busiest_ports(counts: &[u64]) -> Vec<PortSegments> {
    let mut ports: Vec<PortSegments> = (0..=u16::MAX)
        .zip(counts)
        .filter(|(_, n)| **n > 0)
        .map(|(port, n)| PortSegments { port, segments: *n })
        .collect();
    ports.sort_unstable_by(|a, b| b.segments.cmp(&a.segments).then(a.port.cmp(&b.port)));
    ports.truncate(OTHER_PORTS_LISTED);
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{self, Capture, Encap, mqtt};

    #[test]
    fn frames_and_polls_share_one_clock() {
        let t = Timestamp::from_secs_f64;
        let mut cap = Capture::new(Encap::Ethernet);
        let mut c = synth::Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
        c.handshake(&mut cap, t(10.0));
        c.send(&mut cap, t(10.1), Side::Client, &mqtt::connect(4, 2, "dev", false, None));
        c.send(&mut cap, t(9.0), Side::Broker, &mqtt::connack(0, None)); // stamped back in time
        let mut p = Pipeline::new(TrackerConfig::default());
        for (ts, frame) in &cap.frames {
            p.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
        }
        p.frame(t(10.2), LinkType(189), b"usb", 3);
        assert_eq!(p.next_deadline(), Some(t(13.1)), "the CONNACK arms the deadline from the CONNECT");
        p.poll(t(14.0));
        let mut kinds = Vec::new();
        let mut collect = crate::sink::FnSink(|e: &crate::session::Event| kinds.push(e.kind.as_str()));
        p.drain(&mut [&mut collect]).unwrap();
        assert!(kinds.ends_with(&["keepalive_expired"]), "{kinds:?}");
        let stats = p.stats();
        assert_eq!((stats.packets, stats.timestamps_out_of_order), (6, 1), "3 handshake, 2 MQTT, 1 USB frames");
        assert_eq!((stats.first_ts, stats.last_ts), (Some(t(10.0)), Some(t(14.0))));
        assert_eq!(stats.skipped.get("unsupported_link"), Some(&1));
        assert_eq!(p.take_new_warnings().count(), 1);
        assert_eq!(p.take_new_warnings().count(), 0, "a warning is handed out once");
        let mut records = Vec::new();
        p.finish(&mut [&mut crate::sink::RecordSink(|r: &crate::session::record::SessionRecord| {
            records.push(r.clone())
        })])
        .unwrap();
        assert_eq!(records.len(), 1, "finish settles the open session");
    }

    /// The client id rides on the events from the CONNECT on, records or not: the one copy is
    /// the tracker's (issue 21: no sink keeps a second table of them).
    #[test]
    fn events_carry_the_client_id_without_records() {
        let t = Timestamp::from_secs_f64;
        let mut cap = Capture::new(Encap::Ethernet);
        let mut c = synth::Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
        c.handshake(&mut cap, t(0.0));
        c.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 2, "sensor-7", true, None));
        c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
        c.send(&mut cap, t(1.0), Side::Client, &mqtt::pingreq());
        c.fin(&mut cap, t(1.5), Side::Client);
        let mut p = Pipeline::new(TrackerConfig { records: false, ..TrackerConfig::default() });
        for (ts, frame) in &cap.frames {
            p.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
        }
        let mut seen = Vec::new();
        let mut collect = crate::sink::FnSink(|e: &crate::session::Event| {
            seen.push((e.kind.as_str(), e.client_id.clone().map(|c| c.map(|c| c.to_string()))))
        });
        p.finish(&mut [&mut collect]).unwrap();
        let id = Some(Some("sensor-7".to_string()));
        assert_eq!(seen[0], ("session_start", None), "{seen:?}");
        assert!(seen.iter().any(|(k, c)| *k == "transport" && c.is_none()), "before the CONNECT: none {seen:?}");
        for kind in ["connect", "connack", "pingreq", "session_end"] {
            assert!(seen.iter().any(|(k, c)| *k == kind && *c == id), "{kind}: {seen:?}");
        }
    }

    #[test]
    fn segments_on_other_ports_are_counted_by_the_servers_port() {
        let t = Timestamp::from_secs_f64;
        let mut cap = Capture::new(Encap::Ethernet);
        for (i, (port, packets)) in [(9999u16, 3usize), (22, 1), (60000, 2)].into_iter().enumerate() {
            let broker = format!("10.0.0.9:{port}").parse().unwrap();
            let mut c = synth::Conn::new(format!("10.0.0.1:{}", 40000 + i).parse().unwrap(), broker, 1, 2);
            c.handshake(&mut cap, t(1.0)); // SYN to the port, SYN-ACK from it, ACK
            for _ in 0..packets {
                c.send(&mut cap, t(2.0), Side::Client, b"x");
            }
        }
        let mut p = Pipeline::new(TrackerConfig::default());
        for (ts, frame) in &cap.frames {
            p.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
        }
        let stats = p.stats();
        assert_eq!(stats.other_tcp_segments, 15);
        let ports: Vec<(u16, u64)> = stats.other_tcp_ports.iter().map(|p| (p.port, p.segments)).collect();
        // A data segment of 60000 <-> 40002 counts under the lower port; the handshake under 60000.
        assert_eq!(ports, [(9999, 6), (22, 4), (40002, 3), (60000, 2)]);
    }
}
