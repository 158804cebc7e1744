//! Finding MQTT packet framing again in a byte stream joined mid-way or after a loss.
//!
//! Contract: [`find_boundary`] returns the first offset in a buffer where a chain of plausible
//! packets starts and runs to the end of the buffer with enough evidence (a PINGREQ, PINGRESP,
//! CONNECT or CONNACK counts double), asks for more bytes when a promising chain runs past the
//! end, or says there is none. Plausibility is judged from the fixed header and the shape of
//! the body's first bytes only. Random bytes are never taken for MQTT by luck (tested).

use super::header::{PacketType, check};

/// Result of a boundary search.
#[derive(Debug, PartialEq, Eq)]
pub enum Search {
    Found(usize),
    NeedMore,
    NotFound,
}

/// Evidence needed to accept a boundary: a PINGREQ, PINGRESP, CONNECT or CONNACK scores 2,
/// another plausible packet 1.
const CONFIRM_SCORE: u32 = 2;

/// Finds the first offset in `buf` where a chain of plausible packets starts and ends exactly at
/// the end of `buf` with enough evidence, or runs past it with twice that evidence. With `force`
/// (the buffer is full), a chain that runs past the end is accepted on the normal evidence.
pub fn find_boundary(buf: &[u8], force: bool) -> Search {
    for at in 0..buf.len() {
        let (score, end) = chain(&buf[at..]);
        match end {
            ChainEnd::Broken => continue,
            ChainEnd::Exact if score >= CONFIRM_SCORE => return Search::Found(at),
            ChainEnd::Exact => continue,
            ChainEnd::RunsPast if score >= 2 * CONFIRM_SCORE => return Search::Found(at),
            ChainEnd::RunsPast if force && score >= CONFIRM_SCORE => return Search::Found(at),
            ChainEnd::RunsPast if force => continue,
            ChainEnd::RunsPast => return Search::NeedMore,
        }
    }
    Search::NotFound
}

enum ChainEnd {
    Broken,
    Exact,
    RunsPast,
}

/// Follows plausible packets from the start of `s`; returns the evidence score and how it ended.
fn chain(s: &[u8]) -> (u32, ChainEnd) {
    let mut pos = 0usize;
    let mut score = 0;
    while pos < s.len() {
        match plausible(&s[pos..]) {
            Plausible::No => return (score, if score > 0 { ChainEnd::RunsPast } else { ChainEnd::Broken }),
            Plausible::NeedMore => return (score, ChainEnd::RunsPast),
            Plausible::Yes { len, strong } => {
                score += if strong { 2 } else { 1 };
                pos = pos.saturating_add(len);
            }
        }
    }
    (score, if pos == s.len() { ChainEnd::Exact } else { ChainEnd::RunsPast })
}

enum Plausible {
    No,
    NeedMore,
    Yes { len: usize, strong: bool },
}

/// Whether a packet plausibly starts at the front of `s`, judged by header and body shape.
fn plausible(s: &[u8]) -> Plausible {
    let h = match check(s) {
        Ok(Some(h)) => h,
        Ok(None) => return Plausible::NeedMore,
        Err(_) => return Plausible::No,
    };
    let body = &s[usize::from(h.header_len)..];
    let rem = h.remaining as usize;
    let need = |n: usize| body.len() < n.min(rem);
    let (ok, strong) = match h.packet_type {
        PacketType::PingReq | PacketType::PingResp => (rem == 0, true),
        PacketType::ConnAck => {
            if need(2) {
                return Plausible::NeedMore;
            }
            (rem >= 2 && body[0] <= 1, rem == 2 || rem >= 3)
        }
        PacketType::Connect => {
            if need(8) {
                return Plausible::NeedMore;
            }
            let named = body.starts_with(b"\x00\x04MQTT") || body.starts_with(b"\x00\x06MQIsdp");
            (named, true)
        }
        PacketType::Publish => {
            if need(2) {
                return Plausible::NeedMore;
            }
            let id_len = if h.flags & 0b0110 != 0 { 2 } else { 0 };
            let fits = rem >= 2 && usize::from(u16::from_be_bytes([body[0], body[1]])) + 2 + id_len <= rem;
            (fits, false)
        }
        PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp => (rem >= 2, false),
        PacketType::Subscribe => (rem >= 5, false),
        PacketType::Unsubscribe => (rem >= 4, false),
        PacketType::SubAck => (rem >= 3, false),
        PacketType::UnsubAck => (rem >= 2, false),
        PacketType::Disconnect | PacketType::Auth => (true, false),
        PacketType::Reserved => (false, false),
    };
    if ok { Plausible::Yes { len: usize::from(h.header_len) + rem, strong } } else { Plausible::No }
}
