//! One direction's byte stream, cut into MQTT packets.
//!
//! Contract: [`StreamDecoder::feed`] takes in-order stream bytes in any segmentation and emits
//! the same [`StreamEvent`]s for the same bytes. A packet is emitted once its last byte has been
//! fed. Only the bodies the analysis decodes are buffered, and only a bounded prefix of them
//! ([`BODY_PREFIX`]); every other body is skipped by length, whatever its size (up to the 256 MiB
//! the encoding allows). A bad fixed header is a [`StreamEvent::Malformed`] and loses the framing;
//! a stream joined mid-way or after a gap has no framing either. Without framing the decoder
//! hunts: it buffers at most [`HUNT_LIMIT`] bytes and resumes at the first offset where a chain
//! of plausible packets starts (the heuristic is [`super::resync`]), reporting the bytes it
//! skipped. A gap
//! that falls inside a body being skipped keeps the framing: its length is known.

use super::header::{FixedHeader, HeaderError, PacketType, check};
use super::resync::{Search, find_boundary};

use super::packet::{BodyError, ConnAck, Connect, Disconnect, decode_connack, decode_connect, decode_disconnect};

/// Most body bytes kept for a CONNECT or CONNACK; the rest is skipped.
pub const BODY_PREFIX: u32 = 64 * 1024;
/// Most bytes buffered while hunting for a packet boundary.
pub const HUNT_LIMIT: usize = 64 * 1024;

/// What the analysis keeps of a packet's body.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Body {
    /// Type and length only.
    None,
    Connect(Connect),
    ConnAck(ConnAck),
    Disconnect(Disconnect),
}

/// A complete MQTT control packet.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Packet {
    pub header: FixedHeader,
    pub body: Body,
    /// Part of the body was lost to a capture gap, so it was not decoded.
    pub damaged: bool,
}

/// Why bytes were not a valid packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum Malformed {
    #[error("{0}")]
    Header(#[from] HeaderError),
    #[error("{1}")]
    Body(PacketType, BodyError),
    #[error("stream starts with {got}, not {expected}")]
    UnexpectedFirst { expected: PacketType, got: PacketType },
}

/// What the decoder reports.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum StreamEvent {
    Packet(Packet),
    Malformed(Malformed),
    /// Framing found again after skipping this many bytes.
    Resync {
        skipped: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No framing; `buf` holds bytes being searched.
    Hunting,
    /// At a packet boundary; `buf` holds the first bytes of a split fixed header.
    Header,
    /// Inside a body; `buf` holds the part of its first `keep` bytes seen so far.
    Body { header: FixedHeader, keep: u32, left: u64, damaged: bool },
}

/// A decoder at a packet boundary holding no bytes: whether it has framing, and the type the
/// first packet must have. The connection table keeps idle connections in this form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderRest {
    pub hunting: bool,
    pub first: Option<PacketType>,
}

/// Stream decoder for one direction of one connection.
#[derive(Debug)]
pub struct StreamDecoder {
    state: State,
    buf: Vec<u8>,
    /// Bytes dropped while hunting, reported at the next resync.
    skipped: u64,
    /// The type the stream's first packet must have (CONNECT from a client, CONNACK from a
    /// broker), while it has not been seen.
    first: Option<PacketType>,
}

impl StreamDecoder {
    /// A decoder for a stream seen from its first byte (`framed`) or joined mid-way.
    pub fn new(framed: bool) -> Self {
        StreamDecoder {
            state: if framed { State::Header } else { State::Hunting },
            buf: Vec::new(),
            skipped: 0,
            first: None,
        }
    }

    /// A decoder for a stream seen from its first byte, which must be a `first` packet (CONNECT
    /// for a client's stream, CONNACK for a broker's; MQTT 5 AUTH is accepted before CONNACK).
    /// Anything else there is malformed, and the decoder hunts for framing.
    pub fn starting_with(first: PacketType) -> Self {
        StreamDecoder { first: Some(first), ..StreamDecoder::new(true) }
    }

    /// Checks the stream's first packet type; false when it breaks the rule.
    fn first_ok(&mut self, h: &FixedHeader) -> Result<(), Malformed> {
        match self.first {
            Some(expected)
                if h.packet_type != expected
                    && !(expected == PacketType::ConnAck && h.packet_type == PacketType::Auth) =>
            {
                Err(Malformed::UnexpectedFirst { expected, got: h.packet_type })
            }
            _ => {
                self.first = None;
                Ok(())
            }
        }
    }

    /// The state at rest: at a packet boundary (or hunting before any byte), holding no bytes
    /// and owing no skipped-bytes report (`None` otherwise).
    pub fn rest(&self) -> Option<DecoderRest> {
        let resting = matches!(self.state, State::Header | State::Hunting) && self.buf.is_empty() && self.skipped == 0;
        resting.then_some(DecoderRest { hunting: self.state == State::Hunting, first: self.first })
    }

    /// Puts back a state at rest (the buffer is kept for reuse).
    pub fn restore(&mut self, rest: DecoderRest) {
        self.state = if rest.hunting { State::Hunting } else { State::Header };
        self.buf.clear();
        self.skipped = 0;
        self.first = rest.first;
    }

    /// True while the decoder has no packet framing.
    pub fn is_hunting(&self) -> bool {
        self.state == State::Hunting
    }

    /// Drops the bytes held while hunting (memory pressure); they count as skipped.
    pub fn shed(&mut self) {
        if self.state == State::Hunting {
            self.skipped += self.buf.len() as u64;
            self.buf = Vec::new();
        }
    }

    /// Bytes held (a header split across segments, a kept body prefix, or hunted bytes).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next in-order bytes of the stream.
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(StreamEvent)) {
        if self.state == State::Hunting {
            self.buf.extend_from_slice(data);
        } else {
            self.run(data, out);
        }
        if self.state == State::Hunting {
            self.hunt(out);
        }
    }

    /// `n` bytes of the stream were never captured.
    pub fn gap(&mut self, n: u64, out: &mut impl FnMut(StreamEvent)) {
        match self.state {
            State::Body { header, keep, left, damaged } => {
                // Bytes of the kept prefix before the hole are real; none after it are kept.
                let damaged = damaged || self.buf.len() < keep as usize;
                let keep = self.buf.len() as u32;
                if n <= left {
                    // The hole lies inside this body: framing survives.
                    self.state = State::Body { header, keep, left: left - n, damaged };
                    if n == left {
                        self.finish_packet(out);
                    }
                    return;
                }
                self.state = State::Body { header, keep, left: 0, damaged };
                self.finish_packet(out);
            }
            State::Header | State::Hunting => {}
        }
        self.skipped += self.buf.len() as u64;
        self.buf.clear();
        self.state = State::Hunting;
        // The stream's first packet may have been in the hole: whatever comes next is not held
        // to being it.
        self.first = None;
    }

    /// Processes bytes while framed; on a bad header, moves the rest to the hunting buffer.
    fn run(&mut self, mut data: &[u8], out: &mut impl FnMut(StreamEvent)) {
        while !data.is_empty() {
            match self.state {
                State::Hunting => unreachable!("run is only called while framed"),
                State::Body { header, keep, left, damaged } => {
                    let take = left.min(data.len() as u64) as usize;
                    let want = (keep as usize).saturating_sub(self.buf.len()).min(take);
                    self.buf.extend_from_slice(&data[..want]);
                    data = &data[take..];
                    self.state = State::Body { header, keep, left: left - take as u64, damaged };
                    if left == take as u64 {
                        self.finish_packet(out);
                    }
                }
                State::Header if self.buf.is_empty() => match check(data) {
                    Ok(Some(h)) => {
                        if let Err(m) = self.first_ok(&h) {
                            return self.lose_framing(m, data, out);
                        }
                        let body = &data[usize::from(h.header_len)..];
                        let len = h.remaining as usize;
                        if body.len() >= len {
                            // Fast path: the whole packet is in this chunk; no copy.
                            emit_packet(h, &body[..keep_len(&h) as usize], false, out);
                            data = &body[len..];
                        } else {
                            self.state = State::Body {
                                header: h,
                                keep: keep_len(&h),
                                left: u64::from(h.remaining),
                                damaged: false,
                            };
                            data = body;
                        }
                    }
                    Ok(None) => {
                        self.buf.extend_from_slice(data);
                        data = &[];
                    }
                    Err(e) => return self.lose_framing(e.into(), data, out),
                },
                State::Header => {
                    // A fixed header split across chunks: complete it in a small array.
                    let have = self.buf.len();
                    let mut tmp = [0u8; 5];
                    let n = (5 - have).min(data.len());
                    tmp[..have].copy_from_slice(&self.buf);
                    tmp[have..have + n].copy_from_slice(&data[..n]);
                    match check(&tmp[..have + n]).map_err(Malformed::from).and_then(|h| match h {
                        Some(h) => self.first_ok(&h).map(|()| Some(h)),
                        None => Ok(None),
                    }) {
                        Ok(Some(h)) => {
                            data = &data[usize::from(h.header_len) - have..];
                            self.buf.clear();
                            self.state = State::Body {
                                header: h,
                                keep: keep_len(&h),
                                left: u64::from(h.remaining),
                                damaged: false,
                            };
                            if h.remaining == 0 {
                                self.finish_packet(out);
                            }
                        }
                        Ok(None) => {
                            self.buf.extend_from_slice(&data[..n]);
                            data = &data[n..];
                        }
                        Err(e) => {
                            let mut rest = std::mem::take(&mut self.buf);
                            rest.extend_from_slice(data);
                            return self.lose_framing(e, &rest, out);
                        }
                    }
                }
            }
        }
    }

    fn lose_framing(&mut self, e: Malformed, rest: &[u8], out: &mut impl FnMut(StreamEvent)) {
        self.first = None;
        out(StreamEvent::Malformed(e));
        self.state = State::Hunting;
        self.buf.clear();
        self.buf.extend_from_slice(rest);
    }

    /// Searches the hunting buffer for framing and resumes from there.
    fn hunt(&mut self, out: &mut impl FnMut(StreamEvent)) {
        while self.state == State::Hunting && !self.buf.is_empty() {
            let full = self.buf.len() >= HUNT_LIMIT;
            match find_boundary(&self.buf, full) {
                Search::Found(at) => {
                    let bytes = std::mem::take(&mut self.buf);
                    out(StreamEvent::Resync { skipped: self.skipped + at as u64 });
                    self.skipped = 0;
                    self.state = State::Header;
                    self.run(&bytes[at..], out);
                    if self.state == State::Hunting && self.buf.len() == bytes.len() - at {
                        // No progress (cannot happen for a plausible start); drop a byte.
                        self.buf.remove(0);
                        self.skipped += 1;
                    }
                }
                Search::NeedMore => return,
                Search::NotFound => {
                    // Keep the last bytes: they may start a header completed by the next chunk.
                    let keep_from = self.buf.len().saturating_sub(4);
                    self.skipped += keep_from as u64;
                    self.buf.drain(..keep_from);
                    return;
                }
            }
        }
    }

    /// Emits the packet whose body was just completed and returns to the header state.
    fn finish_packet(&mut self, out: &mut impl FnMut(StreamEvent)) {
        let State::Body { header, damaged, .. } = self.state else { unreachable!() };
        emit_packet(header, &self.buf, damaged, out);
        self.buf.clear();
        self.state = State::Header;
    }
}

/// How many body bytes to keep for decoding.
fn keep_len(h: &FixedHeader) -> u32 {
    match h.packet_type {
        PacketType::Connect | PacketType::ConnAck => h.remaining.min(BODY_PREFIX),
        PacketType::Disconnect | PacketType::PingReq | PacketType::PingResp => h.remaining.min(1),
        _ => 0,
    }
}

/// Emits a packet decoded from its kept prefix. When capture loss cut the prefix short
/// (`damaged`), what decodes from the bytes before the cut is kept, and a body too short to
/// decode is capture loss, not malformed input.
fn emit_packet(header: FixedHeader, prefix: &[u8], damaged: bool, out: &mut impl FnMut(StreamEvent)) {
    out(match (decode_body(&header, prefix), damaged) {
        (Ok(body), _) => StreamEvent::Packet(Packet { header, body, damaged }),
        (Err(_), true) => StreamEvent::Packet(Packet { header, body: Body::None, damaged }),
        (Err(e), false) => StreamEvent::Malformed(Malformed::Body(header.packet_type, e)),
    });
}

fn decode_body(h: &FixedHeader, prefix: &[u8]) -> Result<Body, BodyError> {
    Ok(match h.packet_type {
        PacketType::Connect => Body::Connect(decode_connect(prefix)?),
        PacketType::ConnAck => Body::ConnAck(decode_connack(prefix)?),
        PacketType::Disconnect => Body::Disconnect(decode_disconnect(prefix)),
        PacketType::PingReq if h.remaining > 0 => return Err(BodyError::UnexpectedBody("PINGREQ")),
        PacketType::PingResp if h.remaining > 0 => return Err(BodyError::UnexpectedBody("PINGRESP")),
        _ => Body::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_chunks(framed: bool, bytes: &[u8], chunk: usize) -> Vec<StreamEvent> {
        let mut d = StreamDecoder::new(framed);
        let mut events = Vec::new();
        for c in bytes.chunks(chunk) {
            d.feed(c, &mut |e| events.push(e));
        }
        events
    }

    fn types(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Packet(p) => p.header.packet_type.name().to_string(),
                StreamEvent::Malformed(m) => format!("malformed: {m}"),
                StreamEvent::Resync { skipped } => format!("resync {skipped}"),
            })
            .collect()
    }

    const CONNECT_KA10: &[u8] = &[
        0x10, 0x10, // CONNECT, remaining 16
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, // MQTT 3.1.1, clean session
        0x00, 0x0a, // keep alive = 10 s
        0x00, 0x04, b'd', b'e', b'v', b'1', // client id
    ];
    const PUBLISH: &[u8] = &[0x30, 0x07, 0x00, 0x01, b't', b'h', b'e', b'l', b'o'];
    const PINGREQ: &[u8] = &[0xc0, 0x00];

    fn session_bytes() -> Vec<u8> {
        [CONNECT_KA10, PUBLISH, PINGREQ, PUBLISH, &[0xe0, 0x00]].concat()
    }

    #[test]
    fn any_segmentation_gives_the_same_packets() {
        let bytes = session_bytes();
        let whole = decode_in_chunks(true, &bytes, bytes.len());
        assert_eq!(types(&whole), ["connect", "publish", "pingreq", "publish", "disconnect"]);
        for chunk in 1..bytes.len() {
            assert_eq!(decode_in_chunks(true, &bytes, chunk), whole, "chunk size {chunk}");
        }
        let StreamEvent::Packet(Packet { body: Body::Connect(c), .. }) = &whole[0] else { panic!() };
        assert_eq!((c.keepalive, c.client_id.as_deref()), (10, Some("dev1")));
    }

    #[test]
    fn split_remaining_length_field() {
        // A 200-byte PUBLISH: its remaining length takes two bytes, split between chunks.
        let mut p = vec![0x30, 0xc8, 0x01, 0x00, 0x01, b't'];
        p.resize(3 + 200, b'x');
        p.extend_from_slice(PINGREQ);
        let mut d = StreamDecoder::new(true);
        let mut ev = Vec::new();
        d.feed(&p[..2], &mut |e| ev.push(e));
        assert!(ev.is_empty());
        d.feed(&p[2..], &mut |e| ev.push(e));
        assert_eq!(types(&ev), ["publish", "pingreq"]);
    }

    #[test]
    fn huge_remaining_length_is_skipped_without_buffering() {
        let mut d = StreamDecoder::new(true);
        let mut ev = Vec::new();
        d.feed(&[0x30, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x01, b't'], &mut |e| ev.push(e));
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..254 {
            d.feed(&chunk, &mut |e| ev.push(e));
        }
        assert!(ev.is_empty());
        assert_eq!(d.buffered(), 0);
        d.gap(1 << 20, &mut |e| ev.push(e)); // lost inside the body: framing kept
        let rest = 268_435_455 - 3 - 255 * (1 << 20);
        d.feed(&vec![0u8; rest], &mut |e| ev.push(e));
        d.feed(PINGREQ, &mut |e| ev.push(e));
        assert_eq!(types(&ev), ["publish", "pingreq"]);
    }

    #[test]
    fn mid_stream_join_finds_the_next_boundary() {
        // Joined in the middle of a PUBLISH: its tail, then whole packets.
        let bytes = [&PUBLISH[4..], PUBLISH, PINGREQ].concat();
        let ev = decode_in_chunks(false, &bytes, bytes.len());
        assert_eq!(types(&ev), ["resync 5", "publish", "pingreq"]);
    }

    #[test]
    fn garbage_is_malformed_then_resynchronised() {
        let bytes = [CONNECT_KA10, &[0x00, 0x17, 0x42, 0x99][..], PINGREQ].concat();
        let ev = decode_in_chunks(true, &bytes, bytes.len());
        assert_eq!(types(&ev), ["connect", "malformed: reserved packet type 0", "resync 4", "pingreq"]);
    }

    #[test]
    fn random_garbage_is_never_taken_for_mqtt_by_luck() {
        // A deterministic pseudo-random byte stream: no 0xc0 0x00 pairs by construction.
        let mut x: u32 = 12345;
        let garbage: Vec<u8> = (0..20_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((x >> 16) as u8) | 0x01
            })
            .collect();
        let ev = decode_in_chunks(false, &garbage, 1460);
        assert!(ev.iter().all(|e| !matches!(e, StreamEvent::Packet(_))), "{:?}", types(&ev));
    }

    #[test]
    fn gap_inside_a_decoded_body_marks_it_damaged() {
        let mut d = StreamDecoder::new(true);
        let mut ev = Vec::new();
        d.feed(&CONNECT_KA10[..6], &mut |e| ev.push(e));
        d.gap(6, &mut |e| ev.push(e));
        d.feed(&CONNECT_KA10[12..], &mut |e| ev.push(e));
        d.feed(PINGREQ, &mut |e| ev.push(e));
        // The 4 body bytes before the hole are too few for a CONNECT: type only.
        let StreamEvent::Packet(p) = &ev[0] else { panic!("{ev:?}") };
        assert!(p.damaged && p.body == Body::None && p.header.packet_type == PacketType::Connect);
        assert_eq!(types(&ev[1..]), ["pingreq"]);
    }

    #[test]
    fn gap_after_the_keepalive_keeps_the_keepalive() {
        let mut d = StreamDecoder::new(true);
        let mut ev = Vec::new();
        d.feed(&CONNECT_KA10[..14], &mut |e| ev.push(e)); // up to the client id length
        d.gap(4, &mut |e| ev.push(e)); // the client id itself
        let StreamEvent::Packet(Packet { body: Body::Connect(c), damaged: true, .. }) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!((c.keepalive, c.client_id.as_deref()), (10, None));
    }

    #[test]
    fn gap_across_a_boundary_loses_framing_until_the_next_plausible_packet() {
        let mut d = StreamDecoder::new(true);
        let mut ev = Vec::new();
        d.feed(&PUBLISH[..5], &mut |e| ev.push(e));
        d.gap(10, &mut |e| ev.push(e)); // rest of PUBLISH (4) and 6 bytes of the next packet
        assert!(d.is_hunting());
        d.feed(b"xyz", &mut |e| ev.push(e));
        d.feed(PINGREQ, &mut |e| ev.push(e));
        assert_eq!(types(&ev), ["publish", "resync 3", "pingreq"]);
    }

    #[test]
    fn bogus_protocol_name_keeps_framing() {
        let mut bogus = CONNECT_KA10.to_vec();
        bogus[4..8].copy_from_slice(b"HTTP");
        let bytes = [&bogus[..], PINGREQ].concat();
        let ev = decode_in_chunks(true, &bytes, 3);
        assert_eq!(types(&ev), ["malformed: CONNECT with unknown protocol name", "pingreq"]);
    }

    #[test]
    fn a_stream_seen_from_its_start_must_open_with_connect() {
        let mut d = StreamDecoder::starting_with(PacketType::Connect);
        let mut ev = Vec::new();
        d.feed(&[0x30, 0x7f, 0x01, 0x02], &mut |e| ev.push(e));
        assert_eq!(types(&ev), ["malformed: stream starts with publish, not connect"]);
        assert!(d.is_hunting());
        let mut d = StreamDecoder::starting_with(PacketType::Connect);
        let mut ev = Vec::new();
        d.feed(&session_bytes(), &mut |e| ev.push(e));
        assert_eq!(types(&ev).len(), 5);
    }

    #[test]
    fn five_byte_remaining_length_is_malformed() {
        let bytes = [&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01][..], PINGREQ].concat();
        let ev = decode_in_chunks(true, &bytes, 2);
        assert_eq!(types(&ev)[0], "malformed: remaining length longer than 4 bytes");
        assert_eq!(types(&ev).last().unwrap(), "pingreq");
    }
}
