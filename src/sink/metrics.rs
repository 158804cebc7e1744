//! Prometheus metrics: a fold of the event stream into counters, gauges and histograms.
//!
//! Contract: metric names and labels here are the contract dashboards and alerts rely on
//! (README "Metrics"). Labels are typed and bounded: protocol, ping direction, close kind and
//! side, enforcement verdict, transport (on connects, closes and expiries). Client ids never become labels unless `client_id_labels` > 0, and
//! then only for that many clients (the ones with the most expiries, approximately: when a new
//! client would exceed the bound, the one with the fewest is dropped from the exposition).

use super::Sink;
use crate::flow::Side;
use crate::layer::Transport;
use crate::model::stats::SourceStats;
use crate::mqtt::Protocol;
use crate::session::{CloseKind, Event, EventKind, SessionId, Verdict};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

/// Label values are the domain values' own names (`as_str()`), so a label reads exactly as the
/// same value does in JSON and text.
macro_rules! label_by_name {
    ($($t:ty),*) => {
        $(impl EncodeLabelValue for $t {
            fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                e.write_str(self.as_str())
            }
        })*
    };
}

label_by_name!(Protocol, Direction, CloseKind, Side, Verdict, Transport);

named! {
    /// Which of the two ping packets.
    pub enum Direction {
        Request => "request",
        Response => "response",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    pub protocol: Protocol,
    pub transport: Transport,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: Transport,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PingLabels {
    pub direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub kind: CloseKind,
    pub by: Side,
    pub transport: Transport,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub client_id: String,
}

/// The metric handles; values live in the registry's metrics, shared with the HTTP server.
#[derive(Clone, Default)]
struct Handles {
    sessions_open: Gauge,
    sessions_expired_open: Gauge,
    connects: Family<ProtocolLabels, Counter>,
    pings: Family<PingLabels, Counter>,
    pings_unanswered: Counter,
    expired: Family<TransportLabels, Counter>,
    closes: Family<CloseLabels, Counter>,
    closes_without_disconnect: Counter,
    enforcement: Family<VerdictLabels, Counter>,
    stream_gaps: Counter,
    malformed: Counter,
    flows_evicted: Counter,
    capture_packets: Counter,
    capture_dropped: Counter,
    capture_ring_freezes: Counter,
    ebpf_records: Counter,
    ebpf_lost_bytes: Counter,
    ebpf_unbound_calls: Counter,
    flows_tracked: Gauge,
    client_expired: Family<ClientLabels, Counter>,
}

/// Whether a close of `kind` can happen on `transport`: a TLS close_notify only inside TLS, a
/// WebSocket close frame only on WebSocket (only the possible series are exposed before any
/// traffic).
fn close_possible(kind: CloseKind, transport: Transport) -> bool {
    match kind {
        CloseKind::CloseNotify => transport.is_tls(),
        CloseKind::WsClose => matches!(transport, Transport::WebSocket | Transport::WebSocketTls),
        CloseKind::Disconnect | CloseKind::Fin | CloseKind::Rst | CloseKind::Refused => true,
    }
}

/// The metrics sink.
pub struct Metrics {
    h: Handles,
    effective_keepalive: Histogram,
    ping_rtt: Histogram,
    enforcement_lag: Histogram,
    silence_ratio: Histogram,
    open: HashSet<SessionId>,
    /// Open sessions past their deadline (silent since, not closed by the broker).
    expired_open: HashSet<SessionId>,
    client_id_labels: usize,
    /// Each open session's transport (sessions before their first bytes are `unknown`).
    transports: HashMap<SessionId, Transport>,
    client_expiries: HashMap<String, u64>,
    kernel_dropped_seen: u64,
    kernel_freezes_seen: u64,
    /// The eBPF source's counts already added.
    ebpf_seen: crate::model::EbpfStats,
    /// This sink's share of the tracked-connections gauge.
    flows_tracked_seen: i64,
    /// The source's packet count already added ([`Sink::on_stats`]).
    packets_seen: u64,
}

impl Metrics {
    /// Registers every metric in `registry` (prefix `mqtt_keepalive_`).
    pub fn new(registry: &mut Registry, client_id_labels: usize) -> Self {
        let h = Handles::default();
        let effective_keepalive =
            Histogram::new([0.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 3600.0]);
        let ping_rtt = Histogram::new(exponential_buckets(0.0001, 2.0, 18)); // 100 us .. 13 s
        let enforcement_lag = Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0]);
        let silence_ratio = Histogram::new([0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0]);
        let r = registry.sub_registry_with_prefix("mqtt_keepalive");
        r.register(
            "sessions_open",
            "MQTT sessions open now (CONNECT seen, or joined mid-stream, and not closed)",
            h.sessions_open.clone(),
        );
        r.register(
            "sessions_expired_open",
            "Open sessions past their keepalive deadline, silent since and not closed (a broker not enforcing, or slow to)",
            h.sessions_expired_open.clone(),
        );
        r.register("connects", "CONNECT packets, by protocol version", h.connects.clone());
        r.register(
            "effective_keepalive_seconds",
            "Effective keepalive at CONNACK (Server Keep Alive if the broker set one, else the declared one; 0 = off)",
            effective_keepalive.clone(),
        );
        r.register("pings", "PINGREQ (request) and PINGRESP (response) packets", h.pings.clone());
        r.register("ping_rtt_seconds", "Time from PINGREQ to its PINGRESP", ping_rtt.clone());
        r.register(
            "pings_unanswered",
            "PINGREQs without a PINGRESP within the ping timeout or before the session closed",
            h.pings_unanswered.clone(),
        );
        r.register("expired", "Sessions whose client was silent past 1.5 x keepalive while open", h.expired.clone());
        r.register(
            "closes",
            "Session closes, by kind (disconnect, fin, rst) and side that closed first",
            h.closes.clone(),
        );
        r.register(
            "closes_without_disconnect",
            "Closes by FIN or RST without an MQTT DISCONNECT (the broker publishes the Will, if any)",
            h.closes_without_disconnect.clone(),
        );
        r.register(
            "enforcement",
            "Broker enforcement of expired keepalives: on_time, late, not_enforced; early = closed before the deadline",
            h.enforcement.clone(),
        );
        r.register(
            "enforcement_lag_seconds",
            "How long after the deadline the broker closed an expired session",
            enforcement_lag.clone(),
        );
        r.register(
            "silence_ratio",
            "Client silence / effective keepalive, at each client packet (above 1.5 the session had expired)",
            silence_ratio.clone(),
        );
        r.register("capture_packets", "Packets received from the capture", h.capture_packets.clone());
        r.register(
            "capture_dropped_packets",
            "Packets the kernel dropped before the agent read them (eBPF: ring-buffer records)",
            h.capture_dropped.clone(),
        );
        r.register(
            "capture_ring_freezes",
            "Times the kernel found the capture ring full (it drops until the agent returns a block)",
            h.capture_ring_freezes.clone(),
        );
        r.register("ebpf_records", "Records read from the eBPF probes' ring buffer", h.ebpf_records.clone());
        r.register(
            "ebpf_lost_bytes",
            "TLS plaintext bytes the eBPF probes could not copy (a call over 16 KiB, a full ring buffer): stream gaps",
            h.ebpf_lost_bytes.clone(),
        );
        r.register(
            "ebpf_unbound_calls",
            "SSL calls the eBPF probes could not tie to a socket (a connection older than the probes, before its next socket call)",
            h.ebpf_unbound_calls.clone(),
        );
        r.register("stream_gaps", "Holes in TCP streams (bytes the capture never saw)", h.stream_gaps.clone());
        r.register("malformed_packets", "Bytes on MQTT ports that are not valid MQTT", h.malformed.clone());
        r.register(
            "flows_evicted",
            "Open connections dropped from tracking after being idle too long",
            h.flows_evicted.clone(),
        );
        r.register("flows_tracked", "TCP connections tracked now", h.flows_tracked.clone());
        if client_id_labels > 0 {
            r.register(
                "client_expired",
                "Keepalive expiries of the clients with the most (opt-in, bounded by --client-id-labels)",
                h.client_expired.clone(),
            );
        }
        // Every label combination that can happen starts at 0, so series exist (and rates work)
        // from the first scrape, not from the first event.
        // Every transport but `unknown` (a session shows its transport with its first bytes).
        let transports: Vec<Transport> = Transport::ALL.iter().copied().filter(|t| *t != Transport::Unknown).collect();
        for &transport in &transports {
            for &protocol in Protocol::ALL {
                let _ = h.connects.get_or_create(&ProtocolLabels { protocol, transport }); // the series at 0
            }
            let _ = h.expired.get_or_create(&TransportLabels { transport }); // the series at 0
        }
        for &direction in Direction::ALL {
            let _ = h.pings.get_or_create(&PingLabels { direction }); // creates the series at 0
        }
        for &transport in &transports {
            for &kind in CloseKind::ALL.iter().filter(|k| close_possible(**k, transport)) {
                for &by in Side::ALL {
                    let _ = h.closes.get_or_create(&CloseLabels { kind, by, transport }); // the series at 0
                }
            }
        }
        for &verdict in Verdict::ALL {
            let _ = h.enforcement.get_or_create(&VerdictLabels { verdict }); // creates the series at 0
        }
        Metrics {
            h,
            effective_keepalive,
            ping_rtt,
            enforcement_lag,
            silence_ratio,
            open: HashSet::new(),
            expired_open: HashSet::new(),
            client_id_labels,
            transports: HashMap::new(),
            client_expiries: HashMap::new(),
            kernel_dropped_seen: 0,
            kernel_freezes_seen: 0,
            ebpf_seen: Default::default(),
            flows_tracked_seen: 0,
            packets_seen: 0,
        }
    }

    /// Another sink adding to the same metrics, for another capture thread: counters, gauges and
    /// histograms are shared (each thread adds its sessions, packets and kernel counts); what
    /// follows sessions (which are open, client ids) is per sink, as each session lives on one
    /// thread. With client id labels, the bound applies to each sink's clients.
    pub fn share(&self) -> Metrics {
        Metrics {
            h: self.h.clone(),
            effective_keepalive: self.effective_keepalive.clone(),
            ping_rtt: self.ping_rtt.clone(),
            enforcement_lag: self.enforcement_lag.clone(),
            silence_ratio: self.silence_ratio.clone(),
            open: HashSet::new(),
            expired_open: HashSet::new(),
            client_id_labels: self.client_id_labels,
            transports: HashMap::new(),
            client_expiries: HashMap::new(),
            kernel_dropped_seen: 0,
            kernel_freezes_seen: 0,
            ebpf_seen: Default::default(),
            flows_tracked_seen: 0,
            packets_seen: 0,
        }
    }

    /// Packets read from the capture.
    pub fn add_captured(&self, packets: u64) {
        self.h.capture_packets.inc_by(packets);
    }

    /// The kernel's cumulative drop count.
    pub fn set_kernel_dropped(&mut self, total: u64) {
        if total > self.kernel_dropped_seen {
            self.h.capture_dropped.inc_by(total - self.kernel_dropped_seen);
            self.kernel_dropped_seen = total;
        }
    }

    /// The eBPF source's cumulative counts (its ring-buffer drops go through
    /// [`Metrics::set_kernel_dropped`], as a capture's kernel drops).
    pub fn set_ebpf(&mut self, total: crate::model::EbpfStats) {
        let seen = &mut self.ebpf_seen;
        for (counter, now, before) in [
            (&self.h.ebpf_records, total.records, &mut seen.records),
            (&self.h.ebpf_lost_bytes, total.lost_bytes, &mut seen.lost_bytes),
            (&self.h.ebpf_unbound_calls, total.unbound_calls, &mut seen.unbound_calls),
        ] {
            if now > *before {
                counter.inc_by(now - *before);
                *before = now;
            }
        }
    }

    /// The kernel's cumulative count of capture ring freezes.
    pub fn set_ring_freezes(&mut self, total: u64) {
        if total > self.kernel_freezes_seen {
            self.h.capture_ring_freezes.inc_by(total - self.kernel_freezes_seen);
            self.kernel_freezes_seen = total;
        }
    }

    /// Connections this sink's tracker holds now (the gauge is the sum over shared sinks).
    pub fn set_flows_tracked(&mut self, n: usize) {
        let n = n as i64;
        self.h.flows_tracked.inc_by(n - std::mem::replace(&mut self.flows_tracked_seen, n));
    }

    /// The session's transport, as its first bytes decided it.
    fn transport(&self, id: SessionId) -> Transport {
        self.transports.get(&id).copied().unwrap_or(Transport::Unknown)
    }

    fn open_session(&mut self, id: SessionId) {
        if self.open.insert(id) {
            self.h.sessions_open.inc();
        }
    }

    fn close_session(&mut self, id: SessionId) {
        if self.open.remove(&id) {
            self.h.sessions_open.dec();
        }
        self.not_expired(id);
    }

    /// The session is no longer expired and open: closed, ended, or its client active again.
    fn not_expired(&mut self, id: SessionId) {
        if self.expired_open.remove(&id) {
            self.h.sessions_expired_open.dec();
        }
    }

    fn count_client_expiry(&mut self, client_id: Option<&str>) {
        let Some(client_id) = client_id.map(str::to_string) else { return };
        *self.client_expiries.entry(client_id.clone()).or_default() += 1;
        if self.client_expiries.len() > self.client_id_labels {
            // Drop the client with the fewest expiries (not the one just counted).
            let fewest = self
                .client_expiries
                .iter()
                .filter(|(c, _)| **c != client_id)
                .min_by_key(|(c, n)| (**n, (*c).clone()))
                .map(|(c, _)| c.clone());
            if let Some(c) = fewest {
                self.client_expiries.remove(&c);
                self.h.client_expired.remove(&ClientLabels { client_id: c });
            }
        }
        self.h.client_expired.get_or_create(&ClientLabels { client_id }).inc();
    }
}

impl Sink for Metrics {
    fn on_stats(&mut self, s: &SourceStats) {
        let new = s.packets.saturating_sub(std::mem::replace(&mut self.packets_seen, s.packets));
        self.add_captured(new);
        self.set_kernel_dropped(s.kernel.dropped);
        self.set_ring_freezes(s.kernel.freezes);
        self.set_flows_tracked(s.flows_tracked);
        if let Some(ebpf) = s.ebpf {
            self.set_ebpf(ebpf);
        }
    }

    fn wants(&self) -> super::Wants {
        super::Wants { records: false, activity: true } // the silence-ratio histogram
    }

    fn on_event(&mut self, e: &Event) -> std::io::Result<()> {
        match &e.kind {
            EventKind::SessionStart { .. }
            | EventKind::Resync { .. }
            | EventKind::TlsClientHello { .. }
            | EventKind::TlsServerHello { .. }
            | EventKind::TlsKeys { .. }
            | EventKind::TlsAlert { .. }
            | EventKind::WsUpgrade { .. }
            | EventKind::WsResponse { .. }
            | EventKind::WsControl { .. } => {}
            EventKind::Transport { transport } => {
                self.transports.insert(e.session, *transport);
            }
            EventKind::TransportError { .. } => {
                self.h.malformed.inc();
            }
            EventKind::Connect { protocol, .. } => {
                let transport = self.transport(e.session);
                self.h.connects.get_or_create(&ProtocolLabels { protocol: *protocol, transport }).inc();
                self.open_session(e.session);
            }
            EventKind::Connack { effective_keepalive_s, .. } => {
                if let Some(k) = effective_keepalive_s {
                    self.effective_keepalive.observe(f64::from(*k));
                }
            }
            EventKind::Pingreq => {
                self.h.pings.get_or_create(&PingLabels { direction: Direction::Request }).inc();
                self.open_session(e.session); // joined mid-stream: pings show it is MQTT
            }
            EventKind::Pingresp { rtt_ms } => {
                self.h.pings.get_or_create(&PingLabels { direction: Direction::Response }).inc();
                if let Some(rtt) = rtt_ms {
                    self.ping_rtt.observe(rtt.as_secs_f64());
                }
            }
            EventKind::KeepaliveExpired { .. } => {
                let transport = self.transport(e.session);
                self.h.expired.get_or_create(&TransportLabels { transport }).inc();
                if self.expired_open.insert(e.session) {
                    self.h.sessions_expired_open.inc();
                }
                if self.client_id_labels > 0 {
                    self.count_client_expiry(e.client_id.as_ref().and_then(|c| c.as_deref()));
                }
            }
            EventKind::PingUnanswered { .. } => {
                self.h.pings_unanswered.inc();
            }
            EventKind::Close { close, by, .. } => {
                let transport = self.transport(e.session);
                self.h.closes.get_or_create(&CloseLabels { kind: *close, by: *by, transport }).inc();
                self.close_session(e.session);
            }
            EventKind::CloseWithoutDisconnect { .. } => {
                self.h.closes_without_disconnect.inc();
            }
            EventKind::Enforcement { verdict, lag_s } => {
                self.h.enforcement.get_or_create(&VerdictLabels { verdict: *verdict }).inc();
                if let (Verdict::OnTime | Verdict::Late, Some(lag)) = (verdict, lag_s) {
                    self.enforcement_lag.observe(*lag);
                }
            }
            EventKind::Gap { .. } => {
                self.h.stream_gaps.inc();
            }
            EventKind::Malformed { .. } => {
                self.h.malformed.inc();
            }
            EventKind::ClientActivity { silence_s, keepalive_s } => {
                self.silence_ratio.observe(silence_s.as_secs_f64() / f64::from(*keepalive_s));
                self.not_expired(e.session);
            }
            EventKind::SessionEnd { evicted, .. } => {
                if *evicted {
                    self.h.flows_evicted.inc();
                }
                self.close_session(e.session);
                self.transports.remove(&e.session);
            }
        }
        Ok(())
    }
}

/// The exposition in the Prometheus text format (0.0.4) from prometheus-client's OpenMetrics
/// text: counters' HELP and TYPE lines name the `_total` sample, `# UNIT` and `# EOF` go.
pub fn openmetrics_to_prometheus(openmetrics: &str) -> String {
    let mut counters = HashSet::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
        {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::FlowKeyJson;
    use crate::time::Timestamp;
    use std::time::Duration;

    fn ev(session: u64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_nanos(0), session, flow, kind, client_id: None }
    }

    fn exposition(registry: &Registry) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, registry).unwrap();
        s
    }

    fn connect(id: &str) -> EventKind {
        EventKind::Connect {
            protocol: Protocol::V5,
            keepalive_s: 5,
            client_id: Some(id.into()),
            clean_start: true,
            will: false,
        }
    }

    /// The series exposed before any traffic: only label combinations that can happen.
    #[test]
    fn only_possible_close_series_exist_before_traffic() {
        let mut registry = Registry::default();
        let _m = Metrics::new(&mut registry, 0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let closes: Vec<&str> = text.lines().filter(|l| l.starts_with("mqtt_keepalive_closes_total{")).collect();
        for impossible in [
            r#"kind="ws_close",by="client",transport="tcp""#,
            r#"kind="ws_close",by="broker",transport="tls""#,
            r#"kind="close_notify",by="client",transport="tcp""#,
            r#"kind="close_notify",by="broker",transport="websocket""#,
        ] {
            assert!(!closes.iter().any(|l| l.contains(impossible)), "{impossible} exposed");
        }
        for possible in [
            r#"kind="ws_close",by="client",transport="websocket+tls""#,
            r#"kind="close_notify",by="broker",transport="tls""#,
            r#"kind="fin",by="client",transport="tcp""#,
        ] {
            assert!(closes.iter().any(|l| l.contains(possible)), "{possible} missing");
        }
        // 4 transports x 2 sides x (4 kinds anywhere + close_notify on 2 + ws_close on 2).
        assert_eq!(closes.len(), 2 * (4 * 4 + 2 + 2));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        let series: std::collections::HashSet<&str> =
            text.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(['{', ' ']).next().unwrap_or(l)).collect();
        eprintln!("{samples} samples before traffic in {} metric names", series.len());
    }

    #[test]
    fn events_become_the_documented_series() {
        let mut registry = Registry::default();
        let mut m = Metrics::new(&mut registry, 0);
        for e in [
            ev(1, EventKind::Transport { transport: Transport::Tcp }),
            ev(1, connect("a")),
            ev(1, EventKind::Pingreq),
            ev(1, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(2)) }),
            ev(1, EventKind::KeepaliveExpired { keepalive_s: 5, last_activity: Timestamp::from_nanos(0) }),
            ev(
                1,
                EventKind::Close {
                    close: CloseKind::Fin,
                    by: Side::Broker,
                    after_silence_s: Duration::from_secs(8),
                    reason_code: None,
                },
            ),
            ev(1, EventKind::Enforcement { verdict: Verdict::Late, lag_s: Some(0.5) }),
        ] {
            m.on_event(&e).unwrap();
        }
        let text = exposition(&registry);
        for line in [
            "mqtt_keepalive_connects_total{protocol=\"5.0\",transport=\"tcp\"} 1",
            "mqtt_keepalive_pings_total{direction=\"request\"} 1",
            "mqtt_keepalive_pings_total{direction=\"response\"} 1",
            "mqtt_keepalive_ping_rtt_seconds_count 1",
            "mqtt_keepalive_expired_total{transport=\"tcp\"} 1",
            "mqtt_keepalive_closes_total{kind=\"fin\",by=\"broker\",transport=\"tcp\"} 1",
            "mqtt_keepalive_enforcement_total{verdict=\"late\"} 1",
            "mqtt_keepalive_enforcement_lag_seconds_sum 0.5",
            "mqtt_keepalive_sessions_open 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("client_id"), "client ids are not labels by default");
        assert!(
            text.lines().any(|l| l == "mqtt_keepalive_enforcement_total{verdict=\"on_time\"} 0"),
            "initialised to 0"
        );
    }

    #[test]
    fn ebpf_counts_are_added_as_they_grow() {
        use crate::model::EbpfStats;
        let mut registry = Registry::default();
        let mut m = Metrics::new(&mut registry, 0);
        m.set_ebpf(EbpfStats { records: 10, lost_bytes: 3, unbound_calls: 1, ..Default::default() });
        m.set_ebpf(EbpfStats { records: 25, lost_bytes: 3, unbound_calls: 2, ..Default::default() });
        let text = exposition(&registry);
        for line in [
            "mqtt_keepalive_ebpf_records_total 25",
            "mqtt_keepalive_ebpf_lost_bytes_total 3",
            "mqtt_keepalive_ebpf_unbound_calls_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn shared_sinks_add_up() {
        let mut registry = Registry::default();
        let mut a = Metrics::new(&mut registry, 0);
        let mut b = a.share();
        a.on_event(&ev(1, connect("a"))).unwrap();
        b.on_event(&ev(1, connect("b"))).unwrap(); // the same id on another thread's tracker
        b.on_event(&ev(2, connect("c"))).unwrap();
        b.on_event(&ev(2, EventKind::Pingreq)).unwrap();
        a.add_captured(10);
        b.add_captured(5);
        a.set_kernel_dropped(3);
        b.set_kernel_dropped(4);
        a.set_flows_tracked(7);
        b.set_flows_tracked(2);
        a.set_flows_tracked(6);
        let text = exposition(&registry);
        for line in [
            "mqtt_keepalive_connects_total{protocol=\"5.0\",transport=\"unknown\"} 3",
            "mqtt_keepalive_sessions_open 3",
            "mqtt_keepalive_pings_total{direction=\"request\"} 1",
            "mqtt_keepalive_capture_packets_total 15",
            "mqtt_keepalive_capture_dropped_packets_total 7",
            "mqtt_keepalive_flows_tracked 8",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    /// Issue 11: a hung broker (an expired session it leaves open) shows now, not at the close.
    #[test]
    fn expired_sessions_still_open_are_a_gauge() {
        let mut registry = Registry::default();
        let mut m = Metrics::new(&mut registry, 0);
        let expired = || EventKind::KeepaliveExpired { keepalive_s: 5, last_activity: Timestamp::from_nanos(0) };
        let gauge = |r: &Registry| {
            let text = exposition(r);
            text.lines().find_map(|l| l.strip_prefix("mqtt_keepalive_sessions_expired_open ")).unwrap().to_string()
        };
        for id in [1, 2, 3] {
            m.on_event(&ev(id, connect("x"))).unwrap();
            m.on_event(&ev(id, expired())).unwrap();
        }
        assert_eq!(gauge(&registry), "3");
        let close = EventKind::Close {
            close: CloseKind::Fin,
            by: Side::Broker,
            after_silence_s: Duration::from_secs(9),
            reason_code: None,
        };
        m.on_event(&ev(1, close)).unwrap();
        m.on_event(&ev(2, EventKind::ClientActivity { silence_s: Duration::from_secs(8), keepalive_s: 5 })).unwrap();
        assert_eq!(gauge(&registry), "1", "closed, and active again, are no longer counted");
        m.on_event(&ev(3, expired())).unwrap();
        assert_eq!(gauge(&registry), "1", "a session is counted once");
    }

    #[test]
    fn client_id_labels_are_opt_in_and_bounded() {
        let mut registry = Registry::default();
        let mut m = Metrics::new(&mut registry, 2);
        let expired = EventKind::KeepaliveExpired { keepalive_s: 5, last_activity: Timestamp::from_nanos(0) };
        for (session, id, expiries) in [(1, "a", 3), (2, "b", 1), (3, "c", 2)] {
            // Events carry their session's client id from its CONNECT on (as the tracker gives them).
            let carried = |kind| Event { client_id: Some(Some(id.into())), ..ev(session, kind) };
            m.on_event(&carried(connect(id))).unwrap();
            for _ in 0..expiries {
                m.on_event(&carried(expired.clone())).unwrap();
            }
        }
        let text = exposition(&registry);
        assert!(text.contains("mqtt_keepalive_client_expired_total{client_id=\"a\"} 3"), "{text}");
        assert!(text.contains("mqtt_keepalive_client_expired_total{client_id=\"c\"} 2"), "{text}");
        assert!(!text.contains("client_id=\"b\""), "{text}");
    }

    #[test]
    fn prometheus_text_names_counters_by_their_total_sample() {
        let om = "# HELP x_connects CONNECT packets.\n# TYPE x_connects counter\nx_connects_total 1\n# TYPE x_open gauge\nx_open 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(om),
            "# HELP x_connects_total CONNECT packets.\n# TYPE x_connects_total counter\nx_connects_total 1\n# TYPE x_open gauge\nx_open 2\n"
        );
    }
}
