//! The TLS layer (`layer::tls::TlsLayer`), with the fixtures' key logs, or the whole detecting
//! layer stack (TLS, WebSocket, wss): both sides' segments, with gaps (input format:
//! `common/mod.rs`, two-sided). Mode bit 0: the stack (bit 2: joined mid-stream) instead of the
//! TLS layer alone; bit 1: no key log.
//!
//! Checks: the plaintext handed up on a side never exceeds the bytes fed on it; the layer's
//! counts match what it reported (decrypted bytes = bytes handed up; errors, alerts, resyncs,
//! opaque, failed and lost records = their events); it holds a bounded number of bytes (two
//! record-hunt windows and one segment per side, a kept hello, one record of scratch); the TLS
//! layer alone, fed the same streams split differently, reports the same up to the first loss
//! of record framing (a bad or over-long header, an unknown-length gap, a resync).
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::layer::tls::handshake::MAX_KEPT_BODY;
use mqtt_keepalive::layer::tls::record::HUNT_WINDOW;
use mqtt_keepalive::layer::tls::{KeyLog, MAX_RECORD_LEN, TlsError, TlsEvent, TlsLayer};
use mqtt_keepalive::layer::websocket::HUNT_LIMIT;
use mqtt_keepalive::layer::{Chunk, Layer, LayerConfig, LayerEvent, Stack};

#[path = "common/mod.rs"]
mod common;
use common::{Item, Recorder, Seg};

fn keylog() -> Arc<KeyLog> {
    static LOG: OnceLock<Arc<KeyLog>> = OnceLock::new();
    LOG.get_or_init(|| {
        let text = [
            include_str!("../../fixtures/tls/tls12-aes256-healthy-pings.keys"),
            include_str!("../../fixtures/tls/tls12-chacha-healthy-pings.keys"),
            include_str!("../../fixtures/tls/tls12-keepalive5-silent.keys"),
            include_str!("../../fixtures/tls/tls13-client-killed.keys"),
            include_str!("../../fixtures/tls/tls13-healthy-pings.keys"),
            include_str!("../../fixtures/tls/tls13-keepalive5-silent.keys"),
            include_str!("../../fixtures/tls/tls13-mqtt5-server-keepalive.keys"),
            include_str!("../../fixtures/ws/wss-healthy-pings.keys"),
            include_str!("../../fixtures/ws/wss-keepalive5-silent.keys"),
            include_str!("../../fixtures/ws/wss12-close-frame.keys"),
        ]
        .join("\n");
        Arc::new(KeyLog::parse(&text))
    })
    .clone()
}

fn tls_events(up: &Recorder) -> impl Iterator<Item = &TlsEvent> {
    up.items.iter().filter_map(|i| match i {
        Item::Event(_, LayerEvent::Tls(e)) => Some(e),
        _ => None,
    })
}

/// Feeds the segments; returns what came up, with the TLS layer's counts checked when `layer`.
fn run(segs: &[Seg], keys: Option<Arc<KeyLog>>, stack: Option<Stack>) -> Recorder {
    let cfg = LayerConfig { keylog: keys.clone() };
    let mut tls = TlsLayer::new(keys);
    let direct = stack.is_none();
    let mut stack = stack;
    let mut up = Recorder::default();
    let mut fed = [0u64; 2];
    let mut max_seg = 0;
    for s in segs {
        if let Chunk::Data(d) = s.chunk() {
            fed[common::idx(s.side())] += d.len() as u64;
            max_seg = max_seg.max(d.len());
        }
        let held = match &mut stack {
            Some(st) => {
                st.feed(s.side(), s.chunk(), &mut up, &cfg);
                st.buffered()
            }
            None => {
                tls.feed(s.side(), s.chunk(), &mut up);
                tls.buffered()
            }
        };
        let tls_bound = 2 * (2 * (HUNT_WINDOW + max_seg) + MAX_KEPT_BODY + 4) + MAX_RECORD_LEN;
        // The stack adds a WebSocket layer inside TLS: per side, a hunt and a frame header.
        let bound = if direct { tls_bound } else { tls_bound + 2 * (HUNT_LIMIT + 14) };
        assert!(held <= bound, "{held} held, segments up to {max_seg}");
    }
    for i in 0..2 {
        assert!(up.up_bytes[i] <= fed[i], "side {i}: {} up of {} fed", up.up_bytes[i], fed[i]);
    }
    if direct {
        let st = *tls.stats();
        let count = |f: fn(&TlsEvent) -> bool| tls_events(&up).filter(|e| f(e)).count() as u64;
        assert_eq!(st.decrypted_bytes, up.up_bytes[0] + up.up_bytes[1]);
        assert_eq!(st.errors, count(|e| matches!(e, TlsEvent::Error(_))));
        assert_eq!(st.alerts, count(|e| matches!(e, TlsEvent::Alert { .. })));
        assert_eq!(st.resyncs, count(|e| matches!(e, TlsEvent::Resync { .. })));
        assert_eq!(st.opaque, count(|e| matches!(e, TlsEvent::Opaque { .. })));
        assert_eq!(st.decrypt_failures, count(|e| matches!(e, TlsEvent::DecryptFailed { .. })));
        assert_eq!(st.lost_records, count(|e| matches!(e, TlsEvent::RecordLost { .. })));
        assert!(st.decrypted + st.opaque + st.decrypt_failures <= st.records);
    }
    up
}

fn framing_lost(item: &Item) -> bool {
    common::unknown_gap(item)
        || matches!(
            item,
            Item::Event(
                _,
                LayerEvent::Tls(
                    TlsEvent::Resync { .. }
                        | TlsEvent::Error(TlsError::BadRecordHeader | TlsError::RecordTooLong { .. })
                )
            )
        )
}

fuzz_target!(|data: &[u8]| {
    let Some((mode, segs)) = common::two_sided(data) else { return };
    let keys = (mode & 2 == 0).then(keylog);
    if mode & 1 != 0 {
        let stack = if mode & 4 != 0 { Stack::DetectMidStream } else { Stack::Detect };
        run(&segs, keys, Some(stack));
        return;
    }
    let split = run(&segs, keys.clone(), None);
    let joined = run(&common::coalesced(&segs), keys, None);
    assert_eq!(split.prefix(framing_lost), joined.prefix(framing_lost));
});
