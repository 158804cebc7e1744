//! The TLS layer on real captures of mosquitto over TLS (fixtures/tls/*.pcap, recorded by
//! fixtures/record.sh with their key logs): each fixture's TCP streams are reassembled, fed
//! through `TlsLayer`, and the decrypted bytes decoded as MQTT must be the packets tshark decodes
//! with the same key log (ignored test: needs tshark) and the values written here. Without the
//! key log the same captures must say why they stay encrypted and give opaque records whose
//! implied plaintext lengths pick out the 2-byte MQTT packets (pings).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mqtt_keepalive::capture::PacketSource;
use mqtt_keepalive::capture::offline::OfflineReader;
use mqtt_keepalive::decode::decode;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::flow::reassembly::{Chunk, Reassembler};
use mqtt_keepalive::layer::tls::{Alert, EncryptedReason, KeyLog, TlsEvent, TlsLayer, TlsStats};
use mqtt_keepalive::layer::{Layer, LayerEvent, Up};
use mqtt_keepalive::mqtt::{Body, StreamDecoder, StreamEvent};
use proptest::prelude::*;

const TLS_PORT: u16 = 8883;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("tls").join(name)
}

/// An MQTT packet as tshark prints it: (side, type, keepalive, client id).
type Row = (Side, u8, Option<u16>, Option<String>);

#[derive(Default)]
struct Run {
    rows: Vec<Row>,
    /// Each side's decrypted bytes.
    bytes: [Vec<u8>; 2],
    server_keepalive: Option<u16>,
    malformed: usize,
    gaps: usize,
    events: Vec<(Side, TlsEvent)>,
    stats: TlsStats,
}

struct Decoders {
    mqtt: [StreamDecoder; 2],
    run: Run,
}

fn i(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Broker => 1,
    }
}

impl Up for Decoders {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        let run = &mut self.run;
        run.bytes[i(side)].extend_from_slice(bytes);
        self.mqtt[i(side)].feed(bytes, &mut |e| match e {
            StreamEvent::Packet(p) => {
                let (ka, id) = match &p.body {
                    Body::Connect(c) => (Some(c.keepalive), c.client_id.clone()),
                    Body::ConnAck(c) => {
                        run.server_keepalive = c.server_keepalive;
                        (None, None)
                    }
                    _ => (None, None),
                };
                run.rows.push((side, p.header.packet_type as u8, ka, id));
            }
            _ => run.malformed += 1,
        });
    }
    fn gap(&mut self, _: Side, _: u64) {
        self.run.gaps += 1;
    }
    fn event(&mut self, side: Side, event: LayerEvent) {
        let LayerEvent::Tls(e) = event else { panic!("only the TLS layer runs here: {event:?}") };
        self.run.events.push((side, e));
    }
}

/// A side's stream bytes or a gap, in capture order.
type Piece = (Side, Result<Vec<u8>, u64>);

/// Reassembles the capture's one TLS connection into each side's in-order pieces.
fn streams(name: &str) -> Vec<Piece> {
    let mut reader = OfflineReader::open(&fixture(name)).unwrap();
    let mut reasm = [Reassembler::new(1 << 20), Reassembler::new(1 << 20)];
    let mut pieces = Vec::new();
    let mut client_port = None;
    while let Some(packet) = reader.next_packet().unwrap() {
        let Ok(seg) = decode(packet.link, packet.data) else { continue };
        let side = if seg.dst.port() == TLS_PORT { Side::Client } else { Side::Broker };
        let port = if side == Side::Client { seg.src.port() } else { seg.dst.port() };
        assert_eq!(*client_port.get_or_insert(port), port, "{name}: one connection per fixture");
        let r = &mut reasm[i(side)];
        if seg.syn {
            r.on_syn(seg.seq);
        }
        r.on_segment(seg.seq, seg.payload, seg.wire_len, &mut |c: Chunk<'_>| {
            pieces.push((
                side,
                match c {
                    Chunk::Data(d) => Ok(d.to_vec()),
                    Chunk::Gap(n) => Err(n),
                },
            ))
        });
        if seg.fin {
            r.on_fin(seg.seq.wrapping_add(seg.payload.len() as u32));
        }
    }
    pieces
}

/// Feeds pieces through a `TlsLayer` and decodes what it hands up as MQTT.
fn feed(pieces: &[Piece], keylog: Option<Arc<KeyLog>>) -> Run {
    let mut layer = TlsLayer::new(keylog);
    let mut up = Decoders { mqtt: [StreamDecoder::new(true), StreamDecoder::new(true)], run: Run::default() };
    for (side, piece) in pieces {
        match piece {
            Ok(d) => layer.feed(*side, Chunk::Data(d), &mut up),
            Err(n) => layer.feed(*side, Chunk::Gap(*n), &mut up),
        }
    }
    up.run.stats = *layer.stats();
    up.run
}

fn run(name: &str, keylog: Option<Arc<KeyLog>>) -> Run {
    feed(&streams(name), keylog)
}

fn keylog(name: &str) -> Arc<KeyLog> {
    Arc::new(KeyLog::open(&fixture(&name.replace(".pcap", ".keys"))).unwrap())
}

/// What each fixture holds, as written in fixtures/README.md.
struct Expect {
    name: &'static str,
    version: u16,
    suite: u16,
    client_id: &'static str,
    keepalive: u16,
    pings: usize,
    disconnect: bool,
    server_keepalive: Option<u16>,
    /// Alerts (side, description), in order.
    alerts: &'static [(Side, u8)],
}

const FIXTURES: &[Expect] = &[
    Expect {
        name: "tls13-keepalive5-silent.pcap",
        version: 0x0304,
        suite: 0x1301,
        client_id: "tls-silent-5",
        keepalive: 5,
        pings: 0,
        disconnect: false,
        server_keepalive: None,
        alerts: &[(Side::Broker, 0)],
    },
    Expect {
        name: "tls13-healthy-pings.pcap",
        version: 0x0304,
        suite: 0x1303,
        client_id: "tls-pinger",
        keepalive: 2,
        pings: 3,
        disconnect: true,
        server_keepalive: None,
        // mosquitto answers DISCONNECT with its close_notify before the client's comes.
        alerts: &[(Side::Broker, 0), (Side::Client, 0)],
    },
    Expect {
        name: "tls13-client-killed.pcap",
        version: 0x0304,
        suite: 0x1302,
        client_id: "tls-killed",
        keepalive: 10,
        pings: 2,
        disconnect: false,
        server_keepalive: None,
        // mosquitto answers the bare FIN with a fatal decode_error alert.
        alerts: &[(Side::Broker, 50)],
    },
    Expect {
        name: "tls13-mqtt5-server-keepalive.pcap",
        version: 0x0304,
        suite: 0x1301,
        client_id: "tls-capped-v5",
        keepalive: 60,
        pings: 0,
        disconnect: false,
        server_keepalive: Some(10),
        alerts: &[(Side::Broker, 0)],
    },
    Expect {
        name: "tls12-keepalive5-silent.pcap",
        version: 0x0303,
        suite: 0xC02F,
        client_id: "tls12-silent-5",
        keepalive: 5,
        pings: 0,
        disconnect: false,
        server_keepalive: None,
        alerts: &[(Side::Broker, 0)],
    },
    Expect {
        name: "tls12-aes256-healthy-pings.pcap",
        version: 0x0303,
        suite: 0xC030,
        client_id: "tls12-aes256",
        keepalive: 2,
        pings: 3,
        disconnect: true,
        server_keepalive: None,
        alerts: &[(Side::Broker, 0), (Side::Client, 0)],
    },
    Expect {
        name: "tls12-chacha-healthy-pings.pcap",
        version: 0x0303,
        suite: 0xCCA8,
        client_id: "tls12-chacha",
        keepalive: 2,
        pings: 3,
        disconnect: true,
        server_keepalive: None,
        alerts: &[(Side::Broker, 0), (Side::Client, 0)],
    },
];

fn expected_rows(e: &Expect) -> Vec<Row> {
    let mut rows =
        vec![(Side::Client, 1, Some(e.keepalive), Some(e.client_id.to_string())), (Side::Broker, 2, None, None)];
    for _ in 0..e.pings {
        rows.push((Side::Client, 12, None, None));
        rows.push((Side::Broker, 13, None, None));
    }
    if e.disconnect {
        rows.push((Side::Client, 14, None, None));
    }
    rows
}

#[test]
fn fixtures_decrypt_to_the_expected_mqtt_packets() {
    for e in FIXTURES {
        let run = run(e.name, Some(keylog(e.name)));
        assert_eq!(run.rows, expected_rows(e), "{}", e.name);
        assert_eq!(run.server_keepalive, e.server_keepalive, "{}", e.name);
        assert_eq!((run.malformed, run.gaps), (0, 0), "{}", e.name);
        assert!(
            run.events.contains(&(Side::Broker, TlsEvent::Decrypting { version: e.version, suite: e.suite })),
            "{}: {:?}",
            e.name,
            run.events
        );
        let hello = run.events.iter().find_map(|(_, ev)| match ev {
            TlsEvent::ClientHello { sni, alpn, .. } => Some((sni.clone(), alpn.clone())),
            _ => None,
        });
        assert_eq!(hello, Some((Some("localhost".to_string()), vec!["mqtt".to_string()])), "{}", e.name);
        let alerts: Vec<(Side, u8)> = run
            .events
            .iter()
            .filter_map(|(side, ev)| match ev {
                TlsEvent::Alert { alert: Alert { description, .. }, encrypted: true } => Some((*side, *description)),
                _ => None,
            })
            .collect();
        assert_eq!(alerts, e.alerts, "{}", e.name);
        let s = run.stats;
        assert_eq!((s.decrypt_failures, s.errors, s.opaque, s.resyncs), (0, 0, 0, 0), "{}: {s:?}", e.name);
    }
}

#[test]
fn without_keys_the_fixtures_are_encrypted_and_record_sizes_pick_out_the_pings() {
    for e in FIXTURES {
        for (log, reason) in
            [(None, EncryptedReason::NoKeyLog), (Some(Arc::new(KeyLog::parse(""))), EncryptedReason::NoKeyLogLine)]
        {
            let run = run(e.name, log);
            assert!(run.rows.is_empty(), "{}", e.name);
            assert!(
                run.events.contains(&(Side::Broker, TlsEvent::Encrypted { reason })),
                "{}: {:?}",
                e.name,
                run.events
            );
            // Application-data records whose implied plaintext is 2 bytes: PINGREQ / PINGRESP,
            // DISCONNECT (3.1.1, client), and in TLS 1.3 also close_notify and other alerts,
            // whose protected record has the same size (TLS 1.2 alerts are content type 21).
            let two = |side| {
                run.events
                    .iter()
                    .filter(|(s, ev)| {
                        *s == side && matches!(ev, TlsEvent::Opaque { content_type: 23, plaintext_len: Some(2), .. })
                    })
                    .count()
            };
            let alerts =
                |side| if e.version == 0x0304 { e.alerts.iter().filter(|(s, _)| *s == side).count() } else { 0 };
            assert_eq!(two(Side::Client), e.pings + usize::from(e.disconnect) + alerts(Side::Client), "{}", e.name);
            assert_eq!(two(Side::Broker), e.pings + alerts(Side::Broker), "{}", e.name);
            if e.version == 0x0303 {
                // TLS 1.2 alerts stay recognisable by their content type.
                let encrypted_alerts =
                    run.events.iter().filter(|(_, ev)| matches!(ev, TlsEvent::Opaque { content_type: 21, .. })).count();
                assert_eq!(encrypted_alerts, e.alerts.len(), "{}", e.name);
            }
            let client_records =
                run.events.iter().filter(|(s, ev)| *s == Side::Client && matches!(ev, TlsEvent::Opaque { .. })).count();
            assert!(client_records > e.pings, "{}", e.name);
        }
    }
}

/// Coalesces runs of same-side pieces and cuts the result at pseudo-random points (from `seed`).
fn reshape(pieces: &[Piece], seed: u64) -> Vec<Piece> {
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut merged: Vec<Piece> = Vec::new();
    for (side, p) in pieces {
        match (merged.last_mut(), p) {
            (Some((s, Ok(acc))), Ok(d)) if s == side && next() % 2 == 0 => acc.extend_from_slice(d),
            _ => merged.push((*side, p.clone())),
        }
    }
    let mut out = Vec::new();
    for (side, p) in merged {
        match p {
            Ok(d) => {
                let mut at = 0;
                while at < d.len() {
                    let n = 1 + (next() % 40) as usize;
                    let end = (at + n).min(d.len());
                    out.push((side, Ok(d[at..end].to_vec())));
                    at = end;
                }
            }
            gap => out.push((side, gap)),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn real_records_split_and_coalesced_anyhow_give_the_same_mqtt(seed in any::<u64>()) {
        for e in FIXTURES {
            let pieces = streams(e.name);
            let log = keylog(e.name);
            let got = feed(&reshape(&pieces, seed), Some(log));
            prop_assert_eq!(&got.rows, &expected_rows(e), "{}", e.name);
            prop_assert_eq!(got.stats.decrypt_failures, 0);
        }
    }
}

#[test]
fn a_record_lost_to_a_tcp_gap_is_skipped_and_decryption_resumes() {
    // Each PINGREQ is one record in one segment; drop the first one: the layer loses its
    // framing at the gap, finds the next record, probes the sequence number, and decrypts on.
    for e in FIXTURES.iter().filter(|e| e.pings > 0) {
        let pieces = streams(e.name);
        let full = feed(&pieces, Some(keylog(e.name)));
        let overhead = match e.suite {
            0x1301..=0x1303 => 17,
            0xCCA8 => 16,
            _ => 24,
        };
        let ping_record = 5 + overhead + 2;
        let at = pieces
            .iter()
            .position(|(s, p)| *s == Side::Client && p.as_ref().is_ok_and(|d| d.len() == ping_record))
            .unwrap();
        let mut cut = pieces.clone();
        cut[at].1 = Err(ping_record as u64);
        let got = feed(&cut, Some(keylog(e.name)));
        let mut want = full.bytes[0].clone();
        let ping = want.windows(2).position(|w| w == [0xc0, 0x00]).unwrap();
        want.drain(ping..ping + 2);
        assert_eq!(got.bytes[0], want, "{}", e.name);
        assert_eq!(got.bytes[1], full.bytes[1], "{}", e.name);
        assert_eq!((got.stats.gaps, got.stats.resyncs, got.stats.decrypt_failures), (1, 1, 0), "{}", e.name);
    }
}

/// What tshark decodes with the key log: one row per MQTT packet.
fn tshark_rows(name: &str) -> Vec<Row> {
    let keys = fixture(&name.replace(".pcap", ".keys"));
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(fixture(name))
        .arg("-o")
        .arg(format!("tls.keylog_file:{}", keys.display()))
        .args(["-Y", "mqtt", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(["-e", "tcp.srcport", "-e", "mqtt.msgtype", "-e", "mqtt.kalive", "-e", "mqtt.clientid"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut rows = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let side = if f[0] == TLS_PORT.to_string() { Side::Broker } else { Side::Client };
        let mut kalive = f.get(2).unwrap_or(&"").split(',').filter(|s| !s.is_empty());
        let mut ids = f.get(3).unwrap_or(&"").split(',').filter(|s| !s.is_empty());
        for t in f[1].split(',') {
            let t: u8 = t.parse().unwrap();
            let (ka, id) = if t == 1 {
                (kalive.next().map(|k| k.parse().unwrap()), ids.next().map(str::to_string))
            } else {
                (None, None)
            };
            rows.push((side, t, ka, id));
        }
    }
    rows
}

#[test]
#[ignore = "needs tshark"]
fn fixtures_decrypt_to_what_tshark_decodes() {
    for e in FIXTURES {
        let want = tshark_rows(e.name);
        assert!(!want.is_empty(), "{}: tshark decoded no MQTT", e.name);
        assert_eq!(run(e.name, Some(keylog(e.name))).rows, want, "{}", e.name);
    }
}
