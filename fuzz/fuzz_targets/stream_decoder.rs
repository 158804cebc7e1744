//! Any byte stream, in any chunking, with gaps: the MQTT stream decoder never panics and keeps
//! its buffer bounded; a stream that decodes cleanly in one piece decodes the same in chunks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::mqtt::stream::{HUNT_LIMIT, StreamDecoder, StreamEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;
    for framed in [true, false] {
        let mut whole = Vec::new();
        StreamDecoder::new(framed).feed(bytes, &mut |e| whole.push(e));
        let mut d = StreamDecoder::new(framed);
        let mut chunked = Vec::new();
        for c in bytes.chunks(step) {
            d.feed(c, &mut |e| chunked.push(e));
            assert!(d.buffered() <= HUNT_LIMIT + 64 * 1024 + step);
        }
        let clean = whole.iter().all(|e| matches!(e, StreamEvent::Packet(_)));
        if framed && clean {
            assert_eq!(whole, chunked);
        }
        d.gap(u64::from(step as u8) * 7, &mut |_| {});
        d.feed(bytes, &mut |_| {});
    }
});
