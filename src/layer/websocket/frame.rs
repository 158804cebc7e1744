//! WebSocket frame headers (RFC 6455 §5.2): parsing, plausibility and the hunt for a frame
//! boundary in a stream whose framing was lost.
//!
//! Contract: [`parse`] reads a header from the first bytes of a slice, or says it needs more;
//! it never looks past the header (at most [`MAX_HEADER`] bytes). [`check`] additionally judges
//! whether a header is one a real peer on that side would send (RSV bits clear, a defined opcode,
//! the mask bit the side must use, control frames final and at most 125 bytes, the shortest length
//! encoding, a length below 2^63), and rejects as early as the first byte allows. [`find_boundary`]
//! uses [`check`] on a chain of two frames to find where framing resumes.

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte masking key.
pub const MAX_HEADER: usize = 14;

/// Largest payload a frame found while hunting may announce: beyond it the header is taken for
/// noise (real MQTT-over-WebSocket frames are far smaller), so a false match cannot swallow the
/// stream for long.
pub const HUNT_MAX_PAYLOAD: u64 = 1 << 20;

/// Frame opcodes (RFC 6455 §5.2); 3-7 and 11-15 are reserved.
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// True for the six opcodes RFC 6455 defines.
pub fn defined(op: u8) -> bool {
    matches!(op, 0x0..=0x2 | 0x8..=0xA)
}

/// True for control opcodes (close, ping, pong and the reserved 11-15).
pub fn control(op: u8) -> bool {
    op & 0x8 != 0
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1-3 (bits 6-4 of the first byte); nonzero only with a negotiated extension.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// Payload length as announced (may be >= 2^63, which RFC 6455 forbids).
    pub len: u64,
    /// Bytes of the header itself (2 to 14).
    pub header_len: usize,
    /// The length used the shortest of the three encodings.
    pub minimal: bool,
}

/// Reads the header at the start of `b`; `None` when `b` holds only part of it.
pub fn parse(b: &[u8]) -> Option<FrameHeader> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, ext) = match b1 & 0x7F {
        126 => (u64::from(u16::from_be_bytes(b.get(2..4)?.try_into().ok()?)), 2),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 8),
        n => (u64::from(n), 0),
    };
    let header_len = 2 + ext + if masked { 4 } else { 0 };
    let mask = if masked { Some(b.get(2 + ext..header_len)?.try_into().ok()?) } else { None };
    let minimal = match ext {
        2 => len >= 126,
        8 => len > 0xFFFF,
        _ => true,
    };
    Some(FrameHeader { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0xF, mask, len, header_len, minimal })
}

/// How plausible the bytes at the start of a slice are as a frame header from one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not a header a conforming peer on that side would send.
    Implausible,
    /// Plausible so far; more bytes are needed to tell.
    Incomplete,
    /// A plausible header.
    Plausible(FrameHeader),
}

/// Judges the header at the start of `b` as one sent by the client (`from_client`) or the broker.
pub fn check(b: &[u8], from_client: bool) -> Check {
    let Some(&b0) = b.first() else { return Check::Incomplete };
    let op = b0 & 0xF;
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 || !defined(op) || (control(op) && !fin) {
        return Check::Implausible;
    }
    let Some(&b1) = b.get(1) else { return Check::Incomplete };
    if (b1 & 0x80 != 0) != from_client || (control(op) && b1 & 0x7F > 125) {
        return Check::Implausible;
    }
    match parse(b) {
        None => Check::Incomplete,
        Some(h) if !h.minimal || h.len > HUNT_MAX_PAYLOAD => Check::Implausible,
        Some(h) => Check::Plausible(h),
    }
}

/// Where framing may resume in bytes searched after it was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    /// A frame starts at this offset: its header is plausible and the header after it is too, or
    /// the frame ends exactly where the bytes do.
    Found(usize),
    /// Nothing before this offset can start a frame; what follows needs more bytes to tell
    /// (a partial header, or a plausible frame that runs past the end).
    Wait(usize),
}

/// Searches `b` for the first offset where a plausible frame starts and either the next header
/// is plausible too or the frame ends exactly at the end of `b` (captured segments usually end
/// where a frame does: waiting for the next frame would delay this one's MQTT bytes).
pub fn find_boundary(b: &[u8], from_client: bool) -> Boundary {
    for i in 0..b.len() {
        let h = match check(&b[i..], from_client) {
            Check::Implausible => continue,
            Check::Incomplete => return Boundary::Wait(i),
            Check::Plausible(h) => h,
        };
        // header_len <= 14 and len <= HUNT_MAX_PAYLOAD: no overflow.
        let end = i + h.header_len + h.len as usize;
        match end.cmp(&b.len()) {
            std::cmp::Ordering::Equal => return Boundary::Found(i),
            std::cmp::Ordering::Greater => return Boundary::Wait(i),
            std::cmp::Ordering::Less => match check(&b[end..], from_client) {
                Check::Implausible => continue,
                Check::Incomplete => return Boundary::Wait(i),
                Check::Plausible(_) => return Boundary::Found(i),
            },
        }
    }
    Boundary::Wait(b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_5_7_examples_parse() {
        // A single-frame unmasked text message: "Hello".
        let h = parse(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!((h.fin, h.opcode, h.mask, h.len, h.header_len), (true, opcode::TEXT, None, 5, 2));
        // A single-frame masked text message: "Hello", key 37 fa 21 3d.
        let h = parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]).unwrap();
        assert_eq!((h.mask, h.len, h.header_len), (Some([0x37, 0xfa, 0x21, 0x3d]), 5, 6));
        // A fragmented unmasked text message: "Hel" (not final), then "lo" (continuation, final).
        let h = parse(&[0x01, 0x03, 0x48, 0x65, 0x6c]).unwrap();
        assert_eq!((h.fin, h.opcode, h.len), (false, opcode::TEXT, 3));
        let h = parse(&[0x80, 0x02, 0x6c, 0x6f]).unwrap();
        assert_eq!((h.fin, h.opcode, h.len), (true, opcode::CONTINUATION, 2));
        // Unmasked ping with body "Hello"; masked pong answering it.
        assert_eq!(parse(&[0x89, 0x05]).unwrap().opcode, opcode::PING);
        assert_eq!(parse(&[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d]).unwrap().opcode, opcode::PONG);
        // 256 bytes binary in a single unmasked frame: 16-bit length.
        let h = parse(&[0x82, 0x7E, 0x01, 0x00]).unwrap();
        assert_eq!((h.opcode, h.len, h.header_len, h.minimal), (opcode::BINARY, 256, 4, true));
        // 64 KiB binary in a single unmasked frame: 64-bit length.
        let h = parse(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]).unwrap();
        assert_eq!((h.len, h.header_len, h.minimal), (65536, 10, true));
    }

    #[test]
    fn partial_headers_need_more() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(parse(&full[..n]), None, "{n} bytes");
        }
        assert_eq!(parse(&full).unwrap().header_len, 14);
    }

    #[test]
    fn check_rejects_what_a_peer_would_not_send() {
        let masked = [0x82, 0x81, 1, 2, 3, 4, 0];
        assert!(matches!(check(&masked, true), Check::Plausible(_)));
        assert_eq!(check(&masked, false), Check::Implausible, "a masked broker frame");
        assert_eq!(check(&[0x82, 0x01, 0], true), Check::Implausible, "an unmasked client frame");
        assert_eq!(check(&[0xC2], true), Check::Implausible, "RSV1 set");
        assert_eq!(check(&[0x83], true), Check::Implausible, "reserved opcode 3");
        assert_eq!(check(&[0x8B], true), Check::Implausible, "reserved control opcode 11");
        assert_eq!(check(&[0x09], true), Check::Implausible, "a fragmented ping");
        assert_eq!(check(&[0x89, 0xFE], true), Check::Implausible, "a 126-byte ping");
        assert_eq!(check(&[0x82, 0x7E, 0x00, 0x10], false), Check::Implausible, "16 bits for 16 bytes");
        let huge = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(check(&huge, false), Check::Implausible, "a 2^63 length");
        assert_eq!(check(&[0x82], true), Check::Incomplete);
    }

    #[test]
    fn boundary_needs_a_chain_of_two() {
        // Noise, then two broker frames of one byte each (aedes's CONNACK style).
        let b = [0xFF, 0x42, 0x82, 0x01, 0x20, 0x82, 0x01, 0x02];
        assert_eq!(find_boundary(&b, false), Boundary::Found(2));
        // A frame running past the end: wait at its start.
        assert_eq!(find_boundary(&[0x00, 0x82, 0x05, 1, 2], false), Boundary::Wait(1));
        // A frame ending exactly at the end is taken.
        assert_eq!(find_boundary(&[0x00, 0x82, 0x02, 1, 2], false), Boundary::Found(1));
        // A plausible header followed by an implausible one is skipped; a partial next header waits.
        assert_eq!(find_boundary(&[0x82, 0x00, 0xFF, 0x82, 0x00, 0x82], false), Boundary::Wait(3));
        assert_eq!(find_boundary(&[0x82, 0x00, 0xFF, 0x82, 0x00, 0x82, 0x00], false), Boundary::Found(3));
        // Nothing at all.
        assert_eq!(find_boundary(b"GET / HTTP/1.1\r\n", true), Boundary::Wait(16));
    }
}
