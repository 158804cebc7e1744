//! The WebSocket layer on real captures: aedes 1.2.0 behind a `ws` 8.23.0 server on port 8080,
//! with mqtt.js 5.16.0 and a scripted raw-socket client (`fixtures/ws/`, made by
//! `fixtures/record-ws.sh`). Each capture's TCP streams are reassembled, run through
//! [`WsLayer`], and the MQTT bytes it hands up decoded: the packets, WebSocket events and TCP
//! closes of each connection must be what the scenario did, in order. The ignored tests (they
//! need tshark) cross-check the unmasked MQTT bytes and control frames against tshark's WebSocket
//! dissector, and run the wss captures' plaintext, as tshark decrypts it with their key logs,
//! through the layer.

use mqtt_keepalive::capture::{OfflineReader, PacketSource};
use mqtt_keepalive::decode;
use mqtt_keepalive::flow::reassembly::{Chunk, Reassembler};
use mqtt_keepalive::flow::{FlowKey, PortSet, Side};
use mqtt_keepalive::layer::websocket::{Request, WsEvent, WsLayer, WsStats};
use mqtt_keepalive::layer::{Layer, LayerEvent, Up};
use mqtt_keepalive::mqtt::{Body, PacketType, StreamDecoder, StreamEvent};
use std::collections::BTreeMap;
use std::path::PathBuf;

const PORT: u16 = 8080;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ws").join(name)
}

/// One thing a connection showed, in stream order.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Ws(WsEvent),
    Connect {
        client_id: String,
        keepalive: u16,
        will: bool,
    },
    ConnAck(u8),
    Mqtt(PacketType),
    /// Anything else the MQTT decoder said (malformed, resync): never expected here.
    MqttTrouble(String),
    Gap(u64),
    Fin,
    Rst,
}

use Item::*;
use Side::{Broker as B, Client as C};

/// What the layer hands up: MQTT bytes decoded as they come, events in order.
struct Seen {
    decoders: [StreamDecoder; 2],
    timeline: Vec<(Side, Item)>,
    /// The capture time (seconds) of each timeline entry's packet.
    times: Vec<f64>,
    /// The time of the packet being fed.
    now: f64,
    bytes: [Vec<u8>; 2],
}

impl Up for Seen {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        self.bytes[side as usize].extend_from_slice(bytes);
        let mut items = Vec::new();
        self.decoders[side as usize].feed(bytes, &mut |e| items.push(mqtt_item(e)));
        items.into_iter().for_each(|i| self.push(side, i));
    }
    fn gap(&mut self, side: Side, len: u64) {
        self.push(side, Gap(len));
        let mut items = Vec::new();
        self.decoders[side as usize].gap(len, &mut |e| items.push(mqtt_item(e)));
        items.into_iter().for_each(|i| self.push(side, i));
    }
    fn event(&mut self, side: Side, event: LayerEvent) {
        let LayerEvent::WebSocket(e) = event else { panic!("only the WebSocket layer runs here: {event:?}") };
        self.push(side, Ws(e));
    }
}

impl Seen {
    fn new() -> Self {
        Seen {
            decoders: [
                StreamDecoder::starting_with(PacketType::Connect),
                StreamDecoder::starting_with(PacketType::ConnAck),
            ],
            timeline: Vec::new(),
            times: Vec::new(),
            now: 0.0,
            bytes: [Vec::new(), Vec::new()],
        }
    }

    fn push(&mut self, side: Side, item: Item) {
        self.timeline.push((side, item));
        self.times.push(self.now);
    }

    /// The capture time of the first entry that is `item` from `side`.
    fn time_of(&self, side: Side, item: &Item) -> f64 {
        let i = self.timeline.iter().position(|(s, i)| *s == side && i == item).expect("the entry is there");
        self.times[i]
    }
}

fn mqtt_item(e: StreamEvent) -> Item {
    match e {
        StreamEvent::Packet(p) => match p.body {
            Body::Connect(c) => {
                Connect { client_id: c.client_id.unwrap_or_default(), keepalive: c.keepalive, will: c.will }
            }
            Body::ConnAck(a) => ConnAck(a.code),
            _ => Mqtt(p.header.packet_type),
        },
        other => MqttTrouble(format!("{other:?}")),
    }
}

/// One TCP connection of a capture.
struct Conn {
    ws: WsLayer,
    reasm: [Reassembler; 2],
    seen: Seen,
    /// Each side's reassembled TCP stream, as fed to the layer.
    raw: [Vec<u8>; 2],
}

/// Feeds one reassembled chunk to the layer, keeping the raw bytes.
fn feed(ws: &mut WsLayer, raw: &mut [Vec<u8>; 2], seen: &mut Seen, side: Side, c: Chunk<'_>) {
    match c {
        Chunk::Data(d) => raw[side as usize].extend_from_slice(d),
        Chunk::Gap(n) => panic!("the fixture lost {n} bytes"),
    }
    ws.feed(side, c, seen);
}

impl Conn {
    fn new() -> Self {
        Conn {
            ws: WsLayer::new(),
            reasm: [Reassembler::new(1 << 20), Reassembler::new(1 << 20)],
            seen: Seen::new(),
            raw: [Vec::new(), Vec::new()],
        }
    }
}

fn other(side: Side) -> Side {
    match side {
        C => B,
        B => C,
    }
}

/// Every connection of a fixture, by client port, with the layer's state at the end.
fn run(name: &str) -> BTreeMap<u16, Conn> {
    let mut reader = OfflineReader::open(&fixture(name)).expect("fixture opens");
    let ports = PortSet::new(&[PORT]);
    let mut conns: BTreeMap<u16, Conn> = BTreeMap::new();
    while let Some(p) = reader.next_packet().expect("fixture reads") {
        let seg = decode::decode(p.link, p.data).expect("a TCP segment");
        let (key, side): (FlowKey, Side) = FlowKey::orient(seg.src, seg.dst, &ports).expect("on port 8080");
        let conn = conns.entry(key.client.port()).or_insert_with(Conn::new);
        let Conn { ws, reasm, seen, raw } = conn;
        seen.now = p.ts.as_secs_f64();
        let s = side as usize;
        if seg.syn {
            reasm[s].on_syn(seg.seq);
        }
        if let Some(ack) = seg.ack {
            let o = other(side);
            reasm[o as usize].on_peer_ack(ack, &mut |c: Chunk<'_>| feed(ws, raw, seen, o, c));
        }
        reasm[s].on_segment(seg.seq, seg.payload, seg.wire_len, &mut |c: Chunk<'_>| feed(ws, raw, seen, side, c));
        if seg.fin {
            reasm[s].on_fin(seg.seq.wrapping_add(seg.wire_len + u32::from(seg.syn)));
            seen.push(side, Fin);
        }
        if seg.rst {
            seen.push(side, Rst);
        }
    }
    for conn in conns.values_mut() {
        let Conn { ws, reasm, seen, raw } = conn;
        for side in [C, B] {
            reasm[side as usize].flush(&mut |c: Chunk<'_>| feed(ws, raw, seen, side, c));
        }
    }
    conns
}

/// The only connection of a fixture.
fn only(name: &str) -> Conn {
    let mut conns = run(name);
    assert_eq!(conns.len(), 1, "{name}: one connection");
    conns.pop_first().unwrap().1
}

fn upgrade() -> Vec<(Side, Item)> {
    vec![
        (C, Ws(WsEvent::Request(Request { path: "/mqtt".into(), protocol: Some("mqtt".into()) }))),
        (B, Ws(WsEvent::Accepted { protocol: Some("mqtt".into()), extensions: None })),
    ]
}

fn connect(id: &str, keepalive: u16, will: bool) -> (Side, Item) {
    (C, Connect { client_id: id.into(), keepalive, will })
}

/// Asserts the timeline and that neither side had a protocol error or lost framing.
fn assert_timeline(conn: &Conn, expected: &[(Side, Item)]) {
    assert_eq!(conn.seen.timeline, expected);
    for side in [C, B] {
        let s = conn.ws.stats(side);
        assert_eq!((s.errors, s.resyncs, s.skipped_bytes), (0, 0, 0), "{side:?}");
    }
    assert_eq!(conn.ws.buffered(), 0, "nothing held at the end");
}

#[test]
fn seed_experiment_over_websocket_silent_client_closed_by_a_bare_fin() {
    let conn = only("ws-keepalive5-silent.pcap");
    // Keepalive 5, never a ping; aedes closes at 1.5 x 5 s with a FIN and no WebSocket Close.
    let mut want = upgrade();
    want.extend([connect("ws-silent-5", 5, true), (B, ConnAck(0)), (B, Fin), (C, Fin)]);
    assert_timeline(&conn, &want);
    // One binary frame from the client (the CONNECT); the CONNACK in four one-byte frames.
    assert_eq!(conn.ws.stats(C), WsStats { frames: 1, mqtt_bytes: 49, ..Default::default() });
    assert_eq!(conn.ws.stats(B), WsStats { frames: 4, mqtt_bytes: 4, ..Default::default() });
    // aedes arms its timer at 1.5 x keepalive + 1 ms after the CONNECT.
    let connect_at = conn.seen.time_of(C, &connect("ws-silent-5", 5, true).1);
    let closed_after = conn.seen.time_of(B, &Fin) - connect_at;
    assert!((7.5..7.6).contains(&closed_after), "closed {closed_after} s after CONNECT");
}

#[test]
fn mqttjs_pings_on_its_schedule_then_ends() {
    let conn = only("ws-healthy-pings.pcap");
    let mut want = upgrade();
    want.extend([
        connect("ws-pinger", 2, false),
        (B, ConnAck(0)),
        (C, Mqtt(PacketType::PingReq)),
        (B, Mqtt(PacketType::PingResp)),
        (C, Mqtt(PacketType::PingReq)),
        (B, Mqtt(PacketType::PingResp)),
        (C, Mqtt(PacketType::Disconnect)),
        // mqtt.js then closes the WebSocket with an empty Close frame; the broker resets.
        (C, Ws(WsEvent::Close { code: None, reason: String::new() })),
        (B, Rst),
    ]);
    assert_timeline(&conn, &want);
    // mqtt.js writes the CONNECT in 9 frames (fixed header, length, protocol name, ...), each
    // PINGREQ in one, DISCONNECT in two; aedes writes a frame per byte of CONNACK.
    assert_eq!(conn.ws.stats(C).frames, 9 + 2 + 2 + 1);
    assert_eq!(conn.ws.stats(B).frames, 4 + 2);
}

#[test]
fn killed_client_closes_with_a_kernel_fin_and_no_close_frame() {
    let conn = only("ws-client-killed.pcap");
    let mut want = upgrade();
    want.extend([connect("ws-killed", 10, false), (B, ConnAck(0)), (C, Fin), (B, Fin)]);
    assert_timeline(&conn, &want);
}

#[test]
fn close_frame_before_the_tcp_close() {
    let conn = only("ws-close-frame.pcap");
    let mut want = upgrade();
    want.extend([
        // The CONNECT in 5-byte frames: a binary frame and four continuations, one segment.
        connect("ws-closer", 10, false),
        (B, ConnAck(0)),
        (C, Ws(WsEvent::Close { code: Some(1000), reason: "bye".into() })),
        (B, Ws(WsEvent::Close { code: Some(1000), reason: "bye".into() })),
        (B, Fin),
        (C, Fin),
    ]);
    assert_timeline(&conn, &want);
    assert_eq!(conn.ws.stats(C).frames, 5 + 1);
}

#[test]
fn websocket_ping_is_reported_apart_from_mqtt_pings() {
    let conn = only("ws-ping.pcap");
    let mut want = upgrade();
    want.extend([
        connect("ws-pinger-frames", 3, false),
        (B, ConnAck(0)),
        (C, Ws(WsEvent::Ping { len: 2 })),
        (B, Ws(WsEvent::Pong { len: 2 })),
        (C, Mqtt(PacketType::PingReq)),
        (B, Mqtt(PacketType::PingResp)),
        (C, Mqtt(PacketType::Disconnect)),
        (B, Fin),
        (C, Fin),
    ]);
    assert_timeline(&conn, &want);
}

/// Runs one side's stream through a fresh layer in the given chunks.
fn replay(side: Side, chunks: &[Chunk<'_>]) -> (Seen, WsStats) {
    let mut ws = WsLayer::new();
    let mut seen = Seen::new();
    for c in chunks {
        let c = match c {
            Chunk::Data(d) => Chunk::Data(d),
            Chunk::Gap(n) => Chunk::Gap(*n),
        };
        ws.feed(side, c, &mut seen);
    }
    (seen, ws.stats(side))
}

#[test]
fn real_streams_split_anywhere_give_the_same_output() {
    for name in ["ws-healthy-pings.pcap", "ws-close-frame.pcap", "ws-ping.pcap"] {
        let conn = only(name);
        for side in [C, B] {
            let raw = &conn.raw[side as usize];
            let (whole, stats) = replay(side, &[Chunk::Data(raw)]);
            assert_eq!(whole.bytes[side as usize], conn.seen.bytes[side as usize], "{name}");
            for at in 0..=raw.len() {
                let (split, split_stats) = replay(side, &[Chunk::Data(&raw[..at]), Chunk::Data(&raw[at..])]);
                assert_eq!((&split.timeline, &split.bytes), (&whole.timeline, &whole.bytes), "{name} {side:?} at {at}");
                assert_eq!(split_stats, stats);
            }
        }
    }
}

#[test]
fn gaps_in_a_real_stream() {
    let conn = only("ws-healthy-pings.pcap");
    let raw = &conn.raw[0];
    let mqtt = &conn.seen.bytes[0];
    // mqtt.js's client stream: a 257-byte upgrade request, then the CONNECT in nine masked
    // frames of 7, 7, 8, 10, 7, 7, 8, 8 and 15 bytes; the last (at 257 + 62 = 319) carries the
    // client id: 6 header bytes, then 9 payload bytes, CONNECT bytes 14..23.
    let last = 257 + 62;
    assert_eq!(&raw[last..last + 2], [0x82, 0x89], "binary, final, masked, 9 bytes");
    // Lose 4 payload bytes inside it: framing and the mask phase are kept.
    let at = last + 6 + 2;
    let (seen, stats) = replay(C, &[Chunk::Data(&raw[..at]), Chunk::Gap(4), Chunk::Data(&raw[at + 4..])]);
    assert_eq!(seen.bytes[0], [&mqtt[..16], &mqtt[20..]].concat());
    assert!(seen.timeline.contains(&(C, Gap(4))));
    assert_eq!((stats.errors, stats.resyncs), (0, 0));
    // The CONNECT is damaged (not decoded) but its framing holds: the PINGREQs still decode.
    let pings = seen.timeline.iter().filter(|(_, i)| *i == Mqtt(PacketType::PingReq)).count();
    assert_eq!(pings, 2);
    // Lose the last 3 payload bytes and the next frame's first 2 header bytes: framing is lost
    // and found again at a later frame header; the bytes skipped are counted.
    let at = last + 6 + 6;
    let (seen, stats) = replay(C, &[Chunk::Data(&raw[..at]), Chunk::Gap(5), Chunk::Data(&raw[at + 5..])]);
    assert_eq!(stats.resyncs, 1);
    assert!(seen.timeline.contains(&(C, Gap(u64::MAX))));
    assert!(seen.timeline.iter().any(|(_, i)| matches!(i, Ws(WsEvent::Resync { .. }))));
    assert!(mqtt.ends_with(&seen.bytes[0][seen.bytes[0].len() - 4..]), "the stream's tail is found again");
}

/// Per client port: (the MQTT bytes of each side, the control frames of each side as
/// (opcode, close code)), from tshark's WebSocket dissector.
#[allow(clippy::type_complexity)]
fn tshark_view(name: &str) -> BTreeMap<u16, ([Vec<u8>; 2], [Vec<(u8, Option<u16>)>; 2])> {
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(fixture(name))
        .args(["-d", &format!("tcp.port=={PORT},http"), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"])
        .args(["-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "websocket.opcode", "-e", "data.data"])
        .args(["-e", "websocket.payload.close.status_code"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut view: BTreeMap<u16, ([Vec<u8>; 2], [Vec<(u8, Option<u16>)>; 2])> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (src, dst): (u16, u16) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let (client, side) = if dst == PORT { (src, C) } else { (dst, B) };
        let entry = view.entry(client).or_default();
        for hex in f[3].split(',').filter(|h| !h.is_empty()) {
            let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
            entry.0[side as usize].extend(bytes);
        }
        let mut codes = f[4].split(',').filter(|c| !c.is_empty()).map(|c| c.parse::<u16>().unwrap());
        for op in f[2].split(',').filter(|o| !o.is_empty()).map(|o| o.parse::<u8>().unwrap()) {
            if op >= 8 {
                entry.1[side as usize].push((op, if op == 8 { codes.next() } else { None }));
            }
        }
    }
    view
}

#[test]
#[ignore = "needs tshark"]
fn mqtt_bytes_and_control_frames_agree_with_tshark() {
    let names = [
        "ws-keepalive5-silent.pcap",
        "ws-healthy-pings.pcap",
        "ws-client-killed.pcap",
        "ws-close-frame.pcap",
        "ws-ping.pcap",
    ];
    for name in names {
        let theirs = tshark_view(name);
        let ours = run(name);
        assert_eq!(theirs.keys().collect::<Vec<_>>(), ours.keys().collect::<Vec<_>>(), "{name}: connections");
        for (port, conn) in &ours {
            let (bytes, controls) = &theirs[port];
            assert!(!bytes[0].is_empty(), "{name}: tshark saw MQTT bytes");
            assert_eq!(&conn.seen.bytes, bytes, "{name}: MQTT bytes of each side");
            for side in [C, B] {
                let our_controls: Vec<(u8, Option<u16>)> = conn
                    .seen
                    .timeline
                    .iter()
                    .filter(|(s, _)| *s == side)
                    .filter_map(|(_, item)| match item {
                        Ws(WsEvent::Close { code, .. }) => Some((8, *code)),
                        Ws(WsEvent::Ping { .. }) => Some((9, None)),
                        Ws(WsEvent::Pong { .. }) => Some((10, None)),
                        _ => None,
                    })
                    .collect();
                assert_eq!(our_controls, controls[side as usize], "{name}: control frames of {side:?}");
            }
        }
    }
}

/// Each side's TLS plaintext, record by record in capture order, as tshark decrypts it with the
/// fixture's key log (`-z follow,tls,raw`: lines of node 0 plain, of node 1 indented by a tab;
/// node 0 is whichever tshark met first, so its address says which side it is).
fn tshark_plaintext(name: &str) -> Vec<(Side, Vec<u8>)> {
    let keys = fixture(&name.replace(".pcap", ".keys"));
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(fixture(name))
        .args(["-o", &format!("tls.keylog_file:{}", keys.display()), "-d", "tcp.port==8443,tls"])
        .args(["-q", "-z", "follow,tls,raw,0"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let node0 = text.lines().find_map(|l| l.strip_prefix("Node 0: ")).expect("a follow header");
    let (untabbed, tabbed) = if node0.ends_with(":8443") { (B, C) } else { (C, B) };
    text.lines()
        .skip_while(|l| !l.starts_with("Node 1:"))
        .skip(1)
        .take_while(|l| !l.starts_with("==="))
        .map(|l| {
            let side = if l.starts_with('\t') { tabbed } else { untabbed };
            let hex = l.trim();
            (side, (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect())
        })
        .collect()
}

#[test]
#[ignore = "needs tshark"]
fn wss_plaintext_decrypted_by_tshark_goes_through_the_layer() {
    // The TLS layer is not in this crate yet: tshark decrypts (TLS 1.3 and 1.2, key logs from
    // the broker's `node --tls-keylog`), and the plaintext of each record goes through WsLayer.
    let cases: [(&str, Vec<(Side, Item)>); 3] = [
        ("wss-keepalive5-silent.pcap", vec![connect("wss-silent-5", 5, true), (B, ConnAck(0))]),
        (
            "wss-healthy-pings.pcap",
            vec![
                connect("wss-pinger", 2, false),
                (B, ConnAck(0)),
                (C, Mqtt(PacketType::PingReq)),
                (B, Mqtt(PacketType::PingResp)),
                (C, Mqtt(PacketType::PingReq)),
                (B, Mqtt(PacketType::PingResp)),
                (C, Mqtt(PacketType::Disconnect)),
                (C, Ws(WsEvent::Close { code: None, reason: String::new() })),
            ],
        ),
        (
            "wss12-close-frame.pcap",
            vec![
                connect("wss12-closer", 10, false),
                (B, ConnAck(0)),
                (C, Ws(WsEvent::Ping { len: 2 })),
                (B, Ws(WsEvent::Pong { len: 2 })),
                (C, Mqtt(PacketType::PingReq)),
                (B, Mqtt(PacketType::PingResp)),
                (C, Ws(WsEvent::Close { code: Some(1001), reason: "going-away".into() })),
                (B, Ws(WsEvent::Close { code: Some(1001), reason: "going-away".into() })),
            ],
        ),
    ];
    for (name, tail) in cases {
        let records = tshark_plaintext(name);
        assert!(records.len() > 4, "{name}: tshark decrypted the records");
        let mut ws = WsLayer::new();
        let mut seen = Seen::new();
        for (side, bytes) in &records {
            ws.feed(*side, Chunk::Data(bytes), &mut seen);
        }
        let mut want = upgrade();
        want.extend(tail);
        assert_eq!(seen.timeline, want, "{name}");
        for side in [C, B] {
            assert_eq!(ws.stats(side).errors, 0, "{name} {side:?}");
        }
    }
}
