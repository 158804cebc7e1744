//! Synthetic captures for what a broker will not do on demand: reordering, retransmission,
//! one byte per segment, split remaining lengths, sequence wraparound, link encapsulations, loss,
//! garbage, huge remaining lengths. The same MQTT conversation must give the same verdicts
//! however TCP and the link layer carry it.

mod common;

use common::*;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::session::{EventKind, Verdict};
use mqtt_keepalive::synth::{Capture, Conn, Encap, Flags, mqtt};
use mqtt_keepalive::time::Timestamp;
use mqtt_keepalive::tracker::TrackerConfig;
use std::net::SocketAddr;

/// Capture time `s` seconds after a fixed start, exact to the nanosecond.
fn t(s: f64) -> Timestamp {
    Timestamp::from_nanos(1_700_000_000_000_000_000 + (s * 1e9).round() as i64)
}

fn addrs(v6: bool) -> (SocketAddr, SocketAddr) {
    if v6 {
        ("[2001:db8::1]:50000".parse().unwrap(), "[2001:db8::2]:1883".parse().unwrap())
    } else {
        ("192.0.2.1:50000".parse().unwrap(), "192.0.2.2:1883".parse().unwrap())
    }
}

/// One MQTT conversation: (time, sender, packet bytes). Keepalive 4, a ping, a 200-byte
/// PUBLISH (two-byte remaining length), then silence until the broker closes at 20 s.
fn conversation() -> Vec<(f64, Side, Vec<u8>)> {
    let big: Vec<u8> = (0..200u8).collect();
    vec![
        (0.001, Side::Client, mqtt::connect(4, 4, "dev-1", true, None)),
        (0.002, Side::Broker, mqtt::connack(0, None)),
        (3.0, Side::Client, mqtt::pingreq()),
        (3.0005, Side::Broker, mqtt::pingresp()),
        (6.0, Side::Client, mqtt::publish("t/big", &big)),
        (6.0, Side::Client, mqtt::publish("t/small", b"1")),
    ]
}

/// How TCP carries the conversation.
#[derive(Clone, Copy)]
struct Carriage {
    encap: Encap,
    v6: bool,
    client_isn: u32,
    /// Bytes per segment (0: one segment per MQTT packet).
    chunk: usize,
    /// Swap each pair of consecutive segments of a direction (same timestamp).
    reorder: bool,
    /// Send every data segment twice.
    duplicate: bool,
}

const PLAIN: Carriage =
    Carriage { encap: Encap::Ethernet, v6: false, client_isn: 1000, chunk: 0, reorder: false, duplicate: false };

fn render(c: Carriage) -> Capture {
    let (client, broker) = addrs(c.v6);
    let mut cap = Capture::new(c.encap);
    let mut conn = Conn::new(client, broker, c.client_isn, 7_000_000);
    conn.handshake(&mut cap, t(0.0));
    for (at, from, bytes) in conversation() {
        let pieces: Vec<&[u8]> = if c.chunk == 0 { vec![&bytes] } else { bytes.chunks(c.chunk).collect() };
        let mut frames = Vec::new();
        for piece in pieces {
            let seq = match from {
                Side::Client => conn.client_seq,
                Side::Broker => conn.broker_seq,
            };
            frames.push(conn.frame_at(c.encap, from, seq, piece));
            match from {
                Side::Client => conn.client_seq = conn.client_seq.wrapping_add(piece.len() as u32),
                Side::Broker => conn.broker_seq = conn.broker_seq.wrapping_add(piece.len() as u32),
            }
        }
        if c.reorder {
            for pair in frames.chunks_mut(2) {
                pair.reverse();
            }
        }
        for f in frames {
            if c.duplicate {
                cap.raw(t(at), f.clone());
            }
            cap.raw(t(at), f);
        }
    }
    conn.ack(&mut cap, t(6.001), Side::Broker);
    conn.fin(&mut cap, t(20.0), Side::Broker);
    conn.fin(&mut cap, t(20.001), Side::Client);
    conn.ack(&mut cap, t(20.002), Side::Broker);
    cap
}

fn sessions_json(bytes: &[u8]) -> serde_json::Value {
    let (report, _) = analyze_bytes(bytes);
    serde_json::to_value(&report.sessions).unwrap()
}

#[test]
fn baseline_verdicts() {
    let (report, events) = analyze_bytes(&render(PLAIN).to_pcap());
    let s = only_session(&report);
    assert_eq!((s.keepalive_s, s.pingreq, s.pingresp), (Some(4), 1, 1));
    assert_eq!(s.ping_rtt_ms.unwrap().median, 0.5);
    assert!(s.expired);
    let expired = events_named(&events, s.id, "keepalive_expired");
    assert_eq!(expired[0].ts, t(12.0), "last activity 6 s + 1.5 x 4 s");
    assert_eq!(s.enforcement.unwrap().verdict, Verdict::Late);
    assert_eq!(s.enforcement.unwrap().lag_s, Some(8.0));
    assert_eq!(report.mqtt_packets["publish"], 2);
    assert_eq!(report.tcp.gaps, 0);
}

#[test]
fn any_segmentation_reordering_or_duplication_gives_the_same_sessions() {
    let reference = sessions_json(&render(PLAIN).to_pcap());
    let variants = [
        ("one byte per segment", Carriage { chunk: 1, ..PLAIN }),
        // 2-byte chunks split the PUBLISH's two-byte remaining length across segments.
        ("remaining length split", Carriage { chunk: 2, ..PLAIN }),
        ("3-byte chunks", Carriage { chunk: 3, ..PLAIN }),
        ("out of order", Carriage { chunk: 5, reorder: true, ..PLAIN }),
        ("retransmitted", Carriage { duplicate: true, ..PLAIN }),
        ("reordered and retransmitted bytes", Carriage { chunk: 7, reorder: true, duplicate: true, ..PLAIN }),
        ("sequence wraparound", Carriage { client_isn: u32::MAX - 40, chunk: 16, ..PLAIN }),
    ];
    for (name, c) in variants {
        assert_eq!(sessions_json(&render(c).to_pcap()), reference, "{name}");
    }
}

#[test]
fn retransmissions_and_reordering_are_counted() {
    let (report, _) = analyze_bytes(&render(Carriage { chunk: 7, reorder: true, duplicate: true, ..PLAIN }).to_pcap());
    assert!(report.tcp.retransmissions > 0);
    assert!(report.tcp.out_of_order > 0);
    assert_eq!(report.tcp.gaps, 0);
}

#[test]
fn every_link_encapsulation_and_ip_version_gives_the_same_verdicts() {
    let strip = |mut v: serde_json::Value| {
        for s in v.as_array_mut().unwrap() {
            let o = s.as_object_mut().unwrap();
            o.remove("client");
            o.remove("broker");
        }
        v
    };
    let reference = strip(sessions_json(&render(PLAIN).to_pcap()));
    for encap in [Encap::Vlan(100), Encap::QinQ(10, 20), Encap::RawIp, Encap::LinuxSll, Encap::LinuxSll2, Encap::Null] {
        for v6 in [false, true] {
            let got = strip(sessions_json(&render(Carriage { encap, v6, ..PLAIN }).to_pcap()));
            assert_eq!(got, reference, "{encap:?} v6={v6}");
        }
    }
}

#[test]
fn pcapng_with_nanoseconds_gives_the_same_sessions_as_pcap() {
    let cap = render(PLAIN);
    assert_eq!(sessions_json(&cap.to_pcapng()), sessions_json(&cap.to_pcap()));
}

#[test]
fn several_files_are_read_as_one_capture() {
    let cap = render(PLAIN);
    let (first, second) = cap.frames.split_at(6);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, frames: &[(Timestamp, Vec<u8>)]| {
        let mut c = Capture::new(Encap::Ethernet);
        c.frames = frames.to_vec();
        let p = dir.path().join(name);
        std::fs::write(&p, c.to_pcap()).unwrap();
        p
    };
    let files = [write("a.pcap", first), write("b.pcapng", second)];
    let (split, _) = analyze_with(&files, TrackerConfig::default(), &[1883]);
    let (whole, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!(serde_json::to_value(&split.sessions).unwrap(), serde_json::to_value(&whole.sessions).unwrap());
    assert_eq!(split.capture.files.len(), 2);
}

/// A client pinging every 3 s with keepalive 4; the capture loses one PINGREQ that the broker
/// received (it acknowledged it and answered).
fn lossy_capture(lose_ping: usize) -> Capture {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 1, 1);
    conn.handshake(&mut cap, t(0.0));
    conn.send(&mut cap, t(0.0), Side::Client, &mqtt::connect(4, 4, "lossy", false, None));
    conn.send(&mut cap, t(0.0), Side::Broker, &mqtt::connack(0, None));
    for i in 1..=5 {
        let at = 3.0 * i as f64;
        if i == lose_ping {
            conn.client_seq += 2; // the PINGREQ went by uncaptured
        } else {
            conn.send(&mut cap, t(at), Side::Client, &mqtt::pingreq());
        }
        conn.send(&mut cap, t(at + 0.001), Side::Broker, &mqtt::pingresp());
    }
    conn.send(&mut cap, t(15.5), Side::Client, &mqtt::disconnect(None));
    conn.fin(&mut cap, t(15.6), Side::Client);
    conn.fin(&mut cap, t(15.6), Side::Broker);
    cap
}

#[test]
fn a_lost_segment_is_a_counted_gap_not_a_silent_client() {
    let (report, events) = analyze_bytes(&lossy_capture(2).to_pcap());
    let s = only_session(&report);
    assert_eq!((report.tcp.gaps, report.tcp.gap_bytes), (1, 2));
    assert!(!s.expired, "the lost bytes were client activity");
    assert_eq!((s.pingreq, s.pingresp, s.gaps), (4, 5, 1));
    let gap = &events_named(&events, s.id, "gap")[0];
    assert_eq!(gap.kind, EventKind::Gap { side: Side::Client, bytes: 2 });
    // The gap is found when the broker's answer acknowledges the lost bytes: 6.001 s.
    assert_eq!(gap.ts, t(6.001));
    // Framing picked up again at the next PINGREQ.
    assert_eq!(events_named(&events, s.id, "resync").len(), 1);
    assert_eq!(s.close.kind, "disconnect");
}

#[test]
fn garbage_on_the_mqtt_port_is_not_a_session_and_the_rest_is_analysed() {
    let mut cap = render(PLAIN);
    let mut x: u32 = 99;
    let garbage: Vec<u8> = (0..3000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect();
    let mut junk = Conn::new("198.51.100.7:40000".parse().unwrap(), "192.0.2.2:1883".parse().unwrap(), 5, 5);
    junk.handshake(&mut cap, t(1.0));
    for (i, chunk) in garbage.chunks(1000).enumerate() {
        junk.send(&mut cap, t(1.0 + i as f64 * 0.1), Side::Client, chunk);
    }
    junk.rst(&mut cap, t(2.0), Side::Broker);
    cap.sort();
    let (report, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!(report.sessions.len(), 1, "{}", report.render_text());
    assert_eq!(report.sessions[0].client_id.as_deref(), Some("dev-1"));
    assert_eq!(report.tcp.non_mqtt_flows, 1);
    assert!(report.tcp.malformed >= 1);
    assert_eq!(serde_json::to_value(&report.sessions).unwrap(), sessions_json(&render(PLAIN).to_pcap()));
}

#[test]
fn a_268_mb_publish_is_skipped_by_length_and_the_session_goes_on() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 1, 1);
    conn.handshake(&mut cap, t(0.0));
    conn.send(&mut cap, t(0.0), Side::Client, &mqtt::connect(4, 30, "huge", false, None));
    conn.send(&mut cap, t(0.0), Side::Broker, &mqtt::connack(0, None));
    // PUBLISH with the largest remaining length: header, topic, 1 KiB of payload captured...
    let header = [0x30, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01, b't'];
    conn.send(&mut cap, t(1.0), Side::Client, &header);
    conn.send(&mut cap, t(1.0), Side::Client, &[0xaa; 1024]);
    // ...the rest went by uncaptured (the broker's ACK shows it arrived)...
    conn.client_seq = conn.client_seq.wrapping_add(268_435_455 - 3 - 1024);
    conn.ack(&mut cap, t(20.0), Side::Broker);
    // ...and the client pings after it.
    conn.send(&mut cap, t(25.0), Side::Client, &mqtt::pingreq());
    conn.send(&mut cap, t(25.0), Side::Broker, &mqtt::pingresp());
    let (report, events) = analyze_bytes(&cap.to_pcap());
    let s = only_session(&report);
    assert_eq!(report.mqtt_packets["publish"], 1);
    assert_eq!((s.pingreq, s.pingresp), (1, 1));
    assert!(events_named(&events, s.id, "resync").is_empty(), "the gap fell inside the body: framing kept");
    assert_eq!(report.tcp.malformed, 0);
    assert!(!s.expired);
}

#[test]
fn snaplen_cut_frames_are_counted_and_their_missing_bytes_are_gaps() {
    let mut cap = render(PLAIN);
    // 54 bytes of headers + 46 of payload: the 40-byte CONNECT fits, the 200-byte PUBLISH does not.
    cap.snaplen = 100;
    let (report, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!(report.capture.truncated_packets, 1);
    assert_eq!((report.tcp.gaps, report.tcp.gap_bytes), (1, 210 - 46)); // PUBLISH: 3-byte header + 207
    let s = only_session(&report);
    assert!(s.expired, "the verdict survives the cut");
    assert_eq!(report.mqtt_packets["publish"], 2, "the cut fell inside the body: both PUBLISHes still framed");
    assert_eq!(serde_json::to_value(s.enforcement).unwrap(), serde_json::json!({"verdict": "late", "lag_s": 8.0}));
}

#[test]
fn a_cut_connect_keeps_what_precedes_the_cut_and_guesses_nothing_after_it() {
    // 16 bytes of CONNECT captured: the keepalive is in, the client id is not.
    let mut cap = render(PLAIN);
    cap.snaplen = 70;
    let (report, _) = analyze_bytes(&cap.to_pcap());
    let s = only_session(&report);
    assert_eq!((s.keepalive_s, s.client_id.as_deref()), (Some(4), None));
    assert!(s.expired);
    // 10 bytes captured: not even the keepalive. No verdict from a guess.
    cap.snaplen = 64;
    let (report, _) = analyze_bytes(&cap.to_pcap());
    let s = only_session(&report);
    assert_eq!((s.keepalive_s, s.effective_keepalive_s), (None, None));
    assert!(!s.expired);
}

#[test]
fn a_silent_client_expires_at_its_deadline_even_with_no_later_packet_of_its_own() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 1, 1);
    conn.handshake(&mut cap, t(0.0));
    conn.send(&mut cap, t(0.5), Side::Client, &mqtt::connect(4, 2, "quiet", false, None));
    conn.send(&mut cap, t(0.5), Side::Broker, &mqtt::connack(0, None));
    // An unrelated packet much later ends the capture at 100 s.
    cap.segment(
        t(100.0),
        "192.0.2.9:1".parse().unwrap(),
        "192.0.2.10:2".parse().unwrap(),
        1,
        1,
        Flags::default(),
        b"x",
    );
    let (report, events) = analyze_bytes(&cap.to_pcap());
    let s = only_session(&report);
    assert_eq!(events_named(&events, s.id, "keepalive_expired")[0].ts, t(3.5));
    assert_eq!(s.close.kind, "open");
    assert_eq!(s.enforcement.unwrap().verdict, Verdict::NotEnforced);
    assert_eq!(s.max_silence_s.as_secs_f64(), 99.5);
    assert_eq!(report.capture.other_tcp_segments, 1);
}

#[test]
fn mqtt5_broker_disconnect_with_reason_code_is_a_broker_close() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 1, 1);
    conn.handshake(&mut cap, t(0.0));
    conn.send(&mut cap, t(0.0), Side::Client, &mqtt::connect(5, 10, "v5", true, None));
    conn.send(&mut cap, t(0.0), Side::Broker, &mqtt::connack(0, Some(4)));
    conn.send(&mut cap, t(6.2), Side::Broker, &mqtt::disconnect(Some(0x8d))); // keep alive timeout
    conn.fin(&mut cap, t(6.2), Side::Broker);
    let (report, _) = analyze_bytes(&cap.to_pcap());
    let s = only_session(&report);
    assert_eq!(s.effective_keepalive_s, Some(4));
    assert_eq!((s.close.kind, s.close.by, s.close.reason_code), ("disconnect", Some(Side::Broker), Some(0x8d)));
    assert_eq!(s.enforcement.unwrap().verdict, Verdict::OnTime);
    assert_eq!(report.summary.closes_without_disconnect, 0);
}

#[test]
fn port_reuse_starts_a_new_session_and_stray_retransmissions_do_not() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    for (i, isn) in [100u32, 900_000].into_iter().enumerate() {
        let base = i as f64 * 10.0;
        let mut conn = Conn::new(client, broker, isn, 5);
        conn.handshake(&mut cap, t(base));
        conn.send(&mut cap, t(base), Side::Client, &mqtt::connect(4, 60, &format!("c{i}"), false, None));
        conn.send(&mut cap, t(base), Side::Broker, &mqtt::connack(0, None));
        conn.send(&mut cap, t(base + 1.0), Side::Client, &mqtt::disconnect(None));
        conn.fin(&mut cap, t(base + 1.0), Side::Client);
        conn.fin(&mut cap, t(base + 1.0), Side::Broker);
        conn.ack(&mut cap, t(base + 1.5), Side::Client); // a stray ACK after the close
    }
    let (report, _) = analyze_bytes(&cap.to_pcap());
    let ids: Vec<_> = report.sessions.iter().map(|s| s.client_id.clone().unwrap()).collect();
    assert_eq!(ids, ["c0", "c1"]);
    assert_eq!(report.tcp.flows, 2);
}

#[test]
fn a_flood_of_half_open_connections_is_bounded_and_counted() {
    let mut cap = render(PLAIN);
    for i in 0..3000u32 {
        let src: SocketAddr =
            format!("10.{}.{}.{}:{}", i >> 16 & 255, i >> 8 & 255, i & 255, 1024 + i % 60000).parse().unwrap();
        cap.segment(
            t(0.5),
            src,
            "192.0.2.2:1883".parse().unwrap(),
            i,
            0,
            Flags { syn: true, ..Default::default() },
            &[],
        );
    }
    cap.sort();
    let cfg = TrackerConfig { max_flows: 1000, ..Default::default() };
    let (report, _) = analyze_bytes_with(&cap.to_pcap(), cfg);
    assert_eq!(report.sessions.len(), 1, "the real session is still analysed");
    assert_eq!(report.tcp.flows, 1000);
    assert_eq!(report.tcp.flows_rejected, 2001);
    assert_eq!(report.tcp.flows_without_payload, 999);
}

#[test]
fn a_client_whose_own_port_is_a_broker_port_is_still_one_session() {
    // Regression: a client with source port 1883 made both ends look like brokers, and the
    // connection split into two half-sessions.
    let client: SocketAddr = "192.0.2.1:1883".parse().unwrap();
    let broker: SocketAddr = "192.0.2.2:1883".parse().unwrap();
    for with_syn in [true, false] {
        let mut cap = Capture::new(Encap::Ethernet);
        let mut conn = Conn::new(client, broker, 10, 20);
        if with_syn {
            conn.handshake(&mut cap, t(0.0));
        } else {
            // Joined at the SYN-ACK.
            conn.client_seq += 1;
            cap.segment(
                t(0.0),
                broker,
                client,
                conn.broker_seq,
                conn.client_seq,
                Flags { syn: true, ack: true, ..Default::default() },
                &[],
            );
            conn.broker_seq += 1;
        }
        conn.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 10, "same-port", false, None));
        conn.send(&mut cap, t(0.1), Side::Broker, &mqtt::connack(0, None));
        conn.send(&mut cap, t(5.0), Side::Client, &mqtt::pingreq());
        conn.send(&mut cap, t(5.0), Side::Broker, &mqtt::pingresp());
        let (report, _) = analyze_bytes(&cap.to_pcap());
        let s = only_session(&report);
        assert_eq!((s.client, s.broker), (client, broker), "with_syn={with_syn}");
        assert_eq!((s.pingreq, s.pingresp, s.client_id.as_deref()), (1, 1, Some("same-port")));
    }
}

/// Issue 11: a broker that says no (CONNACK code 5) and hangs up is a refused connection, not
/// a session closed without DISCONNECT with a Will to publish; one that hangs up right after a
/// CONNECT it never answers is refused too.
#[test]
fn a_refused_connection_is_not_a_will_firing_close() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = Conn::new(client, broker, 100, 900);
    c.handshake(&mut cap, t(0.0));
    c.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 10, "intruder", true, Some(("u", "p"))));
    c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(5, None));
    c.fin(&mut cap, t(0.3), Side::Broker);
    let mut c2 = Conn::new("192.0.2.9:50001".parse().unwrap(), broker, 5, 6);
    c2.handshake(&mut cap, t(1.0));
    c2.send(&mut cap, t(1.1), Side::Client, &mqtt::connect(4, 10, "speechless", true, None));
    c2.fin(&mut cap, t(1.2), Side::Broker);
    cap.sort();
    let (report, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!(report.sessions.len(), 2);
    let by_id = |id: &str| report.sessions.iter().find(|s| s.client_id.as_deref() == Some(id)).unwrap();
    let s = by_id("intruder");
    assert_eq!((s.refused, s.connack_code, s.close.kind, s.close.reason_code), (true, Some(5), "refused", Some(5)));
    assert!(!s.expired && s.enforcement.is_none());
    let s = by_id("speechless");
    assert_eq!((s.refused, s.connack_code, s.close.kind), (true, None, "refused"));
    assert_eq!((report.summary.closes_without_disconnect, report.summary.wills_expected), (0, 0));
    assert_eq!(report.summary.closes.get("refused"), Some(&2));
    let text = report.render_text();
    assert!(text.contains("refused (code 5: not authorised)") && text.contains("refused (no CONNACK)"), "{text}");
}

/// Issue 11: the CONNECT was never captured, but the broker's CONNACK is MQTT: an MQTT session
/// (its keepalive unknown), not a non-MQTT flow.
#[test]
fn a_connection_whose_connect_was_lost_but_whose_broker_speaks_mqtt_is_a_session() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = Conn::new(client, broker, 100, 900);
    c.handshake(&mut cap, t(0.0));
    c.client_seq += mqtt::connect(4, 10, "lost", false, None).len() as u32; // not captured
    c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
    c.send(&mut cap, t(2.0), Side::Client, &mqtt::pingreq());
    c.send(&mut cap, t(2.1), Side::Broker, &mqtt::pingresp());
    let (report, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!((report.sessions.len(), report.tcp.non_mqtt_flows), (1, 0), "{}", report.render_text());
    let s = &report.sessions[0];
    assert_eq!((s.client_id.as_deref(), s.effective_keepalive_s, s.pingreq), (None, None, 1));
}

/// Issue 11: after the broker's FIN, a frozen client writes into the half-closed connection 30 s
/// later and gets an RST. Those segments belong to the closed session: no new session.
#[test]
fn late_writes_into_a_half_closed_connection_belong_to_its_session() {
    let (client, broker) = addrs(false);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = Conn::new(client, broker, 100, 900);
    c.handshake(&mut cap, t(0.0));
    c.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 4, "frozen", true, None));
    c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
    c.fin(&mut cap, t(6.5), Side::Broker);
    c.send(&mut cap, t(36.5), Side::Client, &mqtt::publish("late", b"x"));
    c.rst(&mut cap, t(36.6), Side::Broker);
    let (report, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!(report.sessions.len(), 1, "{}", report.render_text());
    let s = &report.sessions[0];
    assert_eq!((s.close.kind, s.close.by), ("fin", Some(Side::Broker)));
    assert_eq!(s.enforcement.map(|e| e.verdict), Some(Verdict::OnTime));
    assert_eq!((report.tcp.segments_after_close, report.summary.mid_stream), (1, 0));
}
