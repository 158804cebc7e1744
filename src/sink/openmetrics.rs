//! The capture as the metrics the live agent would have exported (`analyze -f openmetrics`):
//! OpenMetrics text with timestamps, for `promtool tsdb create-blocks-from openmetrics`.
//!
//! Contract: [`Backfill`] is a [`Sink`] that folds the event stream into the live agent's own
//! [`Metrics`] (so names, types, help and labels are the live ones by construction; run the
//! analysis with [`SessionConfig::activity_events`](crate::session::SessionConfig) as the agent
//! does, for the silence-ratio histogram) and takes a sample of every series as a scrape would:
//! at the first packet, then every `step`, then at the last packet. A sample at time `T` counts
//! every event with `ts <= T`. Each series carries `instance` (given) and `job="mqtt-keepalive"`
//! (the scrape config in the README), as Prometheus adds them when it scrapes the agent.
//! [`Backfill::finish`] writes every family once (header, then each series' samples in time
//! order), then `# EOF`.
//!
//! What differs from a live agent, by necessity: sessions still open at the end of the capture
//! stay open (their offline `session_end` is not counted); `capture_packets_total` comes from
//! [`PacketSteps`], counted in a first pass over the files ([`crate::output`] reads them) (absent for standard input: then the
//! total is known only at the last sample); `flows_tracked` counts the connections between their
//! `session_start` and `session_end` (the tracker's table, as live, but without connections it
//! refused beyond `--max-flows`); `capture_dropped_packets_total` stays 0, as it is for a file.

use super::Sink;
use super::metrics::Metrics;
use crate::session::{Event, EventKind};
use crate::time::Timestamp;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

/// The shortest step (shorter ones are taken as this).
pub const MIN_STEP: Duration = Duration::from_millis(1);
/// The job label of every series (the README's scrape config).
pub const JOB: &str = "mqtt-keepalive";

/// Packets read from the capture, counted per step from the first packet.
#[derive(Clone, Debug, Default)]
pub struct PacketSteps {
    pub first: Option<Timestamp>,
    /// `counts[k]`: packets with `first + (k-1) * step < ts <= first + k * step` (`counts[0]`:
    /// those at `first`).
    pub counts: Vec<u64>,
    step: Duration,
    last: Option<Timestamp>,
}

impl PacketSteps {
    /// Counts per `step` (at least [`MIN_STEP`]); the packets' times are given by [`PacketSteps::add`]
    /// (the caller reads the capture: [`crate::output`] does, in a first pass over the files).
    pub fn new(step: Duration) -> Self {
        PacketSteps { step: step.max(MIN_STEP), ..Default::default() }
    }

    /// Counts one packet stamped `ts`, in read order (time kept monotonic as the analysis does).
    pub fn add(&mut self, ts: Timestamp) {
        let ts = self.last.map_or(ts, |l| l.max(ts));
        self.last = Some(ts);
        let first = *self.first.get_or_insert(ts);
        let k = step_index(first, ts, self.step);
        if self.counts.len() <= k {
            self.counts.resize(k + 1, 0);
        }
        self.counts[k] += 1;
    }

    /// Packets with `ts <= first + k * step`.
    fn up_to(&self, k: usize) -> u64 {
        self.counts.iter().take(k + 1).sum()
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The smallest `k` with `ts <= first + k * step`.
fn step_index(first: Timestamp, ts: Timestamp, step: Duration) -> usize {
    let after = ts.since(first).as_nanos();
    after.div_ceil(step.as_nanos().max(1)) as usize
}

/// One metric family: its header lines and its series, in first-seen order.
struct Family {
    header: Vec<String>,
    /// (series name with labels, samples (ts, value)).
    series: Vec<(String, Vec<(Timestamp, f64)>)>,
}

/// The backfill sink. See the module doc.
pub struct Backfill {
    registry: Registry,
    metrics: Metrics,
    step: Duration,
    labels: String,
    packets: Option<PacketSteps>,
    packets_counted: u64,
    /// Connections between their `session_start` and `session_end`.
    flows: usize,
    /// The first sample's time, and the number of samples taken on the step grid.
    first: Option<Timestamp>,
    taken: usize,
    last_sample: Option<Timestamp>,
    families: Vec<Family>,
    index: HashMap<String, (usize, usize)>,
}

impl Backfill {
    /// A backfill sampling every `step` (at least [`MIN_STEP`]), with `instance` as the instance label.
    pub fn new(step: Duration, instance: &str, packets: Option<PacketSteps>) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry, 0);
        Backfill {
            registry,
            metrics,
            step: step.max(MIN_STEP),
            labels: format!("instance=\"{}\",job=\"{JOB}\"", label_value(instance)),
            first: packets.as_ref().and_then(|p| p.first),
            packets,
            packets_counted: 0,
            flows: 0,
            taken: 0,
            last_sample: None,
            families: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Samples on the grid up to, not including, `until` (or including it with `inclusive`).
    fn sample_until(&mut self, until: Timestamp, inclusive: bool) {
        let Some(first) = self.first else { return };
        loop {
            let at = first.saturating_add(self.step * self.taken as u32);
            if at > until || (at == until && !inclusive) {
                return;
            }
            if let Some(p) = &self.packets {
                let n = p.up_to(self.taken);
                self.metrics.add_captured(n - self.packets_counted);
                self.packets_counted = n;
            }
            self.sample(at);
            self.taken += 1;
        }
    }

    /// Records every series' value at `at`.
    fn sample(&mut self, at: Timestamp) {
        self.metrics.set_flows_tracked(self.flows);
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return; // writing to a String does not fail
        }
        let mut family: Option<usize> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let mut words = rest.splitn(3, ' ');
                let (what, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                if what == "EOF" {
                    break;
                }
                let i = match self.families.iter().position(|f| family_name(&f.header) == name) {
                    Some(i) => i,
                    None => {
                        self.families.push(Family { header: Vec::new(), series: Vec::new() });
                        self.families.len() - 1
                    }
                };
                if !self.families[i].header.iter().any(|h| h == line) {
                    self.families[i].header.push(line.to_string());
                }
                family = Some(i);
                continue;
            }
            let (Some(f), Some((series, value))) = (family, line.rsplit_once(' ')) else { continue };
            let &mut (fi, si) = self.index.entry(series.to_string()).or_insert_with(|| {
                self.families[f].series.push((with_labels(series, &self.labels), Vec::new()));
                (f, self.families[f].series.len() - 1)
            });
            if let Ok(v) = value.parse::<f64>() {
                self.families[fi].series[si].1.push((at, v));
            }
        }
        self.last_sample = Some(at);
    }

    /// Takes the last samples (the grid up to `last`, the last packet's time, and `last`
    /// itself) and writes the document.
    pub fn finish<W: Write>(mut self, last: Option<Timestamp>, mut out: W) -> io::Result<W> {
        if let Some(last) = last {
            self.first.get_or_insert(last);
            self.sample_until(last, true);
            if let Some(p) = &self.packets {
                let n = p.total();
                self.metrics.add_captured(n - self.packets_counted);
                self.packets_counted = n;
            }
            if self.last_sample != Some(last) {
                self.sample(last);
            }
        }
        for f in &self.families {
            for h in &f.header {
                writeln!(out, "{h}")?;
            }
            for (series, samples) in &f.series {
                for (ts, v) in samples {
                    writeln!(out, "{series} {v} {}", om_ts(*ts))?;
                }
            }
        }
        out.write_all(b"# EOF\n")?;
        Ok(out)
    }
}

impl Sink for Backfill {
    fn on_event(&mut self, e: &Event) -> io::Result<()> {
        self.first.get_or_insert(e.ts);
        self.sample_until(e.ts, false);
        match e.kind {
            // Open at the end of the capture: a live agent would still see it open.
            EventKind::SessionEnd { open: true, evicted: false, .. } => return Ok(()),
            EventKind::SessionStart { .. } => self.flows += 1,
            EventKind::SessionEnd { .. } => self.flows = self.flows.saturating_sub(1),
            _ => {}
        }
        self.metrics.on_event(e)
    }
}

/// The family name of a header (`# TYPE name type` and the like).
fn family_name(header: &[String]) -> &str {
    header.first().and_then(|h| h.split(' ').nth(2)).unwrap_or("")
}

/// `name{labels}` with the instance and job labels added.
fn with_labels(series: &str, labels: &str) -> String {
    match series.strip_suffix('}') {
        Some(open) => format!("{open},{labels}}}"),
        None => format!("{series}{{{labels}}}"),
    }
}

/// A label value, escaped as the text format requires.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// An OpenMetrics timestamp: Unix seconds, with milliseconds (what Prometheus stores).
fn om_ts(t: Timestamp) -> String {
    let ms = t.as_nanos().div_euclid(1_000_000);
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Side;
    use crate::mqtt::Protocol;
    use crate::session::CloseKind;
    use crate::session::event::FlowKeyJson;

    fn ev(ts: f64, session: u64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_secs_f64(ts), session, flow, kind, client_id: None }
    }

    fn connect() -> EventKind {
        EventKind::Connect {
            protocol: Protocol::V5,
            keepalive_s: 5,
            client_id: Some("a".into()),
            clean_start: true,
            will: false,
        }
    }

    fn doc(events: &[Event], last: f64, packets: Option<PacketSteps>) -> String {
        let mut b = Backfill::new(Duration::from_secs(10), "node \"1\"", packets);
        for e in events {
            b.on_event(e).unwrap();
        }
        String::from_utf8(b.finish(Some(Timestamp::from_secs_f64(last)), Vec::new()).unwrap()).unwrap()
    }

    /// The samples of one series, as (ts, value).
    fn samples<'a>(doc: &'a str, series: &str) -> Vec<(&'a str, &'a str)> {
        doc.lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|rest| rest.split_once(' ').unwrap())
            .map(|(v, ts)| (ts, v))
            .collect()
    }

    #[test]
    fn a_sample_every_step_counts_the_events_up_to_it() {
        let tcp = || EventKind::Transport { transport: crate::layer::Transport::Tcp };
        let events = [
            ev(100.0, 1, tcp()),
            ev(100.0, 1, connect()),
            ev(105.0, 1, EventKind::KeepaliveExpired { keepalive_s: 5, last_activity: Timestamp::from_secs_f64(97.5) }),
            ev(120.0, 2, tcp()),
            ev(120.0, 2, connect()),
            ev(
                121.0,
                1,
                EventKind::Close {
                    close: CloseKind::Fin,
                    by: Side::Broker,
                    after_silence_s: Duration::from_secs(21),
                    reason_code: None,
                },
            ),
            // Open at the end of the capture: not closed for the metrics.
            ev(
                125.0,
                2,
                EventKind::SessionEnd {
                    last_packet: Timestamp::from_secs_f64(125.0),
                    max_silence_s: Duration::ZERO,
                    open: true,
                    evicted: false,
                    mqtt: true,
                },
            ),
        ];
        let d = doc(&events, 125.0, None);
        let l = "instance=\"node \\\"1\\\"\",job=\"mqtt-keepalive\"";
        assert_eq!(
            samples(&d, &format!("mqtt_keepalive_expired_total{{transport=\"tcp\",{l}}}")),
            [("100.000", "0"), ("110.000", "1"), ("120.000", "1"), ("125.000", "1")],
            "{d}"
        );
        assert_eq!(
            samples(&d, &format!("mqtt_keepalive_connects_total{{protocol=\"5.0\",transport=\"tcp\",{l}}}")),
            [("100.000", "1"), ("110.000", "1"), ("120.000", "2"), ("125.000", "2")]
        );
        assert_eq!(samples(&d, &format!("mqtt_keepalive_sessions_open{{{l}}}")).last(), Some(&("125.000", "1")));
        assert!(d.ends_with("# EOF\n"));
        assert_eq!(d.matches("# TYPE mqtt_keepalive_expired counter").count(), 1, "each family once");
        assert_eq!(samples(&d, &format!("mqtt_keepalive_flows_tracked{{{l}}}")).last(), Some(&("125.000", "0")));
        // Every family's lines are together: once a family's samples end, its name does not recur.
        let names: Vec<&str> =
            d.lines().filter(|l| !l.starts_with('#')).map(|l| l.split(['{', ' ']).next().unwrap()).collect();
        let mut seen = Vec::new();
        for n in names {
            let family = n
                .trim_end_matches("_total")
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            if seen.last() != Some(&family) {
                assert!(!seen.contains(&family), "{family} interleaved");
                seen.push(family);
            }
        }
    }

    #[test]
    fn packets_are_counted_per_step() {
        let steps = PacketSteps {
            first: Some(Timestamp::from_secs_f64(100.0)),
            counts: vec![1, 4, 0, 2],
            ..PacketSteps::new(Duration::from_secs(10))
        };
        let d = doc(&[ev(100.0, 1, connect())], 127.0, Some(steps));
        let s = samples(&d, "mqtt_keepalive_capture_packets_total{instance=\"node \\\"1\\\"\",job=\"mqtt-keepalive\"}");
        assert_eq!(s, [("100.000", "1"), ("110.000", "5"), ("120.000", "5"), ("127.000", "7")]);
    }

    #[test]
    fn step_indices_and_timestamps() {
        let t = Timestamp::from_secs_f64;
        assert_eq!(step_index(t(100.0), t(100.0), Duration::from_secs(15)), 0);
        assert_eq!(step_index(t(100.0), t(100.001), Duration::from_secs(15)), 1);
        assert_eq!(step_index(t(100.0), t(115.0), Duration::from_secs(15)), 1);
        // A zero step counts as the shortest one, not as one bin per nanosecond; time is kept
        // monotonic.
        let mut steps = PacketSteps::new(Duration::ZERO);
        for ts in [100.0, 100.0, 99.0, 101.0] {
            steps.add(t(ts));
        }
        assert_eq!((steps.counts.len(), steps.counts[0], steps.counts[1000], steps.total()), (1001, 3, 1, 4));
        assert_eq!(om_ts(t(1_764_160_000.123_456)), "1764160000.123");
        assert_eq!(with_labels("x_total", "a=\"b\""), "x_total{a=\"b\"}");
        assert_eq!(with_labels("x_total{k=\"v\"}", "a=\"b\""), "x_total{k=\"v\",a=\"b\"}");
    }
}
