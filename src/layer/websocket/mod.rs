//! MQTT over WebSocket (RFC 6455): the HTTP upgrade, then frames, turned back into the MQTT byte
//! stream of each side.
//!
//! Contract: [`WsLayer`] is fed each side's in-order TCP stream (data and gaps, any segmentation)
//! and hands up the payloads of binary frames and their continuations, unmasked, in order: the
//! MQTT bytes, whatever the frame boundaries (an MQTT packet may span frames; a frame may hold
//! several packets). Everything else it saw is a [`WsEvent`]: the upgrade request and the answer
//! (a non-101 answer is a refused upgrade; the side then carries no frames), control frames (ping,
//! pong, close with its code and reason; never passed up), text frames (MQTT must be binary: their
//! length is reported, their payload not passed up), protocol errors ([`WsError`], counted in
//! [`WsStats`]) and resynchronisations. While framed, output depends only on the bytes, never on how they were
//! split (a resync after lost framing may come sooner when a frame ends exactly at a chunk's end).
//!
//! Memory per side is bounded whatever the input: an HTTP head is held up to [`MAX_HEAD`] bytes
//! (longer is an error), a frame header up to 14 bytes, a close frame's payload up to 125 bytes,
//! and bytes searched for framing up to [`HUNT_LIMIT`]; payloads are streamed through, never held,
//! whatever length a header announces (a length of 2^63 or more is an error, not an allocation).
//!
//! Gaps: a TCP gap inside a payload of known length keeps the framing (the masking key's phase
//! is kept too); the MQTT bytes lost go up as a gap of the exact size. A gap anywhere else (in a
//! header, across a frame's end, in the handshake) loses the framing: an [`UNKNOWN_LEN`] gap goes
//! up, and the layer hunts for a frame header whose frame is followed by another plausible header
//! ([`frame::find_boundary`]), reporting the bytes skipped in [`WsEvent::Resync`]. A frame whose
//! header a real peer would not send (reserved opcode, reserved bits on a control frame, a 2^63
//! length, an over-long or fragmented control frame) is an error and loses the framing too; a
//! data frame with reserved bits set (an extension such as permessage-deflate, which this layer
//! does not decode) keeps the framing, and its payload goes up as an [`UNKNOWN_LEN`] gap.
//!
//! The frame decoder is written here rather than taken from a crate: `tungstenite` and the other
//! WebSocket codecs buffer a whole message before handing it on, and as endpoints they end the
//! connection at the first protocol error, where a passive reader must count it and go on; none
//! survives a capture gap. The HTTP head is parsed by `httparse`.

pub mod frame;
pub mod http;

use super::{Chunk, Layer, LayerEvent, UNKNOWN_LEN, Up};
use crate::flow::Side;
use frame::{Boundary, Check, FrameHeader, opcode};
pub use http::{HeadError, Request, Response, sniff_upgrade};

/// Most bytes of an HTTP head (request or response) held; a longer head is [`WsError::HeadTooLarge`].
pub const MAX_HEAD: usize = 16 * 1024;
/// Most bytes held while hunting for a frame boundary.
pub const HUNT_LIMIT: usize = 64 * 1024;
/// Bytes unmasked at a time (a stack buffer: payloads are never held).
const UNMASK_CHUNK: usize = 4096;
/// Largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

/// Whether some bytes look like the start of a transport (for transport detection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    Yes,
    No,
    /// Too few bytes to tell.
    NeedMore,
}

/// Whether `b`, the first bytes of one side's stream of a connection joined mid-stream, start
/// with a plausible WebSocket frame header from that side ([`frame::check`]: defined opcode, no
/// reserved bits, the mask bit the side must use, shortest length encoding); when the frame ends
/// within `b`, the header after it must be plausible too. A 2-byte header is weak evidence: a
/// caller should prefer other transports' stronger signatures.
pub fn sniff_frame(b: &[u8], from_client: bool) -> Sniff {
    match frame::check(b, from_client) {
        Check::Implausible => Sniff::No,
        Check::Incomplete => Sniff::NeedMore,
        Check::Plausible(h) => {
            // header_len <= 14 and h.len <= HUNT_MAX_PAYLOAD (checked): no overflow.
            let end = h.header_len + h.len as usize;
            match b.get(end..) {
                Some(next) if !next.is_empty() && frame::check(next, from_client) == Check::Implausible => Sniff::No,
                _ => Sniff::Yes,
            }
        }
    }
}

/// What the WebSocket layer reports of its own framing.
#[derive(Clone, Debug, PartialEq)]
pub enum WsEvent {
    /// The client's upgrade request.
    Request(Request),
    /// The broker accepted the upgrade (101 Switching Protocols).
    Accepted {
        /// `Sec-WebSocket-Protocol` chosen (e.g. `mqtt`).
        protocol: Option<String>,
        /// `Sec-WebSocket-Extensions` accepted (e.g. `permessage-deflate`).
        extensions: Option<String>,
    },
    /// The broker refused the upgrade (any status but 101); the broker's side carries no frames.
    Refused { status: u16, reason: String },
    /// A ping frame of `len` payload bytes.
    Ping { len: u64 },
    /// A pong frame of `len` payload bytes.
    Pong { len: u64 },
    /// A close frame: its status code (none if the payload was empty or lost to a gap) and reason
    /// (lossy UTF-8, at most 123 bytes).
    Close { code: Option<u16>, reason: String },
    /// A text frame (MQTT over WebSocket must be binary): its payload is not passed up, nor that
    /// of the continuation frames of its message.
    Text { len: u64 },
    /// Framing found again after skipping this many bytes (since it was lost, not counting bytes
    /// the capture never saw).
    Resync { skipped: u64 },
    /// A protocol error (counted in [`WsStats::errors`]).
    Error(WsError),
}

/// What a side did wrong, as seen passively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("HTTP head longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("{0}")]
    Head(HeadError),
    #[error("capture gap in the HTTP handshake")]
    GapInHandshake,
    #[error("unmasked frame from the client")]
    UnmaskedClientFrame,
    #[error("masked frame from the broker")]
    MaskedBrokerFrame,
    #[error("frame with reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV1-3 set: an extension (e.g. permessage-deflate) transforms the payload, which is not
    /// passed up (its MQTT bytes are an unknown-length gap).
    #[error("frame with reserved bits {0:#05b} (an extension's payload is not decoded)")]
    ReservedBits(u8),
    #[error("frame length {0} is 2^63 or more")]
    LengthTooLarge(u64),
    #[error("control frame (opcode {opcode:#x}) fragmented, over 125 bytes ({len}) or with reserved bits")]
    BadControlFrame { opcode: u8, len: u64 },
    #[error("continuation frame with no message to continue")]
    UnexpectedContinuation,
    #[error("new data frame before the previous message's final frame")]
    UnfinishedMessage,
    #[error("close frame with a 1-byte payload")]
    BadClosePayload,
}

/// Counts for one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    /// Frame headers read.
    pub frames: u64,
    /// Payload bytes handed up as MQTT (excluding gaps).
    pub mqtt_bytes: u64,
    /// Protocol errors reported.
    pub errors: u64,
    /// Times framing was found again.
    pub resyncs: u64,
    /// Bytes skipped while hunting for framing.
    pub skipped_bytes: u64,
}

/// The WebSocket layer of one connection.
#[derive(Debug)]
pub struct WsLayer {
    client: Dir,
    broker: Dir,
}

impl Default for WsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl WsLayer {
    /// A connection seen from its first byte: each side starts with its HTTP head.
    pub fn new() -> Self {
        WsLayer { client: Dir::new(true, Phase::Head), broker: Dir::new(false, Phase::Head) }
    }

    /// A connection joined mid-stream (past the handshake): each side hunts for a frame boundary.
    pub fn mid_stream() -> Self {
        WsLayer { client: Dir::new(true, Phase::Hunting), broker: Dir::new(false, Phase::Hunting) }
    }

    /// Counts for one side.
    pub fn stats(&self, side: Side) -> WsStats {
        self.dir(side).stats
    }

    fn dir(&self, side: Side) -> &Dir {
        match side {
            Side::Client => &self.client,
            Side::Broker => &self.broker,
        }
    }
}

impl Layer for WsLayer {
    fn feed(&mut self, side: Side, chunk: Chunk<'_>, up: &mut dyn Up) {
        let dir = match side {
            Side::Client => &mut self.client,
            Side::Broker => &mut self.broker,
        };
        let mut out = Out { side, up, stats: &mut dir.stats };
        match chunk {
            Chunk::Data(d) => dir.state.data(d, &mut out),
            Chunk::Gap(n) => dir.state.gap(n, &mut out),
        }
    }

    fn buffered(&self) -> usize {
        self.client.state.buffered() + self.broker.state.buffered()
    }
}

/// One side: its counts and its decoder.
#[derive(Debug)]
struct Dir {
    stats: WsStats,
    state: Decoder,
}

impl Dir {
    fn new(from_client: bool, phase: Phase) -> Self {
        Dir {
            stats: WsStats::default(),
            state: Decoder {
                from_client,
                phase,
                buf: Vec::new(),
                skipped: 0,
                hdr: [0; frame::MAX_HEADER],
                hdr_len: 0,
                frame: None,
                message: Message::Unknown,
            },
        }
    }
}

/// Where a decoder's output goes: the layer above, stamped with the side, and the side's counts.
struct Out<'a> {
    side: Side,
    up: &'a mut dyn Up,
    stats: &'a mut WsStats,
}

impl Out<'_> {
    fn event(&mut self, e: WsEvent) {
        match e {
            WsEvent::Error(_) => self.stats.errors += 1,
            WsEvent::Resync { skipped } => {
                self.stats.resyncs += 1;
                self.stats.skipped_bytes += skipped;
            }
            _ => {}
        }
        self.up.event(self.side, LayerEvent::WebSocket(e));
    }
    fn error(&mut self, e: WsError) {
        self.event(WsEvent::Error(e));
    }
    fn data(&mut self, bytes: &[u8]) {
        self.stats.mqtt_bytes += bytes.len() as u64;
        self.up.data(self.side, bytes);
    }
    fn gap(&mut self, len: u64) {
        self.up.gap(self.side, len);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading the HTTP head into `buf`.
    Head,
    /// At or inside a frame.
    Frames,
    /// Framing lost: `buf` holds bytes being searched.
    Hunting,
    /// No frames will come on this side (refused upgrade, plain HTTP): bytes are ignored.
    Done,
}

/// Which message continuation frames belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Message {
    /// None open: the last data frame was final.
    Idle,
    Binary,
    Text,
    /// Not known (joined mid-stream or after a resync): continuations are taken as binary.
    Unknown,
}

/// What becomes of the payload of the frame being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Payload {
    /// MQTT bytes: handed up.
    Mqtt,
    /// Dropped (text, an extension's payload).
    Skip,
    Ping,
    Pong,
    /// Kept (at most 125 bytes) for the code and reason.
    Close,
}

/// The frame whose payload is being read.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    payload: Payload,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Payload bytes read (or lost) so far.
    pos: u64,
    /// Part of the payload was lost to a capture gap.
    lost: bool,
}

/// One side's decoder state.
#[derive(Debug)]
struct Decoder {
    from_client: bool,
    phase: Phase,
    /// The HTTP head so far, the bytes being searched for framing, or (framed) the payload of
    /// the close frame being read.
    buf: Vec<u8>,
    /// Bytes dropped while hunting, reported at the next resync.
    skipped: u64,
    /// A frame header split across chunks.
    hdr: [u8; frame::MAX_HEADER],
    hdr_len: usize,
    frame: Option<InFrame>,
    message: Message,
}

impl Decoder {
    fn buffered(&self) -> usize {
        self.buf.len() + self.hdr_len
    }

    fn data(&mut self, mut input: &[u8], out: &mut Out<'_>) {
        loop {
            match self.phase {
                Phase::Done => return,
                Phase::Frames => {
                    if input.is_empty() {
                        return;
                    }
                    let used = self.frames(input, out);
                    input = &input[used..];
                }
                Phase::Head => {
                    if input.is_empty() {
                        return;
                    }
                    let held = self.buf.len();
                    let take = (MAX_HEAD - held).min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    // Parse the first bytes (to refuse what is not HTTP at once), then only once
                    // the head's blank line or the size limit is reached: a head trickling in
                    // a byte at a time is not parsed again for each byte.
                    let recent = &self.buf[held.saturating_sub(3)..];
                    let blank_line =
                        recent.windows(2).any(|w| w == b"\n\n") || recent.windows(3).any(|w| w == b"\n\r\n");
                    if held == 0 || blank_line || self.buf.len() >= MAX_HEAD {
                        self.head(out);
                    }
                }
                Phase::Hunting => {
                    let take = (HUNT_LIMIT - self.buf.len()).min(input.len());
                    self.buf.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if !self.hunt(out) && input.is_empty() {
                        return;
                    }
                }
            }
        }
    }

    fn gap(&mut self, n: u64, out: &mut Out<'_>) {
        if n == 0 {
            return;
        }
        match self.phase {
            Phase::Done => {}
            Phase::Head => {
                out.error(WsError::GapInHandshake);
                self.buf.clear();
                self.lose_framing(out);
            }
            Phase::Hunting => {
                self.skipped += self.buf.len() as u64;
                self.buf.clear();
            }
            Phase::Frames => match &mut self.frame {
                // Inside a payload, and the gap ends before the frame does: framing kept.
                Some(f) if n <= f.len - f.pos => {
                    if f.payload == Payload::Mqtt {
                        out.gap(n);
                    }
                    f.pos += n;
                    f.lost = true;
                    if f.pos == f.len {
                        self.end_frame(out);
                    }
                }
                _ => self.lose_framing(out),
            },
        }
    }

    /// Framing is gone: the layer above loses bytes it cannot count, and this side hunts.
    fn lose_framing(&mut self, out: &mut Out<'_>) {
        if self.phase == Phase::Frames {
            self.buf.clear(); // a partial close payload
        }
        self.phase = Phase::Hunting;
        self.frame = None;
        self.hdr_len = 0;
        self.message = Message::Unknown;
        out.gap(UNKNOWN_LEN);
    }

    /// Tries to parse the HTTP head held in `buf`.
    fn head(&mut self, out: &mut Out<'_>) {
        let parsed = if self.from_client {
            http::parse_request(&self.buf).map(|r| r.map(|(req, n)| (WsEvent::Request(req), n, true)))
        } else {
            http::parse_response(&self.buf).map(|r| {
                r.map(|(res, n)| {
                    let event = if res.status == 101 {
                        WsEvent::Accepted { protocol: res.protocol, extensions: res.extensions }
                    } else {
                        WsEvent::Refused { status: res.status, reason: res.reason }
                    };
                    let ok = matches!(event, WsEvent::Accepted { .. });
                    (event, n, ok)
                })
            })
        };
        match parsed {
            Ok(None) if self.buf.len() >= MAX_HEAD => {
                // A header flood: hunt through it (bounded) rather than hold more.
                out.error(WsError::HeadTooLarge);
                self.lose_framing(out);
            }
            Ok(None) => {}
            Ok(Some((event, len, upgraded))) => {
                out.event(event);
                if upgraded {
                    self.phase = Phase::Frames;
                    self.message = Message::Idle;
                    let mut rest = std::mem::take(&mut self.buf);
                    rest.drain(..len);
                    self.replay(rest, out);
                } else {
                    self.phase = Phase::Done;
                    self.buf = Vec::new();
                }
            }
            Err(e @ HeadError::NotAnUpgrade) => {
                out.error(WsError::Head(e));
                self.phase = Phase::Done;
                self.buf = Vec::new();
            }
            Err(e) => {
                out.error(WsError::Head(e));
                self.lose_framing(out);
            }
        }
    }

    /// Searches `buf` for framing; true when found (the bytes after it have been decoded).
    fn hunt(&mut self, out: &mut Out<'_>) -> bool {
        let at = match frame::find_boundary(&self.buf, self.from_client) {
            Boundary::Found(i) => i,
            // A plausible frame longer than everything held: take it.
            Boundary::Wait(0) if self.buf.len() >= HUNT_LIMIT => 0,
            Boundary::Wait(i) => {
                self.skipped += i as u64;
                self.buf.drain(..i);
                return false;
            }
        };
        let skipped = std::mem::take(&mut self.skipped) + at as u64;
        out.event(WsEvent::Resync { skipped });
        self.phase = Phase::Frames;
        self.message = Message::Unknown;
        let mut rest = std::mem::take(&mut self.buf);
        rest.drain(..at);
        self.replay(rest, out);
        true
    }

    /// Decodes held bytes as frames; what follows a new loss of framing stays held for the hunt.
    /// `bytes` was taken from `buf`, which meanwhile holds only a close frame's payload; once
    /// framed again, `bytes` is dropped (with up to [`HUNT_LIMIT`] bytes of capacity).
    fn replay(&mut self, mut bytes: Vec<u8>, out: &mut Out<'_>) {
        let used = self.frames(&bytes, out);
        if self.phase == Phase::Hunting {
            bytes.drain(..used);
            self.buf = bytes;
        }
    }

    /// Decodes frames from `data` until it ends or framing is lost; returns the bytes used.
    fn frames(&mut self, data: &[u8], out: &mut Out<'_>) -> usize {
        let mut at = 0;
        while at < data.len() && self.phase == Phase::Frames {
            if let Some(f) = &mut self.frame {
                let n = usize::try_from(f.len - f.pos).unwrap_or(usize::MAX).min(data.len() - at);
                let f = *f;
                self.payload(f, &data[at..at + n], out);
                at += n;
                if self.frame.is_some_and(|f| f.pos == f.len) {
                    self.end_frame(out);
                }
                continue;
            }
            // A header: 2 bytes, then as many as the second byte says.
            let need = if self.hdr_len < 2 {
                2
            } else {
                let b1 = self.hdr[1];
                let ext = match b1 & 0x7F {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
            };
            let take = (need - self.hdr_len).min(data.len() - at);
            self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&data[at..at + take]);
            self.hdr_len += take;
            at += take;
            if self.hdr_len == need
                && let Some(h) = frame::parse(&self.hdr[..self.hdr_len])
            {
                self.hdr_len = 0;
                self.start_frame(h, out);
            }
        }
        at
    }

    /// A complete header: check it, then expect its payload.
    fn start_frame(&mut self, h: FrameHeader, out: &mut Out<'_>) {
        out.stats.frames += 1;
        if h.len >= 1 << 63 {
            out.error(WsError::LengthTooLarge(h.len));
            return self.lose_framing(out);
        }
        if !frame::defined(h.opcode) {
            out.error(WsError::ReservedOpcode(h.opcode));
            return self.lose_framing(out);
        }
        if frame::control(h.opcode) && (!h.fin || h.len > MAX_CONTROL as u64 || h.rsv != 0) {
            out.error(WsError::BadControlFrame { opcode: h.opcode, len: h.len });
            return self.lose_framing(out);
        }
        match (self.from_client, h.mask.is_some()) {
            (true, false) => out.error(WsError::UnmaskedClientFrame),
            (false, true) => out.error(WsError::MaskedBrokerFrame),
            _ => {}
        }
        let payload = match h.opcode {
            opcode::PING => Payload::Ping,
            opcode::PONG => Payload::Pong,
            opcode::CLOSE => Payload::Close,
            op => self.data_frame(op, h, out),
        };
        self.frame = Some(InFrame { payload, mask: h.mask, len: h.len, pos: 0, lost: false });
        if h.len == 0 {
            self.end_frame(out);
        }
    }

    /// A binary, text or continuation frame: what its payload is, and the message it leaves open.
    fn data_frame(&mut self, op: u8, h: FrameHeader, out: &mut Out<'_>) -> Payload {
        let message = if op == opcode::CONTINUATION {
            match self.message {
                Message::Idle => {
                    out.error(WsError::UnexpectedContinuation);
                    Message::Binary
                }
                Message::Unknown => Message::Binary,
                m => m,
            }
        } else {
            if matches!(self.message, Message::Binary | Message::Text) {
                out.error(WsError::UnfinishedMessage);
            }
            if op == opcode::TEXT {
                out.event(WsEvent::Text { len: h.len });
                Message::Text
            } else {
                Message::Binary
            }
        };
        self.message = if h.fin { Message::Idle } else { message };
        if h.rsv != 0 {
            out.error(WsError::ReservedBits(h.rsv));
            if message == Message::Binary {
                out.gap(UNKNOWN_LEN);
            }
            return Payload::Skip;
        }
        if message == Message::Binary { Payload::Mqtt } else { Payload::Skip }
    }

    /// Payload bytes of the current frame (`f` as before them).
    fn payload(&mut self, f: InFrame, bytes: &[u8], out: &mut Out<'_>) {
        match f.payload {
            Payload::Mqtt => match f.mask {
                None => out.data(bytes),
                Some(mut key) => {
                    key.rotate_left((f.pos % 4) as usize);
                    let mut buf = [0u8; UNMASK_CHUNK];
                    for piece in bytes.chunks(UNMASK_CHUNK) {
                        for (i, (o, b)) in buf.iter_mut().zip(piece).enumerate() {
                            *o = b ^ key[i & 3];
                        }
                        out.data(&buf[..piece.len()]);
                    }
                }
            },
            Payload::Close => {
                // At most 125 bytes in all (checked in start_frame).
                let start = f.pos as usize;
                let key = f.mask.unwrap_or_default();
                self.buf.extend(bytes.iter().enumerate().map(|(i, b)| b ^ key[(start + i) & 3]));
            }
            Payload::Skip | Payload::Ping | Payload::Pong => {}
        }
        if let Some(cur) = &mut self.frame {
            cur.pos += bytes.len() as u64;
        }
    }

    /// The current frame's payload is complete: report control frames.
    fn end_frame(&mut self, out: &mut Out<'_>) {
        let Some(f) = self.frame.take() else { return };
        match f.payload {
            Payload::Ping => out.event(WsEvent::Ping { len: f.len }),
            Payload::Pong => out.event(WsEvent::Pong { len: f.len }),
            Payload::Close => {
                let body = std::mem::take(&mut self.buf);
                let (code, reason) = match body.as_slice() {
                    _ if f.lost => (None, String::new()),
                    [] => (None, String::new()),
                    [_] => {
                        out.error(WsError::BadClosePayload);
                        (None, String::new())
                    }
                    [a, b, reason @ ..] => {
                        (Some(u16::from_be_bytes([*a, *b])), String::from_utf8_lossy(reason).into_owned())
                    }
                };
                out.event(WsEvent::Close { code, reason });
            }
            Payload::Mqtt | Payload::Skip => {}
        }
    }
}

#[cfg(test)]
mod tests;
