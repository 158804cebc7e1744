//! WebSocket frame headers (`layer::websocket::frame`) and the mid-stream sniffer: byte 0 bit 0
//! = the client's side, then any bytes.
//!
//! Checks: `parse` reads the header's fields from the bytes, never looks past the header (the
//! header alone parses the same; one byte less is not enough), and needs at most 14 bytes;
//! `check` only calls plausible what RFC 6455 allows from that side, agrees with `parse`, and
//! never changes its mind as bytes are added (implausible stays implausible, plausible stays the
//! same header); `find_boundary` returns the first offset where a plausible frame is followed by
//! a plausible header or ends with the bytes, and waits only where that cannot be told yet;
//! `sniff_frame` agrees with `check`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::layer::websocket::frame::{
    Boundary, Check, HUNT_MAX_PAYLOAD, MAX_HEADER, check, control, defined, find_boundary, parse,
};
use mqtt_keepalive::layer::websocket::{Sniff, sniff_frame};

fn parse_props(b: &[u8]) {
    let Some(h) = parse(b) else {
        assert!(b.len() < MAX_HEADER, "{} bytes are not a header", b.len());
        return;
    };
    assert!((2..=MAX_HEADER).contains(&h.header_len) && h.header_len <= b.len());
    assert_eq!(parse(&b[..h.header_len]), Some(h));
    assert_eq!(parse(&b[..h.header_len - 1]), None);
    assert_eq!((h.fin, h.rsv, h.opcode), (b[0] & 0x80 != 0, (b[0] >> 4) & 7, b[0] & 0xF));
    assert_eq!(h.mask.is_some(), b[1] & 0x80 != 0);
    let ext = h.header_len - 2 - if h.mask.is_some() { 4 } else { 0 };
    let minimal = match ext {
        0 => h.len < 126,
        2 => h.len >= 126,
        8 => h.len > 0xFFFF,
        _ => panic!("{ext} length bytes"),
    };
    assert_eq!(h.minimal, minimal);
}

/// What `check` says of each prefix never contradicts what it said of a shorter one.
fn check_props(b: &[u8], from_client: bool) -> Check {
    let mut last = Check::Incomplete;
    for n in 0..=b.len().min(MAX_HEADER + 1) {
        let c = check(&b[..n], from_client);
        match (last, c) {
            (Check::Incomplete, _) => {}
            (Check::Implausible, Check::Implausible) => {}
            (Check::Plausible(a), Check::Plausible(z)) => assert_eq!(a, z),
            (a, z) => panic!("{a:?} then {z:?} with {n} bytes"),
        }
        last = c;
    }
    let c = check(b, from_client);
    match c {
        Check::Plausible(h) => {
            assert_eq!(parse(b), Some(h));
            assert!(h.rsv == 0 && defined(h.opcode) && h.minimal && h.len <= HUNT_MAX_PAYLOAD);
            assert_eq!(h.mask.is_some(), from_client);
            assert!(!control(h.opcode) || (h.fin && h.len <= 125));
        }
        Check::Incomplete => assert_eq!(parse(b), None),
        Check::Implausible => {}
    }
    c
}

/// Whether a frame starts at `i` and is confirmed: Some(true) found, Some(false) not a start,
/// None: cannot tell yet.
fn starts(b: &[u8], i: usize, from_client: bool) -> Option<bool> {
    match check(&b[i..], from_client) {
        Check::Implausible => Some(false),
        Check::Incomplete => None,
        Check::Plausible(h) => {
            let end = i + h.header_len + h.len as usize;
            if end == b.len() {
                return Some(true);
            }
            match check(b.get(end..)?, from_client) {
                Check::Implausible => Some(false),
                Check::Incomplete => None,
                Check::Plausible(_) => Some(true),
            }
        }
    }
}

fn boundary_props(b: &[u8], from_client: bool) {
    let (at, found) = match find_boundary(b, from_client) {
        Boundary::Found(i) => (i, true),
        Boundary::Wait(i) => (i, false),
    };
    assert!(at <= b.len());
    for j in 0..at {
        assert_eq!(starts(b, j, from_client), Some(false), "offset {j} skipped before {at}");
    }
    if found {
        assert_eq!(starts(b, at, from_client), Some(true));
    } else if at < b.len() {
        assert_eq!(starts(b, at, from_client), None, "waits at {at}");
    }
}

fn sniff_props(b: &[u8], from_client: bool, c: Check) {
    let s = sniff_frame(b, from_client);
    match c {
        Check::Implausible => assert_eq!(s, Sniff::No),
        Check::Incomplete => assert_eq!(s, Sniff::NeedMore),
        Check::Plausible(h) => {
            let end = h.header_len + h.len as usize;
            let next_bad = b.get(end..).is_some_and(|n| !n.is_empty() && check(n, from_client) == Check::Implausible);
            assert_eq!(s, if next_bad { Sniff::No } else { Sniff::Yes });
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((_, b)) = data.split_first() else { return };
    parse_props(b);
    for from_client in [true, false] {
        let c = check_props(b, from_client);
        sniff_props(b, from_client, c);
        boundary_props(b, from_client);
    }
});
