//! Segments of one byte stream in any order, with duplicates and overlaps: reassembly yields
//! exactly the stream, once, when every byte arrives; and never panics on arbitrary segments.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::flow::reassembly::{Chunk, Reassembler};
use mqtt_keepalive::flow::seq::SeqNumber;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let isn = u32::from_le_bytes(data[..4].try_into().unwrap());
    let (plan, stream) = data[4..].split_at((data.len() - 4) / 3);
    if stream.is_empty() {
        return;
    }
    // Each pair of plan bytes is a segment [start, start + len) of the stream.
    let mut segments: Vec<(usize, usize)> = plan
        .chunks(2)
        .map(|p| {
            let start = usize::from(p[0]) * stream.len() / 256;
            let len = 1 + usize::from(*p.get(1).unwrap_or(&0)) % 64;
            (start, (start + len).min(stream.len()))
        })
        .collect();
    segments.push((0, stream.len())); // guarantees every byte arrives at least once
    let mut r = Reassembler::new(1 << 20);
    r.on_syn(SeqNumber(isn));
    let mut out = Vec::new();
    for (s, e) in segments {
        let seq = SeqNumber(isn).wrapping_add(1 + s as u32);
        r.on_segment(seq, &stream[s..e], (e - s) as u32, &mut |c| match c {
            Chunk::Data(d) => out.extend_from_slice(d),
            Chunk::Gap(n) => panic!("gap of {n} bytes with every byte delivered"),
        });
    }
    r.flush(&mut |_| {});
    assert_eq!(out, stream);
    // Arbitrary segments and acks on a fresh reassembler: no panic, bounded store.
    let mut r = Reassembler::new(4096);
    for w in data.windows(6).step_by(3) {
        let seq = SeqNumber(u32::from_le_bytes(w[..4].try_into().unwrap()));
        let len = usize::from(w[4]) % 200;
        r.on_segment(seq, &data[..len.min(data.len())], len as u32 + u32::from(w[5] % 3), &mut |_| {});
        r.on_peer_ack(seq.wrapping_add(u32::from(w[5])), &mut |_| {});
        assert!(r.buffered() <= 4096);
    }
});
