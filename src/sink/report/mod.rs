//! The analysis report: one record per MQTT session plus capture totals, as text or JSON.
//!
//! Contract: session records are made by [`RecordState`] in the tracker and arrive here as
//! sessions end. Parts, one job each: [`totals`] folds them into the summary and adds the capture
//! figures; [`json`] writes the documented `analyze --format json` document, streamed
//! ([`JsonWriter`]) or whole ([`AnalysisReport`]); [`text`] renders the table people read;
//! [`sessions`] is the live agent's `/sessions` document ([`sessions_text`] as a table); [`rank`] orders sessions by severity; [`deadline`] by how near their deadline;
//! [`terminal`] makes captured strings safe to print and measures cells; [`times`] formats and
//! parses times; [`filter`] chooses sessions and events; [`timeline`] is one session's events as
//! text (`--session`).
//! Output order is deterministic.

pub mod deadline;
pub mod filter;
pub mod json;
pub mod rank;
pub mod sessions;
pub mod sessions_text;
pub mod terminal;
pub mod text;
pub mod timeline;
/// Times as people read them (below the core and the sinks: [`crate::model::times`]).
pub use crate::model::times;
pub mod totals;

pub use crate::session::record::{
    CloseRecord, EnforcementRecord, MAX_EVENTS_PER_SESSION, RecordState, RttSummary, SessionEvent, SessionRecord,
};
pub use json::{AnalysisReport, JSON_VERSION, JsonWriter};
pub use rank::WorstSessions;
pub use sessions::{RecentSessions, SessionOrder, SessionsDocument, SessionsSelection};
pub use totals::{CaptureStats, Percentiles, Report, Settings, Summary, Totals};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Side;
    use crate::mqtt::Protocol;
    use crate::session::event::FlowKeyJson;
    use crate::session::{CloseKind, Event, EventKind, SessionId};
    use crate::time::Timestamp;
    use crate::tracker::TrackerCounters;
    use std::collections::HashMap;
    use std::time::Duration;

    fn ev(ts: f64, session: u64, kind: EventKind) -> Event {
        let flow = FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        Event { ts: Timestamp::from_secs_f64(ts), session, flow, kind, client_id: None }
    }

    fn end(ts: f64, silence: f64, mqtt: bool) -> EventKind {
        EventKind::SessionEnd {
            last_packet: Timestamp::from_secs_f64(ts),
            max_silence_s: Duration::from_secs_f64(silence),
            open: false,
            evicted: false,
            mqtt,
        }
    }

    #[test]
    fn folds_a_session_and_skips_non_mqtt_connections() {
        let mut folding: HashMap<SessionId, RecordState> = HashMap::new();
        let mut records = Vec::new();
        for e in [
            ev(0.0, 0, EventKind::SessionStart { mid_stream: false }),
            ev(0.0, 1, EventKind::SessionStart { mid_stream: false }),
            ev(
                0.1,
                0,
                EventKind::Connect {
                    protocol: Protocol::V5,
                    keepalive_s: 60,
                    client_id: Some("a".into()),
                    clean_start: true,
                    will: true,
                },
            ),
            ev(0.1, 0, EventKind::Connack { code: 0, server_keepalive_s: Some(20), effective_keepalive_s: Some(20) }),
            ev(5.0, 0, EventKind::Pingreq),
            ev(5.002, 0, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(2)) }),
            ev(9.0, 0, EventKind::Pingreq),
            ev(9.004, 0, EventKind::Pingresp { rtt_ms: Some(Duration::from_millis(4)) }),
            ev(
                30.0,
                0,
                EventKind::Close {
                    close: CloseKind::Rst,
                    by: Side::Client,
                    after_silence_s: Duration::from_secs(21),
                    reason_code: None,
                },
            ),
            ev(30.0, 1, end(3.0, 0.0, false)),
            ev(30.0, 0, end(30.0, 21.0, true)),
        ] {
            match e.kind {
                EventKind::SessionStart { mid_stream } => {
                    folding.insert(e.session, RecordState::new(e.ts, mid_stream));
                }
                EventKind::SessionEnd { .. } => records.extend(folding.remove(&e.session).unwrap().finish(&e)),
                _ => folding.get_mut(&e.session).unwrap().apply(&e),
            }
            if e.kind.as_str() == "pingresp" && e.ts.as_secs_f64() > 9.0 {
                let open = folding[&0].snapshot(0, e.flow, Duration::ZERO);
                assert_eq!(open.ping_rtt_ms.map(|p| p.max), Some(4.0), "derived fields while open");
                assert_eq!(open.close.kind, "open");
            }
        }
        assert_eq!(records.len(), 1, "the non-MQTT connection gives no record");
        let mut recent = RecentSessions::new(1);
        recent.push(records[0].clone());
        recent.push(records[0].clone());
        let doc = SessionsDocument::new(vec![records[0].clone()], 10, &recent);
        assert_eq!(doc.sessions.len(), 2, "open ones, then at most `keep` closed ones");
        assert_eq!(doc.sessions[1].close.kind, "rst");
        let doc = SessionsDocument::new(vec![records[0].clone(); 3], 1, &RecentSessions::new(0));
        assert_eq!((doc.open, doc.sessions.len()), (3, 1), "open sessions beyond the limit are counted");
        // limit= applies to the closed ones too; client_id= chooses both.
        let mut recent = RecentSessions::new(10);
        for (id, cid) in [(5, "dev-1"), (6, "other"), (7, "dev-2"), (8, "dev-3")] {
            let mut r = records[0].clone();
            (r.id, r.client_id) = (id, Some(cid.into()));
            recent.push(r);
        }
        let ids = |d: &SessionsDocument| d.sessions.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&SessionsDocument::new(vec![], 2, &recent)), [7, 8], "the newest closed, newest last");
        let dev = SessionsSelection { limit: 10, client_id: Some(filter::Glob::new("dev-*")), ..Default::default() };
        let open = vec![records[0].clone()]; // client id "a"
        let doc = SessionsDocument::select(open, &dev, &recent);
        assert_eq!((doc.open, ids(&doc)), (0, vec![5, 7, 8]), "only matching sessions, open ones counted so");
        let settings = Settings { ports: vec![1883], ping_timeout_s: None, enforcement_tolerance_s: 1.0 };
        let mut r = Report::new();
        records.iter().for_each(|s| r.add(s));
        let report =
            AnalysisReport::new(r.totals(CaptureStats::default(), TrackerCounters::default(), settings), records);
        assert_eq!(report.sessions.len(), 1);
        let s = &report.sessions[0];
        assert_eq!((s.keepalive_s, s.server_keepalive_s, s.effective_keepalive_s), (Some(60), Some(20), Some(20)));
        assert_eq!(s.ping_rtt_ms, Some(RttSummary { min: 2.0, median: 2.0, max: 4.0 }));
        assert_eq!(s.headroom, Some(1.05));
        assert_eq!(s.close.kind, "rst");
        assert_eq!(report.summary.closes_without_disconnect, 1);
        assert_eq!(report.summary.wills_expected, 1);
        let text = report.render_text();
        assert!(text.contains("60->20"), "{text}");
        assert!(text.contains("rst by client"), "{text}");
        assert_eq!(report.summary.ping_rtt_ms.map(|p| (p.count, p.max)), Some((2, 4.0)));
        let streamed: serde_json::Value = serde_json::from_slice(&report.write_json(Vec::new()).unwrap()).unwrap();
        assert_eq!(streamed, serde_json::to_value(&report).unwrap(), "the streamed document is the report");
    }
}
