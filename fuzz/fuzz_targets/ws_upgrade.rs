//! The WebSocket opening handshake (`layer::websocket::http`, and the layer's head phase): byte 0
//! = flags (bit 0: the client's side; bit 1: a header flood follows the bytes; bits 2-7: a chunk
//! size and a cut point), then an HTTP head and whatever follows it.
//!
//! Checks: a complete head parses the same from exactly its own bytes, and any shorter prefix of
//! it is incomplete (never an error); an error stays an error when more bytes come; kept values
//! are cut (`MAX_VALUE` bytes before lossy UTF-8); a request `parse_request` takes for an
//! upgrade is one `sniff_upgrade` says yes to (when the request line comes first);
//! `sniff_upgrade` never changes its answer once it gave one; the layer's head phase holds at
//! most `MAX_HEAD` bytes, reports what `parse_request` / `parse_response` read of the same bytes,
//! and after a flood of header lines reports an error and stays bounded (`HUNT_LIMIT`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::layer::websocket::frame::MAX_HEADER;
use mqtt_keepalive::layer::websocket::http::{MAX_VALUE, parse_request, parse_response};
use mqtt_keepalive::layer::websocket::{HUNT_LIMIT, MAX_HEAD, Sniff, WsError, WsEvent, WsLayer, sniff_upgrade};
use mqtt_keepalive::layer::{Chunk, Layer, LayerEvent};

#[path = "common/mod.rs"]
mod common;

fn parsers(b: &[u8], cut: usize) {
    let more = [b, b"\r\n\r\n".as_slice()].concat();
    match parse_request(b) {
        Ok(Some((req, len))) => {
            assert!(len <= b.len());
            assert_eq!(parse_request(&b[..len]), Ok(Some((req.clone(), len))));
            assert_eq!(parse_request(&b[..cut % len]), Ok(None), "a prefix of {} of {len}", cut % len);
            assert!(req.path.len() <= 3 * MAX_VALUE && req.protocol.as_ref().is_none_or(|p| p.len() <= 3 * MAX_VALUE));
            // httparse skips empty lines before the request line (RFC 9112 §2.2); the sniffer,
            // like transport detection, wants the request line first.
            if len <= MAX_HEAD && b.starts_with(b"GET ") {
                assert_eq!(sniff_upgrade(&b[..len]), Sniff::Yes, "an upgrade request not sniffed");
            }
        }
        Ok(None) => {}
        Err(e) => assert_eq!(parse_request(&more).map(|_| ()), Err(e)),
    }
    match parse_response(b) {
        Ok(Some((res, len))) => {
            assert!(len <= b.len());
            assert_eq!(parse_response(&b[..len]), Ok(Some((res.clone(), len))));
            assert_eq!(parse_response(&b[..cut % len]), Ok(None), "a prefix of {} of {len}", cut % len);
            for v in [Some(&res.reason), res.protocol.as_ref(), res.extensions.as_ref()].into_iter().flatten() {
                assert!(v.len() <= 3 * MAX_VALUE);
            }
        }
        Ok(None) => {}
        Err(e) => assert_eq!(parse_response(&more).map(|_| ()), Err(e)),
    }
    // sniff_upgrade: NeedMore, then one answer for good.
    let full = sniff_upgrade(b);
    let step = (b.len() / 64).max(1);
    for n in (0..b.len()).step_by(step).chain([cut % (b.len() + 1)]) {
        let s = sniff_upgrade(&b[..n]);
        assert!(s == Sniff::NeedMore || s == full, "{s:?} at {n}, {full:?} at {}", b.len());
    }
}

fn layer(b: &[u8], from_client: bool, step: usize, flood: bool) {
    let side = if from_client { Side::Client } else { Side::Broker };
    let mut l = WsLayer::new();
    let mut up = common::Recorder::default();
    let mut fed = 0;
    let mut feed = |l: &mut WsLayer, up: &mut common::Recorder, d: &[u8]| {
        l.feed(side, Chunk::Data(d), up);
        fed += d.len();
        let head_done = up.items.iter().any(|i| matches!(i, common::Item::Event(..)));
        let bound = if head_done { HUNT_LIMIT + MAX_HEADER } else { MAX_HEAD };
        assert!(l.buffered() <= bound, "{} held after {fed} bytes", l.buffered());
    };
    for c in b.chunks(step) {
        feed(&mut l, &mut up, c);
    }
    // The first head event is what the parser reads of the same bytes.
    let first = up.items.iter().find_map(|i| match i {
        common::Item::Event(_, LayerEvent::WebSocket(e)) => Some(e.clone()),
        _ => None,
    });
    let held = &b[..b.len().min(MAX_HEAD)];
    match &first {
        Some(WsEvent::Request(r)) => assert_eq!(parse_request(held).unwrap().unwrap().0, *r),
        Some(WsEvent::Accepted { protocol, extensions }) => {
            let res = parse_response(held).unwrap().unwrap().0;
            assert_eq!((res.status, &res.protocol, &res.extensions), (101, protocol, extensions));
        }
        Some(WsEvent::Refused { status, reason }) => {
            let res = parse_response(held).unwrap().unwrap().0;
            assert_eq!((&res.status, &res.reason), (status, reason));
        }
        Some(WsEvent::Error(WsError::Head(e))) => {
            let got = if from_client { parse_request(held).map(|_| ()) } else { parse_response(held).map(|_| ()) };
            assert_eq!(got, Err(*e));
        }
        _ => {}
    }
    if flood && first.is_none() {
        let line = b"X-Flood: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n";
        for _ in 0..(MAX_HEAD / line.len() + 2) {
            feed(&mut l, &mut up, line);
        }
        // No blank line can end the head now: past MAX_HEAD bytes the layer must have reported
        // an error and stopped holding the head.
        let error =
            up.items.iter().any(|i| matches!(i, common::Item::Event(_, LayerEvent::WebSocket(WsEvent::Error(_)))));
        assert!(error, "a head flood and no error: {:?}", up.items);
        assert!(l.buffered() <= HUNT_LIMIT + MAX_HEADER);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, b)) = data.split_first() else { return };
    let from_client = flags & 1 != 0;
    let flood = flags & 2 != 0;
    let step = usize::from(flags >> 2) * 7 + 1;
    parsers(b, usize::from(flags) * 31 + 1);
    layer(b, from_client, step, flood);
});
