//! The event stream as JSON lines: one object per event, in time order, written as they happen.
//! Each object has `ts`, `session`, `client`, `broker`, `client_id` (the session's, once its
//! CONNECT is seen; null before), `kind` and the kind's fields (README, "Events"); a `connect`
//! event's `client_id` is its own.
//!
//! Contract: with a [`SessionFilter`] ([`JsonLines::with_filter`]) only the events it wants are
//! written; under a client id pattern, a session's events before its CONNECT (at most
//! [`HELD_BEFORE_CONNECT`] of them) are held until the CONNECT says whether the session matches,
//! and dropped when it does not or never comes. The client id of each line is the one the event
//! carries ([`Event::client_id`]): this sink keeps no table of sessions (only, under a client id
//! pattern, the events held for sessions not yet connected).

use super::Sink;
use super::report::filter::SessionFilter;
use crate::session::event::{FlowKeyJson, secs};
use crate::session::{Event, EventKind, SessionId};
use crate::time::Timestamp;
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use std::io::Write;

/// Events of one session held before its CONNECT under a client id pattern.
pub const HELD_BEFORE_CONNECT: usize = 16;

/// Writes events as JSON lines.
pub struct JsonLines<W: Write> {
    out: W,
    filter: SessionFilter,
    /// Under a client id pattern: events of sessions not yet connected.
    held: HashMap<SessionId, Vec<Event>>,
}

/// One line: the event with its session's client id.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "secs")]
    ts: Timestamp,
    session: SessionId,
    #[serde(flatten)]
    flow: FlowKeyJson,
    /// Absent for `connect`, whose kind carries its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<Option<&'a str>>,
    #[serde(flatten)]
    kind: &'a EventKind,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self::with_filter(out, SessionFilter::default())
    }

    /// Writes only the events `filter` wants (see the module doc).
    pub fn with_filter(out: W, filter: SessionFilter) -> Self {
        JsonLines { out, filter, held: HashMap::new() }
    }

    /// Flushes buffered lines.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes one event; `before_connect` ones (held) have a null client id, as they would
    /// have had when they happened.
    fn write(&mut self, event: &Event, before_connect: bool) -> std::io::Result<()> {
        let client_id = match &event.kind {
            EventKind::Connect { .. } => None,
            _ if before_connect => Some(None),
            _ => Some(event.client_id.as_ref().and_then(|c| c.as_deref())),
        };
        let line = Line { ts: event.ts, session: event.session, flow: event.flow, client_id, kind: &event.kind };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        if let EventKind::ClientActivity { .. } = event.kind {
            return Ok(()); // a metrics feed, not an event of the stream
        }
        let connected = event.client_id.is_some();
        let ends = matches!(event.kind, EventKind::SessionEnd { .. });
        let result = if self.filter.is_empty() {
            self.write(event, false)
        } else if !connected && self.filter.client_id.is_some() {
            // Whether this session matches is known at its CONNECT.
            let held = self.held.entry(event.session).or_default();
            if held.len() < HELD_BEFORE_CONNECT && !ends {
                held.push(event.clone());
            }
            Ok(())
        } else {
            let id = event.client_id.as_ref().and_then(|c| c.as_deref());
            let matches = self.filter.client_id_matches(id);
            let held = self.held.remove(&event.session).filter(|_| matches).unwrap_or_default();
            let mut wanted: Vec<(&Event, bool)> =
                held.iter().filter(|e| self.filter.wants_event(e, id)).map(|e| (e, true)).collect();
            if self.filter.wants_event(event, id) {
                wanted.push((event, false));
            }
            wanted.into_iter().try_for_each(|(e, before_connect)| self.write(e, before_connect))
        };
        if ends {
            self.held.remove(&event.session);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::Protocol;
    use crate::session::record::RecordState;
    use crate::sink::report::filter::Glob;

    fn ev(ts: f64, session: u64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_secs_f64(ts), session, flow, kind, client_id: None }
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

    fn end() -> EventKind {
        EventKind::SessionEnd {
            last_packet: Timestamp::from_secs_f64(9.0),
            max_silence_s: std::time::Duration::ZERO,
            open: false,
            evicted: false,
            mqtt: true,
        }
    }

    /// The events of three sessions, with their client ids as the tracker gives them (from the
    /// session's record state).
    fn script() -> Vec<Event> {
        let mut states: HashMap<SessionId, RecordState> = HashMap::new();
        let mut events = vec![
            ev(0.0, 0, EventKind::SessionStart { mid_stream: false }),
            ev(0.5, 1, EventKind::SessionStart { mid_stream: false }),
            ev(1.0, 0, connect("sensor-1")),
            ev(1.5, 1, connect("other")),
            ev(2.0, 0, EventKind::Pingreq),
            ev(2.5, 1, EventKind::Pingreq),
            ev(9.0, 0, end()),
            ev(9.0, 1, end()),
            ev(9.5, 2, EventKind::SessionStart { mid_stream: true }),
        ];
        for e in &mut events {
            states.entry(e.session).or_insert_with(|| RecordState::new(e.ts, false)).carry_client_id(e);
        }
        events
    }

    fn lines(filter: SessionFilter) -> Vec<serde_json::Value> {
        let mut sink = JsonLines::with_filter(Vec::new(), filter);
        for e in script() {
            sink.on_event(&e).unwrap();
        }
        let out = sink.into_inner().unwrap();
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn every_event_carries_its_sessions_client_id() {
        let all = lines(SessionFilter::default());
        assert_eq!(all.len(), 9);
        let ids: Vec<(u64, &str, &serde_json::Value)> = all
            .iter()
            .map(|l| (l["session"].as_u64().unwrap(), l["kind"].as_str().unwrap(), &l["client_id"]))
            .collect();
        assert_eq!(ids[0], (0, "session_start", &serde_json::Value::Null), "null before CONNECT");
        assert!(all[0].as_object().unwrap().contains_key("client_id"));
        assert_eq!(ids[2], (0, "connect", &serde_json::json!("sensor-1")));
        assert_eq!(ids[5], (1, "pingreq", &serde_json::json!("other")));
        assert_eq!(ids[6], (0, "session_end", &serde_json::json!("sensor-1")));
        let raw = serde_json::to_string(&all[2]).unwrap();
        assert_eq!(raw.matches("client_id").count(), 1, "a connect has one client_id: {raw}");
    }

    #[test]
    fn filters_choose_events_holding_those_before_connect() {
        let f = SessionFilter { client_id: Some(Glob::new("sensor-*")), ..Default::default() };
        let kinds: Vec<(u64, String)> =
            lines(f).iter().map(|l| (l["session"].as_u64().unwrap(), l["kind"].as_str().unwrap().into())).collect();
        let want = [(0, "session_start"), (0, "connect"), (0, "pingreq"), (0, "session_end")];
        assert_eq!(kinds, want.map(|(s, k)| (s, k.to_string())), "the held session_start is written at CONNECT");
        let f = SessionFilter { client_id: Some(Glob::new("sensor-*")), ..Default::default() };
        assert_eq!(lines(f)[0]["client_id"], serde_json::Value::Null, "as it was before CONNECT");
        let f = SessionFilter { since: Some(Timestamp::from_secs_f64(1.5)), session: Some(1), ..Default::default() };
        let times: Vec<f64> = lines(f).iter().map(|l| l["ts"].as_f64().unwrap()).collect();
        assert_eq!(times, [1.5, 2.5, 9.0]);
    }
}
