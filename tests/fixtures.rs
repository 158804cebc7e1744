//! Verdicts on the real mosquitto captures in `fixtures/` (see fixtures/README.md): each
//! scenario's rules, checked against what the capture shows.

mod common;

use common::*;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::mqtt::Protocol;
use mqtt_keepalive::session::{EventKind, Verdict};
use mqtt_keepalive::sink::report::SessionRecord;

const US: f64 = 1e-6;

/// Expiry at exactly last activity + 1.5 x keepalive, a bare FIN from the broker after it, and
/// an enforcement verdict consistent with the lag.
fn assert_expired_and_closed_by_broker(
    s: &SessionRecord,
    events: &[mqtt_keepalive::session::Event],
    last_activity: f64,
) {
    let k = f64::from(s.effective_keepalive_s.unwrap());
    assert!(s.expired);
    let expired = events_named(events, s.id, "keepalive_expired");
    let deadline = last_activity + 1.5 * k;
    assert!((expired[0].ts.as_secs_f64() - deadline).abs() < US, "expiry stamped at the deadline itself");
    assert_eq!(s.close.kind, "fin");
    assert_eq!(s.close.by, Some(Side::Broker));
    let after_silence = s.close.after_silence_s.unwrap();
    let e = s.enforcement.expect("an expired session closed by the broker has a verdict");
    let lag = e.lag_s.unwrap();
    assert!((lag - (after_silence - 1.5 * k)).abs() < 2.0 * US, "lag = close - deadline");
    assert_eq!(e.verdict, if lag <= 1.0 { Verdict::OnTime } else { Verdict::Late });
}

#[test]
fn classic_experiment_keepalive_5_silent_client_is_expired_and_closed_late_by_a_bare_fin() {
    let (report, events) = analyze_fixture("classic-keepalive5-silent.pcap");
    let s = only_session(&report);
    assert_eq!(s.client_id.as_deref(), Some("silent-5"));
    assert_eq!(
        (s.protocol, s.keepalive_s, s.effective_keepalive_s, s.will),
        (Some(Protocol::V3_1_1), Some(5), Some(5), Some(true))
    );
    assert_eq!(s.expiry_s, Some(7.5));
    assert_eq!((s.pingreq, s.pingresp), (0, 0));
    assert_expired_and_closed_by_broker(s, &events, connect_time(&events, s.id));
    // mosquitto 2.0.11 closes this one seconds after the deadline: the capture shows 9.5 s.
    assert_eq!(s.enforcement.unwrap().verdict, Verdict::Late);
    let cwd = events_named(&events, s.id, "close_without_disconnect");
    assert_eq!(
        cwd[0].kind,
        EventKind::CloseWithoutDisconnect {
            close: mqtt_keepalive::session::CloseKind::Fin,
            by: Side::Broker,
            will_expected: true
        }
    );
    assert!(s.headroom.unwrap() > 1.5);
    assert_eq!(report.summary.wills_expected, 1);
}

#[test]
fn healthy_pings_are_all_answered_and_nothing_expires() {
    let (report, events) = analyze_fixture("healthy-pings.pcap");
    let s = only_session(&report);
    assert_eq!((s.pingreq, s.pingresp, s.pings_unanswered), (4, 4, 0));
    let rtt = s.ping_rtt_ms.unwrap();
    assert!(rtt.min > 0.0 && rtt.min <= rtt.median && rtt.median <= rtt.max && rtt.max < 10.0, "{rtt:?}");
    assert!(!s.expired);
    assert!(s.headroom.unwrap() <= 1.5);
    assert_eq!((s.close.kind, s.close.by), ("disconnect", Some(Side::Client)));
    assert!(events_named(&events, s.id, "close_without_disconnect").is_empty());
    assert_eq!(report.summary.ping_rtt_ms.unwrap().count, 4);
}

#[test]
fn publishing_without_pings_is_activity_enough() {
    let (report, _) = analyze_fixture("publish-no-pings.pcap");
    let s = only_session(&report);
    assert_eq!(s.pingreq, 0);
    assert!(!s.expired);
    assert_eq!(report.mqtt_packets["publish"], 5);
    assert!(s.max_silence_s.as_secs_f64() < 2.0);
    assert_eq!(s.close.kind, "disconnect");
}

#[test]
fn client_fin_without_disconnect_fires_the_will() {
    let (report, events) = analyze_fixture("client-fin.pcap");
    let s = only_session(&report);
    assert_eq!((s.close.kind, s.close.by), ("fin", Some(Side::Client)));
    assert!(!s.expired && s.enforcement.is_none());
    let cwd = &events_named(&events, s.id, "close_without_disconnect")[0].kind;
    assert!(matches!(cwd, EventKind::CloseWithoutDisconnect { will_expected: true, by: Side::Client, .. }));
}

#[test]
fn client_rst_without_disconnect() {
    let (report, _) = analyze_fixture("client-rst.pcap");
    let s = only_session(&report);
    assert_eq!((s.close.kind, s.close.by), ("rst", Some(Side::Client)));
    assert!(!s.expired);
    assert_eq!(report.summary.closes_without_disconnect, 1);
}

#[test]
fn mqtt5_server_keep_alive_caps_the_declared_keepalive() {
    let (report, events) = analyze_fixture("mqtt5-server-keepalive.pcap");
    let s = only_session(&report);
    assert_eq!(s.protocol, Some(Protocol::V5));
    assert_eq!((s.keepalive_s, s.server_keepalive_s, s.effective_keepalive_s), (Some(60), Some(10), Some(10)));
    assert_eq!(s.expiry_s, Some(15.0));
    // Judged by the broker's 10 s, not the declared 60 s: expired at CONNECT + 15 s.
    assert_expired_and_closed_by_broker(s, &events, connect_time(&events, s.id));
}

#[test]
fn mqtt_3_1_decodes() {
    let (report, _) = analyze_fixture("mqtt31.pcap");
    let s = only_session(&report);
    assert_eq!((s.protocol, s.keepalive_s, s.client_id.as_deref()), (Some(Protocol::V3_1), Some(3), Some("old-3.1")));
    assert_eq!((s.pingreq, s.pingresp), (3, 3));
    assert!(!s.expired);
}

#[test]
fn many_concurrent_sessions_get_their_own_verdicts() {
    let (report, events) = analyze_fixture("many-sessions.pcap");
    assert_eq!(report.sessions.len(), 30);
    for s in &report.sessions {
        let id = s.client_id.as_deref().unwrap();
        let kind = id.split('-').next().unwrap();
        match kind {
            "silent" => assert_expired_and_closed_by_broker(s, &events, connect_time(&events, s.id)),
            "healthy" => {
                assert_eq!((s.pingreq, s.pingresp), (4, 4), "{id}");
                assert!(!s.expired && s.close.kind == "disconnect", "{id}");
            }
            "pub" => assert!(s.pingreq == 0 && !s.expired && s.close.kind == "disconnect", "{id}"),
            "fin" | "rst" => {
                assert_eq!((s.close.kind, s.close.by), (kind, Some(Side::Client)), "{id}");
                assert!(!s.expired, "{id}");
            }
            other => panic!("unexpected client {other}"),
        }
    }
    assert_eq!(report.summary.expired, 8);
    // 8 silent clients and 3 FIN clients had a Will; the RST ones did not.
    assert_eq!(report.summary.wills_expected, 11);
    assert_eq!(report.summary.closes_without_disconnect, 14);
}

#[test]
fn capture_started_mid_session_gives_no_verdict_from_a_guess() {
    let (report, events) = analyze_fixture("mid-session.pcap");
    let s = only_session(&report);
    assert!(s.mid_stream);
    assert_eq!((s.protocol, s.keepalive_s, s.effective_keepalive_s), (None, None, None));
    assert_eq!(s.inferred_keepalive_s, Some(2));
    assert!(!s.expired && events_named(&events, s.id, "keepalive_expired").is_empty());
    assert_eq!((s.pingreq, s.pingresp), (5, 5));
    assert_eq!(s.close.kind, "disconnect");
    assert_eq!(report.summary.mid_stream, 1);
}

#[test]
fn linux_cooked_v2_in_pcapng() {
    let (report, _) = analyze_fixture("any-sll2.pcapng");
    let s = only_session(&report);
    assert_eq!(s.client_id.as_deref(), Some("with-credentials"));
    assert_eq!((s.pingreq, s.pingresp), (2, 2));
}

#[test]
fn linux_cooked_v1() {
    let (report, _) = analyze_fixture("any-sll.pcap");
    let s = only_session(&report);
    assert_eq!((s.client_id.as_deref(), s.pingresp), (Some("cooked"), 2));
}

#[test]
fn ipv6_sessions() {
    let (report, _) = analyze_fixture("ipv6.pcap");
    let s = only_session(&report);
    assert!(s.client.is_ipv6() && s.broker.is_ipv6());
    assert_eq!(s.broker.port(), 1883);
    assert_eq!((s.client_id.as_deref(), s.pingresp), (Some("over-ipv6"), 2));
}

#[test]
fn every_fixture_is_clean_tcp() {
    for f in std::fs::read_dir(fixture("")).unwrap() {
        let path = f.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")) {
            continue;
        }
        let (report, _) = analyze_with(std::slice::from_ref(&path), Default::default(), &[1883]);
        let t = &report.tcp;
        assert_eq!((t.gaps, t.malformed, t.non_mqtt_flows, t.retransmissions), (0, 0, 0, 0), "{}", path.display());
        assert!(report.capture.warnings.is_empty(), "{}", path.display());
    }
}

#[test]
fn events_come_out_in_time_order() {
    let (_, events) = analyze_fixture("many-sessions.pcap");
    assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts));
}
