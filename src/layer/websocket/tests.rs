//! Unit and property tests of the WebSocket layer, with annotated bytes.

use super::*;
use proptest::prelude::*;

/// Everything the layer handed up, in order.
#[derive(Debug, Default, PartialEq)]
struct Seen {
    /// MQTT bytes per side (client, broker), gaps marked in `gaps`.
    bytes: [Vec<u8>; 2],
    gaps: [Vec<u64>; 2],
    events: Vec<(Side, WsEvent)>,
}

impl Up for Seen {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        self.bytes[side as usize].extend_from_slice(bytes);
    }
    fn gap(&mut self, side: Side, len: u64) {
        self.gaps[side as usize].push(len);
    }
    fn event(&mut self, side: Side, event: LayerEvent) {
        let LayerEvent::WebSocket(e) = event else { panic!("only the WebSocket layer runs here: {event:?}") };
        self.events.push((side, e));
    }
}

impl Seen {
    fn ws(&self) -> Vec<WsEvent> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }
    fn errors(&self) -> Vec<WsError> {
        self.events.iter().filter_map(|(_, e)| if let WsEvent::Error(x) = e { Some(*x) } else { None }).collect()
    }
}

const REQUEST: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

/// A masked client frame (key 37 fa 21 3d, RFC 6455 §5.7).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![first];
    push_len(&mut f, 0x80, payload.len());
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// An unmasked (broker) frame.
fn plain(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first];
    push_len(&mut f, 0, payload.len());
    f.extend_from_slice(payload);
    f
}

fn push_len(f: &mut Vec<u8>, mask_bit: u8, n: usize) {
    match n {
        0..=125 => f.push(mask_bit | n as u8),
        126..=0xFFFF => {
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            f.push(mask_bit | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

fn feed(layer: &mut WsLayer, side: Side, bytes: &[u8], seen: &mut Seen) {
    layer.feed(side, Chunk::Data(bytes), seen);
}

/// A layer past the handshake on both sides.
fn upgraded(seen: &mut Seen) -> WsLayer {
    let mut l = WsLayer::new();
    feed(&mut l, Side::Client, REQUEST, seen);
    feed(&mut l, Side::Broker, RESPONSE, seen);
    l
}

const CONNECT: &[u8] = &[
    0x10, 0x10, // CONNECT, remaining length 16
    0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
    0x04, 0x02, // level 4, clean session
    0x00, 0x05, // keepalive 5 s
    0x00, 0x04, b'w', b's', b'-', b'5', // client id "ws-5"
];

#[test]
fn handshake_then_frames() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    assert_eq!(
        seen.ws(),
        [
            WsEvent::Request(Request { path: "/mqtt".into(), protocol: Some("mqtt".into()) }),
            WsEvent::Accepted { protocol: Some("mqtt".into()), extensions: None },
        ]
    );
    // mqtt.js style: the CONNECT over three frames (binary, not final; two continuations).
    let mut client = masked(0x02, &CONNECT[..2]); // binary, FIN clear: fixed header
    client.extend(masked(0x00, &CONNECT[2..12])); // continuation: variable header
    client.extend(masked(0x80, &CONNECT[12..])); // continuation, FIN: payload
    feed(&mut l, Side::Client, &client, &mut seen);
    // aedes style: the CONNACK 20 02 00 00 as four one-byte binary frames.
    let broker: Vec<u8> = [0x20, 0x02, 0x00, 0x00].iter().flat_map(|b| plain(0x82, &[*b])).collect();
    feed(&mut l, Side::Broker, &broker, &mut seen);
    assert_eq!(seen.bytes, [CONNECT.to_vec(), vec![0x20, 0x02, 0x00, 0x00]]);
    assert_eq!(seen.errors(), []);
    assert_eq!(l.stats(Side::Client).frames, 3);
    assert_eq!(l.stats(Side::Broker), WsStats { frames: 4, mqtt_bytes: 4, ..Default::default() });
    assert_eq!(l.buffered(), 0);
}

#[test]
fn head_and_frames_in_one_segment_and_byte_by_byte() {
    let mut stream = REQUEST.to_vec();
    stream.extend(masked(0x82, CONNECT));
    stream.extend(masked(0x82, &[0xC0, 0x00])); // PINGREQ
    let mut whole = Seen::default();
    feed(&mut WsLayer::new(), Side::Client, &stream, &mut whole);
    assert_eq!(whole.bytes[0], [CONNECT, &[0xC0, 0x00]].concat());
    let mut bytewise = Seen::default();
    let mut l = WsLayer::new();
    for b in &stream {
        feed(&mut l, Side::Client, std::slice::from_ref(b), &mut bytewise);
    }
    assert_eq!(bytewise, whole);
}

#[test]
fn rfc6455_5_7_examples() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    seen.events.clear();
    // A single-frame unmasked text message "Hello" from the broker: reported, not passed up.
    feed(&mut l, Side::Broker, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], &mut seen);
    // A fragmented unmasked text message "Hel" + "lo": reported once, continuation not passed up.
    feed(&mut l, Side::Broker, &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f], &mut seen);
    // Unmasked ping "Hello" from the broker; masked pong "Hello" from the client.
    feed(&mut l, Side::Broker, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], &mut seen);
    feed(&mut l, Side::Client, &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], &mut seen);
    assert_eq!(
        seen.events,
        [
            (Side::Broker, WsEvent::Text { len: 5 }),
            (Side::Broker, WsEvent::Text { len: 3 }),
            (Side::Broker, WsEvent::Ping { len: 5 }),
            (Side::Client, WsEvent::Pong { len: 5 }),
        ]
    );
    assert!(seen.bytes.iter().all(Vec::is_empty));
    // A masked binary "Hello" (the §5.7 masked frame with opcode 2): unmasked and passed up.
    feed(&mut l, Side::Client, &[0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58], &mut seen);
    assert_eq!(seen.bytes[0], b"Hello");
    // 256 bytes in one unmasked binary frame (16-bit length), 64 KiB in one (64-bit length).
    let mut f = vec![0x82, 0x7E, 0x01, 0x00];
    f.extend((0..=255u8).collect::<Vec<_>>());
    feed(&mut l, Side::Broker, &f, &mut seen);
    let mut f = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    f.extend(std::iter::repeat_n(0xAB, 65536));
    feed(&mut l, Side::Broker, &f, &mut seen);
    assert_eq!(seen.bytes[1].len(), 256 + 65536);
    assert_eq!(&seen.bytes[1][..256], (0..=255u8).collect::<Vec<_>>());
    assert_eq!(seen.errors(), []);
}

#[test]
fn close_frame_with_code_and_reason() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    seen.events.clear();
    // Close 1000 "bye", masked, from the client; the broker echoes 1000 with no reason.
    feed(&mut l, Side::Client, &masked(0x88, &[0x03, 0xE8, b'b', b'y', b'e']), &mut seen);
    feed(&mut l, Side::Broker, &[0x88, 0x02, 0x03, 0xE8], &mut seen);
    // An empty close: no code.
    feed(&mut l, Side::Broker, &[0x88, 0x00], &mut seen);
    // A 1-byte close payload is an error.
    feed(&mut l, Side::Broker, &[0x88, 0x01, 0x03], &mut seen);
    assert_eq!(
        seen.events,
        [
            (Side::Client, WsEvent::Close { code: Some(1000), reason: "bye".into() }),
            (Side::Broker, WsEvent::Close { code: Some(1000), reason: String::new() }),
            (Side::Broker, WsEvent::Close { code: None, reason: String::new() }),
            (Side::Broker, WsEvent::Error(WsError::BadClosePayload)),
            (Side::Broker, WsEvent::Close { code: None, reason: String::new() }),
        ]
    );
}

#[test]
fn refused_upgrade_is_reported_and_the_body_ignored() {
    let mut seen = Seen::default();
    let mut l = WsLayer::new();
    feed(&mut l, Side::Client, REQUEST, &mut seen);
    feed(&mut l, Side::Broker, b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", &mut seen);
    feed(&mut l, Side::Broker, &[0x82, 0x02, 0x20, 0x02], &mut seen);
    assert_eq!(seen.events[1], (Side::Broker, WsEvent::Refused { status: 404, reason: "Not Found".into() }));
    assert_eq!((seen.events.len(), seen.bytes[1].len(), l.buffered()), (2, 0, 0));
}

#[test]
fn plain_http_request_is_not_an_upgrade() {
    let mut seen = Seen::default();
    let mut l = WsLayer::new();
    feed(&mut l, Side::Client, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x82\x80\0\0\0\0", &mut seen);
    assert_eq!(seen.errors(), [WsError::Head(HeadError::NotAnUpgrade)]);
    assert_eq!(l.stats(Side::Client).frames, 0);
}

#[test]
fn unmasked_client_frame_is_counted_and_still_decoded() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    feed(&mut l, Side::Client, &plain(0x82, &[0xC0, 0x00]), &mut seen);
    feed(&mut l, Side::Broker, &masked(0x82, &[0xD0, 0x00]), &mut seen);
    assert_eq!(seen.errors(), [WsError::UnmaskedClientFrame, WsError::MaskedBrokerFrame]);
    assert_eq!(seen.bytes, [vec![0xC0, 0x00], vec![0xD0, 0x00]]);
    assert_eq!(l.stats(Side::Client).errors, 1);
}

#[test]
fn length_of_2_63_is_an_error_not_an_allocation() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    // Binary, masked, 64-bit length 2^63, then a valid PINGREQ frame twice (for the resync).
    let mut b = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    b.extend(masked(0x82, &[0xC0, 0x00]));
    b.extend(masked(0x82, &[0xC0, 0x00]));
    feed(&mut l, Side::Client, &b, &mut seen);
    assert_eq!(seen.errors(), [WsError::LengthTooLarge(1 << 63)]);
    assert_eq!(seen.gaps[0], [UNKNOWN_LEN], "the MQTT stream above loses its framing");
    assert!(seen.ws().contains(&WsEvent::Resync { skipped: 0 }));
    assert_eq!(seen.bytes[0], [0xC0, 0x00, 0xC0, 0x00]);
    assert_eq!(l.buffered(), 0);
}

#[test]
fn reserved_opcodes_lose_framing_and_it_is_found_again() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    let mut b = vec![0x83, 0x02, 0xAA, 0xBB]; // opcode 3 (reserved), 2 bytes of junk
    b.extend(plain(0x82, &[0xD0, 0x00])); // PINGRESP
    b.extend(plain(0x82, &[0xD0, 0x00]));
    feed(&mut l, Side::Broker, &b, &mut seen);
    assert_eq!(seen.errors(), [WsError::ReservedOpcode(3)]);
    // The reserved header (2 bytes) was consumed; the 2 junk bytes are skipped.
    assert!(seen.ws().contains(&WsEvent::Resync { skipped: 2 }));
    assert_eq!(seen.bytes[1], [0xD0, 0x00, 0xD0, 0x00]);
    assert_eq!(l.stats(Side::Broker).resyncs, 1);
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    feed(&mut l, Side::Broker, &[0x8B, 0x00], &mut seen); // control opcode 11 (reserved)
    assert_eq!(seen.errors(), [WsError::ReservedOpcode(0xB)]);
    feed(&mut l, Side::Broker, &[0x09, 0x00], &mut seen); // a fragmented ping
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    feed(&mut l, Side::Broker, &[0x09, 0x00], &mut seen);
    assert_eq!(seen.errors(), [WsError::BadControlFrame { opcode: 9, len: 0 }]);
}

#[test]
fn rsv1_payload_is_an_unknown_gap_but_framing_is_kept() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    // permessage-deflate compressed binary frame (RSV1), then a plain one.
    let mut b = plain(0xC2, &[0x01, 0x02, 0x03]);
    b.extend(plain(0x82, &[0xD0, 0x00]));
    feed(&mut l, Side::Broker, &b, &mut seen);
    assert_eq!(seen.errors(), [WsError::ReservedBits(4)]);
    assert_eq!(seen.gaps[1], [UNKNOWN_LEN]);
    assert_eq!(seen.bytes[1], [0xD0, 0x00]);
    assert_eq!(l.stats(Side::Broker).resyncs, 0);
}

#[test]
fn unexpected_continuation_and_unfinished_message() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    feed(&mut l, Side::Broker, &plain(0x80, &[0xD0]), &mut seen); // continuation with nothing open
    feed(&mut l, Side::Broker, &plain(0x02, &[0x00]), &mut seen); // binary, not final
    feed(&mut l, Side::Broker, &plain(0x82, &[0xD0, 0x00]), &mut seen); // binary again
    assert_eq!(seen.errors(), [WsError::UnexpectedContinuation, WsError::UnfinishedMessage]);
    assert_eq!(seen.bytes[1], [0xD0, 0x00, 0xD0, 0x00]);
}

#[test]
fn gap_inside_a_payload_keeps_framing_and_mask_phase() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    // A masked frame of 10 bytes; the capture loses payload bytes 3..6.
    let payload = [0x30, 0x08, 0x00, 0x01, b't', 0x00, 0x01, 0x02, 0x03, 0x04];
    let f = masked(0x82, &payload);
    let hdr = 6;
    feed(&mut l, Side::Client, &f[..hdr + 3], &mut seen);
    l.feed(Side::Client, Chunk::Gap(3), &mut seen);
    feed(&mut l, Side::Client, &f[hdr + 6..], &mut seen);
    feed(&mut l, Side::Client, &masked(0x82, &[0xC0, 0x00]), &mut seen);
    assert_eq!(seen.gaps[0], [3]);
    assert_eq!(seen.bytes[0], [&payload[..3], &payload[6..], &[0xC0, 0x00]].concat());
    assert_eq!(seen.errors(), []);
    // A gap that ends exactly at the frame's end keeps the framing too.
    let f = masked(0x82, &payload);
    feed(&mut l, Side::Client, &f[..hdr + 4], &mut seen);
    l.feed(Side::Client, Chunk::Gap(6), &mut seen);
    feed(&mut l, Side::Client, &masked(0x82, &[0xE0, 0x00]), &mut seen);
    assert_eq!(seen.gaps[0], [3, 6]);
    assert!(seen.bytes[0].ends_with(&[0xC0, 0x00, 0x30, 0x08, 0x00, 0x01, 0xE0, 0x00]));
}

#[test]
fn gap_across_a_frame_end_resyncs() {
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    let f = plain(0x82, &[0x30, 0x03, 0x00, 0x01, b't']);
    feed(&mut l, Side::Broker, &f[..4], &mut seen);
    l.feed(Side::Broker, Chunk::Gap(100), &mut seen); // past this frame's end
    // The rest of some frame, then aedes-style 1-byte frames.
    let mut b = vec![0x55, 0x66];
    b.extend([0xD0, 0x00].iter().flat_map(|x| plain(0x82, &[*x])));
    feed(&mut l, Side::Broker, &b, &mut seen);
    assert_eq!(seen.gaps[1], [UNKNOWN_LEN]);
    assert_eq!(seen.bytes[1], [0x30, 0x03, 0xD0, 0x00]);
    assert!(seen.ws().contains(&WsEvent::Resync { skipped: 2 }));
    // A gap in a header loses framing too.
    let mut seen = Seen::default();
    let mut l = upgraded(&mut seen);
    feed(&mut l, Side::Broker, &[0x82], &mut seen);
    l.feed(Side::Broker, Chunk::Gap(1), &mut seen);
    assert_eq!(seen.gaps[1], [UNKNOWN_LEN]);
}

#[test]
fn gap_in_the_handshake() {
    let mut seen = Seen::default();
    let mut l = WsLayer::new();
    feed(&mut l, Side::Client, &REQUEST[..20], &mut seen);
    l.feed(Side::Client, Chunk::Gap(30), &mut seen);
    let mut rest = REQUEST[50..].to_vec();
    rest.extend(masked(0x82, CONNECT));
    feed(&mut l, Side::Client, &rest, &mut seen);
    assert_eq!(seen.errors(), [WsError::GapInHandshake]);
    // The head's tail is skipped (no HTTP text is a client frame header) and the frame found.
    assert_eq!(seen.ws()[1], WsEvent::Resync { skipped: (REQUEST.len() - 50) as u64 });
    assert_eq!(seen.bytes[0], CONNECT);
}

#[test]
fn header_flood_is_an_error_with_bounded_memory() {
    let mut seen = Seen::default();
    let mut l = WsLayer::new();
    // One endless header line.
    feed(&mut l, Side::Client, b"GET /mqtt HTTP/1.1\r\nX-Flood: ", &mut seen);
    for _ in 0..20_000 {
        feed(&mut l, Side::Client, b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", &mut seen);
        assert!(l.buffered() <= HUNT_LIMIT);
    }
    assert_eq!(seen.errors(), [WsError::HeadTooLarge]);
    assert_eq!(l.stats(Side::Client).errors, 1);
    assert_eq!(seen.gaps[0], [UNKNOWN_LEN]);
    // Endless header lines from the broker: too many lines before too many bytes.
    let mut seen = Seen::default();
    let mut l = WsLayer::new();
    let flood = [b"HTTP/1.1 101 OK\r\n".as_slice(), &b"A: b\r\n".repeat(MAX_HEAD)].concat();
    feed(&mut l, Side::Broker, &flood, &mut seen);
    assert_eq!(seen.errors(), [WsError::Head(HeadError::Malformed("too many header lines"))]);
    assert!(l.buffered() <= HUNT_LIMIT);
}

#[test]
fn mid_stream_hunts_from_the_first_byte() {
    let mut seen = Seen::default();
    let mut l = WsLayer::mid_stream();
    // Joined inside a frame: its last bytes, then two PINGREQ frames.
    let mut b = vec![0x11, 0x22, 0x33];
    b.extend(masked(0x82, &[0xC0, 0x00]));
    b.extend(masked(0x82, &[0xC0, 0x00]));
    feed(&mut l, Side::Client, &b, &mut seen);
    assert_eq!(seen.ws(), [WsEvent::Resync { skipped: 3 }]);
    assert_eq!(seen.bytes[0], [0xC0, 0x00, 0xC0, 0x00]);
    assert!(seen.gaps[0].is_empty());
}

#[test]
fn hunting_holds_at_most_the_limit() {
    let mut seen = Seen::default();
    let mut l = WsLayer::mid_stream();
    // A plausible header announcing 1 MiB, then noise: after HUNT_LIMIT bytes it is taken.
    let mut b = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x10, 0x00, 0x00];
    b.extend(std::iter::repeat_n(0x41, 200_000));
    for c in b.chunks(1000) {
        feed(&mut l, Side::Broker, c, &mut seen);
        assert!(l.buffered() <= HUNT_LIMIT);
    }
    assert_eq!(seen.ws(), [WsEvent::Resync { skipped: 0 }]);
    assert_eq!(seen.bytes[1].len(), 200_000);
}

#[test]
fn stacked_in_a_connection_stack() {
    // The connection's Stack (Send) holds the layer and passes its output and events through.
    let mut stack = crate::layer::Stack::Layers(vec![Box::new(WsLayer::new())]);
    let mut seen = Seen::default();
    stack.feed(Side::Client, Chunk::Data(REQUEST), &mut seen, &crate::layer::LayerConfig::default());
    stack.feed(Side::Client, Chunk::Data(&masked(0x82, CONNECT)), &mut seen, &crate::layer::LayerConfig::default());
    assert_eq!(seen.bytes[0], CONNECT);
    assert!(matches!(seen.events[..], [(Side::Client, WsEvent::Request(_))]));
    assert_eq!(stack.buffered(), 0);
}

#[test]
fn size_of_a_layer() {
    // Two sides, each a partial-header buffer, the frame being read, a Vec and counts: what a
    // connection pays for WebSocket while framed and idle (nothing on the heap then).
    assert!(std::mem::size_of::<WsLayer>() <= 256, "{}", std::mem::size_of::<WsLayer>());
}

#[test]
fn sniffing() {
    assert_eq!(sniff_upgrade(REQUEST), Sniff::Yes);
    assert_eq!(sniff_upgrade(CONNECT), Sniff::No);
    let two = [masked(0x82, CONNECT), masked(0x82, &[0xC0, 0x00])].concat();
    assert_eq!(sniff_frame(&two, true), Sniff::Yes);
    assert_eq!(sniff_frame(&two, false), Sniff::No, "client frames are masked");
    assert_eq!(sniff_frame(&two[..1], true), Sniff::NeedMore);
    assert_eq!(sniff_frame(&two[..10], true), Sniff::Yes, "a frame running past the bytes");
    assert_eq!(sniff_frame(&[0x82, 0x01, 0x20, 0xFF], false), Sniff::No, "next header implausible");
    assert_eq!(sniff_frame(CONNECT, true), Sniff::No, "MQTT CONNECT is not a frame");
    assert_eq!(sniff_frame(&[0x16, 0x03, 0x01, 0x02, 0x00], false), Sniff::No, "TLS record");
}

// ---- properties ----

/// One side's stream: its head, then `mqtt` cut into binary/continuation frames at `cuts`
/// (masked from the client, plain from the broker), with
/// a ping (`controls[k] == 0`) or pong (1) after frame `k`; returns the stream and the control
/// frames expected, in order.
fn side_stream(side: Side, mqtt: &[u8], cuts: &[usize], controls: &[u8]) -> (Vec<u8>, Vec<WsEvent>) {
    let mut expected = Vec::new();
    type Framer = fn(u8, &[u8]) -> Vec<u8>;
    let (head, frame): (&[u8], Framer) = if side == Side::Client { (REQUEST, masked) } else { (RESPONSE, plain) };
    let mut s = head.to_vec();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (mqtt.len() + 1)).collect();
    bounds.extend([0, mqtt.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    // Messages of one to three frames.
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &mqtt[w[0]..w[1]]).collect();
    let mut i = 0;
    for (k, p) in pieces.iter().enumerate() {
        let last_of_message = k + 1 == pieces.len() || k % 3 == 2;
        let op = if i == 0 { 0x02 } else { 0x00 };
        s.extend(frame(op | if last_of_message { 0x80 } else { 0 }, p));
        i = if last_of_message { 0 } else { i + 1 };
        match controls.get(k) {
            Some(0) => {
                s.extend(frame(0x89, b"hb")); // a ping (allowed between fragments)
                expected.push(WsEvent::Ping { len: 2 });
            }
            Some(1) => {
                s.extend(frame(0x8A, b""));
                expected.push(WsEvent::Pong { len: 0 });
            }
            _ => {}
        }
    }
    (s, expected)
}

fn run_split(stream: &[u8], splits: &[usize], side: Side, mid: bool) -> (Seen, WsStats) {
    let mut l = if mid { WsLayer::mid_stream() } else { WsLayer::new() };
    let mut seen = Seen::default();
    let mut bounds: Vec<usize> = splits.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.extend([0, stream.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    for w in bounds.windows(2) {
        l.feed(side, Chunk::Data(&stream[w[0]..w[1]]), &mut seen);
        assert!(l.buffered() <= HUNT_LIMIT + MAX_HEAD);
    }
    (seen, l.stats(side))
}

proptest! {
    #[test]
    fn any_framing_and_segmentation_give_the_same_mqtt_bytes(
        mqtt in proptest::collection::vec(any::<u8>(), 1..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        controls in proptest::collection::vec(0u8..3, 0..12),
        splits in proptest::collection::vec(any::<usize>(), 0..12),
        client in any::<bool>(),
    ) {
        let side = if client { Side::Client } else { Side::Broker };
        let (stream, controls) = side_stream(side, &mqtt, &cuts, &controls);
        let (whole, stats) = run_split(&stream, &[], side, false);
        prop_assert_eq!(&whole.bytes[side as usize], &mqtt);
        prop_assert_eq!(&whole.ws()[1..], &controls[..], "the head, then the control frames");
        prop_assert_eq!(stats.errors, 0);
        let (split, _) = run_split(&stream, &splits, side, false);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn every_two_way_split_of_a_frame_sequence_is_equivalent(
        mqtt in proptest::collection::vec(any::<u8>(), 1..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let (stream, _) = side_stream(Side::Client, &mqtt, &cuts, &[0, 1, 2, 0]);
        let (whole, _) = run_split(&stream, &[], Side::Client, false);
        for at in 0..=stream.len() {
            let (split, _) = run_split(&stream, &[at], Side::Client, false);
            prop_assert_eq!(&split, &whole, "split at {}", at);
        }
    }

    #[test]
    fn random_bytes_never_panic_and_stay_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..4000),
        splits in proptest::collection::vec(any::<usize>(), 0..8),
        client in any::<bool>(),
        mid in any::<bool>(),
    ) {
        let side = if client { Side::Client } else { Side::Broker };
        let (seen, stats) = run_split(&bytes, &splits, side, mid);
        let errors = seen.errors().len() as u64;
        prop_assert_eq!(stats.errors, errors);
        prop_assert!(stats.mqtt_bytes <= bytes.len() as u64);
    }

    #[test]
    fn hostile_frames_after_a_handshake_are_counted(
        headers in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u64>()), 1..20),
        gaps in proptest::collection::vec(any::<u64>(), 0..3),
    ) {
        // Arbitrary first bytes and 64-bit lengths (2^63 and up included) from the client.
        let mut seen = Seen::default();
        let mut l = upgraded(&mut seen);
        for (i, (b0, b1, len)) in headers.iter().enumerate() {
            let mut h = vec![*b0, (*b1 & 0x80) | 127];
            h.extend_from_slice(&len.to_be_bytes());
            if b1 & 0x80 != 0 { h.extend_from_slice(&[1, 2, 3, 4]); }
            l.feed(Side::Client, Chunk::Data(&h), &mut seen);
            if let Some(g) = gaps.get(i) { l.feed(Side::Client, Chunk::Gap(*g), &mut seen); }
            prop_assert!(l.buffered() <= HUNT_LIMIT);
        }
        prop_assert_eq!(l.stats(Side::Client).errors, seen.errors().len() as u64);
        if headers[0].2 >= 1 << 63 {
            prop_assert!(seen.errors().contains(&WsError::LengthTooLarge(headers[0].2)));
        }
    }
}

proptest! {
    #[test]
    fn framing_is_found_again_after_garbage_and_a_gap(
        garbage in proptest::collection::vec(any::<u8>(), 0..3000),
        client in any::<bool>(),
        pings in 2usize..5,
    ) {
        // Anything after the handshake, then a gap of unknown size, then whole frames: the
        // frames' MQTT bytes come through, whatever the garbage left behind.
        let side = if client { Side::Client } else { Side::Broker };
        let mut seen = Seen::default();
        let mut l = upgraded(&mut seen);
        l.feed(side, Chunk::Data(&garbage), &mut seen);
        l.feed(side, Chunk::Gap(UNKNOWN_LEN), &mut seen);
        let before = seen.bytes[side as usize].len();
        let (packet, frame) = if client {
            ([0xC0, 0x00], masked(0x82, &[0xC0, 0x00])) // PINGREQ
        } else {
            ([0xD0, 0x00], plain(0x82, &[0xD0, 0x00])) // PINGRESP
        };
        for _ in 0..pings {
            l.feed(side, Chunk::Data(&frame), &mut seen);
        }
        prop_assert_eq!(&seen.bytes[side as usize][before..], &packet.repeat(pings)[..]);
        prop_assert_eq!(l.buffered(), 0);
    }
}
