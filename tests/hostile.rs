//! A hostile corpus with expected outcomes: broken files and bytes from anyone on the network.
//! Each case gives a clear error or a counted event, the rest of the data is still analysed, and
//! nothing panics. (Empty files, wrong magic, truncated headers and records are in tests/cli.rs;
//! garbage, 268 MB lengths and floods in tests/synthetic.rs.)

mod common;

use common::*;
use mqtt_keepalive::capture::{CaptureError, LinkType, OfflineReader, PacketSource};
use mqtt_keepalive::decode::Segment;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::flow::seq::SeqNumber;
use mqtt_keepalive::synth::{self, Capture, Conn, Encap, Flags, mqtt};
use mqtt_keepalive::time::Timestamp;
use mqtt_keepalive::tracker::{Tracker, TrackerConfig};
use std::net::SocketAddr;

fn t(s: f64) -> Timestamp {
    Timestamp::from_nanos(1_700_000_000_000_000_000 + (s * 1e9).round() as i64)
}

fn addrs() -> (SocketAddr, SocketAddr) {
    ("192.0.2.1:40000".parse().unwrap(), "192.0.2.2:1883".parse().unwrap())
}

/// A healthy session; `inject` adds hostile client bytes after the CONNACK.
fn session_with(inject: &[u8]) -> Capture {
    let (client, broker) = addrs();
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 1, 1);
    conn.handshake(&mut cap, t(0.0));
    conn.send(&mut cap, t(0.0), Side::Client, &mqtt::connect(4, 10, "target", false, None));
    conn.send(&mut cap, t(0.0), Side::Broker, &mqtt::connack(0, None));
    if !inject.is_empty() {
        conn.send(&mut cap, t(1.0), Side::Client, inject);
    }
    conn.send(&mut cap, t(5.0), Side::Client, &mqtt::pingreq());
    conn.send(&mut cap, t(5.0), Side::Broker, &mqtt::pingresp());
    conn.send(&mut cap, t(6.0), Side::Client, &mqtt::disconnect(None));
    cap
}

#[test]
fn a_record_claiming_4_gb_ends_the_file_with_an_error_after_the_good_records() {
    let good = session_with(&[]);
    let good_records = good.frames.len();
    let mut bytes = good.to_pcap();
    // ts, ts, caplen = 4 GB - 16, origlen
    for v in [1u32, 0, 0xffff_fff0, 0xffff_fff0] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes.extend_from_slice(&[0u8; 100]);
    let mut r = OfflineReader::from_reader("huge.pcap".as_ref(), std::io::Cursor::new(bytes.clone()), None).unwrap();
    let mut n = 0;
    let err = loop {
        match r.next_packet() {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("the 4 GB record must be an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, good_records);
    assert!(matches!(err, CaptureError::Damaged { record, .. } if record == good_records as u64 + 1), "{err}");
    assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
    // Through analyze: a warning, and the session before the damage is still reported.
    let (report, _) = analyze_bytes(&bytes);
    assert_eq!(report.capture.warnings.len(), 1);
    assert_eq!(only_session(&report).pingresp, 1);
}

#[test]
fn pcapng_unknown_blocks_are_skipped_and_undeclared_interfaces_are_damage() {
    let cap = session_with(&[]);
    let mut bytes = Vec::new();
    synth::pcapng_section_header(&mut bytes);
    synth::pcapng_unknown_block(&mut bytes);
    synth::pcapng_interface(&mut bytes, LinkType::ETHERNET, 9);
    for (i, (ts, frame)) in cap.frames.iter().enumerate() {
        if i % 3 == 0 {
            synth::pcapng_unknown_block(&mut bytes);
        }
        synth::pcapng_packet(&mut bytes, 0, *ts, frame, usize::MAX, 9);
    }
    let (report, _) = analyze_bytes(&bytes);
    assert_eq!(
        serde_json::to_value(&report.sessions).unwrap(),
        serde_json::to_value(&analyze_bytes(&cap.to_pcap()).0.sessions).unwrap()
    );
    assert!(report.capture.warnings.is_empty());
    // A packet on interface 7, never declared.
    synth::pcapng_packet(&mut bytes, 7, t(9.0), &cap.frames[0].1, usize::MAX, 9);
    let (report, _) = analyze_bytes(&bytes);
    assert!(report.capture.warnings[0].contains("undeclared interface 7"), "{:?}", report.capture.warnings);
    assert_eq!(report.sessions.len(), 1);
}

/// Hostile client bytes inside a session: each is counted as malformed, framing is found again,
/// and the session's later PINGREQ and DISCONNECT still count.
#[test]
fn hostile_mqtt_bytes_are_counted_and_the_session_goes_on() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("5-byte remaining length", vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00]),
        ("reserved packet type 0", vec![0x00, 0x02, 0xaa, 0xbb]),
        ("forbidden flags", vec![0x82 & 0xf0, 0x05, 1, 2, 3, 4, 5]), // SUBSCRIBE without 0b0010
        ("PINGREQ with a body", vec![0xc0, 0x01, 0x00]),
    ];
    for (what, bytes) in cases {
        let (report, events) = analyze_bytes(&session_with(&bytes).to_pcap());
        let s = only_session(&report);
        assert!(report.tcp.malformed >= 1, "{what}");
        assert_eq!(events_named(&events, s.id, "malformed").len() as u64, report.tcp.malformed, "{what}");
        assert_eq!((s.pingreq, s.pingresp, s.close.kind), (1, 1, "disconnect"), "{what}");
        assert!(!s.expired, "{what}");
    }
}

#[test]
fn connect_with_a_bogus_protocol_name_is_malformed_and_gives_no_keepalive() {
    let (client, broker) = addrs();
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 1, 1);
    conn.handshake(&mut cap, t(0.0));
    let mut bogus = mqtt::connect(4, 10, "x", false, None);
    bogus[4..8].copy_from_slice(b"HTTP");
    conn.send(&mut cap, t(0.0), Side::Client, &bogus);
    conn.send(&mut cap, t(30.0), Side::Client, &mqtt::pingreq());
    let (report, events) = analyze_bytes(&cap.to_pcap());
    let m = &events_named(&events, 0, "malformed")[0].kind;
    assert_eq!(serde_json::to_value(m).unwrap()["packet_type"], "connect");
    assert_eq!(report.tcp.malformed, 1);
    assert!(report.sessions.is_empty() || report.sessions[0].keepalive_s.is_none());
}

#[test]
fn zero_length_payloads_and_out_of_window_segments_change_nothing() {
    let reference = session_with(&[]);
    let mut cap = reference.clone();
    let (client, broker) = addrs();
    // Zero-length PSH segments and pure ACKs at odd sequence numbers.
    for i in 0..5 {
        cap.segment(
            t(2.0 + f64::from(i) * 0.1),
            client,
            broker,
            12345 + i,
            1,
            Flags { ack: true, ..Default::default() },
            &[],
        );
    }
    // Data far outside the window (a blind injection).
    cap.segment(
        t(3.0),
        client,
        broker,
        0x8000_0000,
        1,
        Flags { ack: true, ..Default::default() },
        &mqtt::disconnect(None),
    );
    cap.sort();
    let (report, _) = analyze_bytes(&cap.to_pcap());
    assert_eq!(
        serde_json::to_value(&report.sessions).unwrap(),
        serde_json::to_value(&analyze_bytes(&reference.to_pcap()).0.sessions).unwrap()
    );
    assert_eq!(report.tcp.out_of_window, 1);
}

/// A client's opening SYN.
fn syn_segment(src: SocketAddr, dst: SocketAddr, isn: u32) -> Segment<'static> {
    Segment { src, dst, seq: SeqNumber(isn), ack: None, syn: true, fin: false, rst: false, payload: &[], wire_len: 0 }
}

fn syn(i: u32) -> (SocketAddr, SocketAddr) {
    (
        SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i / 50_000).into(), 1024 + (i % 50_000) as u16),
        "192.0.2.2:1883".parse().unwrap(),
    )
}

#[test]
fn a_million_half_open_connections_stay_under_the_flow_cap_and_expire() {
    let cap = 20_000;
    let mut tracker = Tracker::new(TrackerConfig { max_flows: cap, ..Default::default() });
    for i in 0..1_000_000u32 {
        let (src, dst) = syn(i);
        tracker.on_segment(t(f64::from(i) * 1e-6), &syn_segment(src, dst, i));
        tracker.events().clear();
        assert!(tracker.live_connections() <= cap);
    }
    assert_eq!(tracker.counters().flows_rejected, 1_000_000 - cap as u64);
    // Handshake-only connections are evicted after 30 s: nothing is kept.
    tracker.poll(t(40.0));
    assert_eq!(tracker.live_connections(), 0);
    assert_eq!(tracker.counters().flows_without_payload, cap as u64);
}

#[test]
fn out_of_order_floods_stay_under_the_total_buffer_cap() {
    let total = 1 << 20;
    let mut tracker = Tracker::new(TrackerConfig {
        max_buffered_total: total,
        max_buffered_per_flow: 64 << 10,
        ..Default::default()
    });
    let chunk = vec![0x30u8; 1000];
    for flow in 0..200u32 {
        let (src, dst) = syn(flow);
        let open = syn_segment(src, dst, 0);
        tracker.on_segment(t(0.0), &open);
        // Every segment leaves a hole before it: all of it waits out of order.
        for k in 0..60u32 {
            let seg =
                Segment { seq: SeqNumber(100 + k * 1100), syn: false, payload: &chunk, wire_len: 1000, ..open.clone() };
            tracker.on_segment(t(0.001), &seg);
            assert!(
                tracker.counters().buffered_bytes <= total as u64 + 64 * 1024 * 2,
                "{}",
                tracker.counters().buffered_bytes
            );
        }
        tracker.events().clear();
    }
    assert!(tracker.counters().buffer_overflows > 0);
    assert!(tracker.counters().gaps > 0, "holes given up are counted gaps");
}
