//! Any frame on any supported link type: decode never panics, and a segment's payload is
//! never longer than its wire length.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::capture::LinkType;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link = [0u32, 1, 12, 101, 108, 113, 228, 229, 276][usize::from(sel) % 9];
    if let Ok(seg) = mqtt_keepalive::decode::decode(LinkType(link), frame) {
        assert!(seg.payload.len() as u64 <= u64::from(seg.wire_len));
    }
});
