//! The WebSocket layer (`layer::websocket::WsLayer`): both sides' segments, with gaps (input
//! format: `common/mod.rs`, two-sided; mode bit 0: joined mid-stream).
//!
//! Checks: the MQTT bytes handed up on a side never exceed the bytes fed on it, and equal its
//! `mqtt_bytes` count; the counts of errors, resyncs and skipped bytes match the events; the
//! layer holds at most `HUNT_LIMIT` and a frame header per side whatever the input; from the
//! first byte (not joined mid-stream), the same streams split differently give each side the
//! same output up to its first loss of framing (an unknown-length gap), as the module's
//! contract says, except that an error in an HTTP head may be reported later (the head is parsed
//! again only at its blank line or size limit) and a gap in the head may be reported in its
//! place.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::layer::websocket::frame::MAX_HEADER;
use mqtt_keepalive::layer::websocket::{HUNT_LIMIT, WsError, WsEvent, WsLayer};
use mqtt_keepalive::layer::{Chunk, Layer, LayerEvent};

#[path = "common/mod.rs"]
mod common;
use common::{Item, Recorder, Seg};

fn run(segs: &[Seg], mid_stream: bool) -> Recorder {
    let mut l = if mid_stream { WsLayer::mid_stream() } else { WsLayer::new() };
    let mut up = Recorder::default();
    let mut fed = [0u64; 2];
    for s in segs {
        if let Chunk::Data(d) = s.chunk() {
            fed[common::idx(s.side())] += d.len() as u64;
        }
        l.feed(s.side(), s.chunk(), &mut up);
        assert!(l.buffered() <= 2 * (HUNT_LIMIT + MAX_HEADER), "{} held", l.buffered());
    }
    for side in [Side::Client, Side::Broker] {
        let i = common::idx(side);
        let stats = l.stats(side);
        assert!(up.up_bytes[i] <= fed[i], "{side:?}: {} up of {} fed", up.up_bytes[i], fed[i]);
        assert_eq!(stats.mqtt_bytes, up.up_bytes[i]);
        let ws = || {
            up.items.iter().filter_map(move |it| match it {
                Item::Event(s, LayerEvent::WebSocket(e)) if *s == side => Some(e),
                _ => None,
            })
        };
        assert_eq!(stats.errors, ws().filter(|e| matches!(e, WsEvent::Error(_))).count() as u64);
        let resyncs: Vec<u64> =
            ws().filter_map(|e| if let WsEvent::Resync { skipped } = e { Some(*skipped) } else { None }).collect();
        assert_eq!(stats.resyncs, resyncs.len() as u64);
        assert_eq!(stats.skipped_bytes, resyncs.iter().sum::<u64>());
        assert!(stats.skipped_bytes <= fed[i]);
        for e in ws() {
            if let WsEvent::Close { reason, .. } = e {
                assert!(reason.len() <= 3 * 123);
            }
        }
    }
    up
}

/// What a side handed up until its framing was lost: its data joined (the other side's items
/// between its pieces are left out), any error in its HTTP head as one item (a gap in the head,
/// or the head's own error the gap came before).
#[derive(Debug, PartialEq)]
enum Out<'a> {
    HeadError,
    Data(Vec<u8>),
    Item(&'a Item),
}

fn framed(r: &Recorder, side: Side) -> Vec<Out<'_>> {
    let mut out: Vec<Out<'_>> = Vec::new();
    for item in &r.items {
        let s = match item {
            Item::Data(s, _) | Item::Gap(s, _) | Item::Event(s, _) => *s,
        };
        if s != side {
            continue;
        }
        match (item, out.last_mut()) {
            (Item::Data(_, d), Some(Out::Data(prev))) => prev.extend_from_slice(d),
            (Item::Data(_, d), _) => out.push(Out::Data(d.clone())),
            (
                Item::Event(
                    _,
                    LayerEvent::WebSocket(WsEvent::Error(
                        WsError::Head(_) | WsError::HeadTooLarge | WsError::GapInHandshake,
                    )),
                ),
                _,
            ) => out.push(Out::HeadError),
            _ => out.push(Out::Item(item)),
        }
        if common::unknown_gap(item) {
            break;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, segs)) = common::two_sided(data) else { return };
    let mid_stream = mode & 1 != 0;
    let split = run(&segs, mid_stream);
    if mid_stream {
        return;
    }
    let joined = run(&common::coalesced(&segs), false);
    for side in [Side::Client, Side::Broker] {
        let (a, b) = (framed(&split, side), framed(&joined, side));
        // The head phase parses a head again only at its blank line or its size limit: a head
        // error seen in the first chunk of the joined run may still be waiting in the split one.
        let behind = b.starts_with(&a) && b.get(a.len()) == Some(&Out::HeadError);
        assert!(a == b || behind, "{side:?}:\n split {a:?}\njoined {b:?}");
    }
});
