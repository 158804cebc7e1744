//! Properties over generated inputs (proptest; CI runs the default number of cases, and
//! `PROPTEST_CASES=100000 cargo test --release --test properties` runs them as a fuzzer):
//! nothing panics on any input, and any segmentation, reordering or duplication of the same TCP
//! byte stream gives the same MQTT packets and the same session verdicts.

mod common;

use common::*;
use mqtt_keepalive::capture::{LinkType, OfflineReader, PacketSource};
use mqtt_keepalive::decode::decode;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::flow::reassembly::{Chunk, Reassembler};
use mqtt_keepalive::flow::seq::SeqNumber;
use mqtt_keepalive::mqtt::{StreamDecoder, StreamEvent};
use mqtt_keepalive::synth::{Capture, Conn, Encap, mqtt};
use mqtt_keepalive::time::Timestamp;
use proptest::prelude::*;

/// Any capture bytes: read until the end or the first error; never panic.
fn read_all(bytes: Vec<u8>) {
    if let Ok(mut r) = OfflineReader::from_reader("fuzz".as_ref(), std::io::Cursor::new(bytes), None) {
        let mut n = 0;
        while let Ok(Some(p)) = r.next_packet() {
            let _ = decode(p.link, p.data);
            n += 1;
            if n > 10_000 {
                break;
            }
        }
    }
}

/// A valid pcap header followed by arbitrary bytes: exercises the record parser, not the magic.
fn pcap_with(tail: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    mqtt_keepalive::synth::write_pcap_header(&mut v, LinkType::ETHERNET, 65535);
    v.extend_from_slice(tail);
    v
}

/// A stream of valid MQTT packets of assorted types and sizes.
fn mqtt_stream() -> impl Strategy<Value = Vec<u8>> {
    let packet = prop_oneof![
        Just(mqtt::pingreq()),
        Just(mqtt::pingresp()),
        (any::<u16>(), "[a-z]{0,12}").prop_map(|(k, id)| mqtt::connect(4, k, &id, false, None)),
        (any::<u16>(), "[a-z]{0,12}").prop_map(|(k, id)| mqtt::connect(5, k, &id, true, Some(("u", "secret")))),
        (0u8..6, proptest::option::of(any::<u16>())).prop_map(|(c, k)| mqtt::connack(c, k)),
        ("[a-z/]{1,20}", proptest::collection::vec(any::<u8>(), 0..400)).prop_map(|(t, p)| mqtt::publish(&t, &p)),
        Just(mqtt::disconnect(None)),
    ];
    proptest::collection::vec(packet, 1..20).prop_map(|ps| ps.concat())
}

fn decode_chunks(bytes: &[u8], cuts: &[usize]) -> Vec<StreamEvent> {
    let mut d = StreamDecoder::new(true);
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let end = c.clamp(start, bytes.len());
        d.feed(&bytes[start..end], &mut |e| out.push(e));
        start = end;
    }
    out
}

proptest! {
    #[test]
    fn capture_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        read_all(bytes.clone());
        read_all(pcap_with(&bytes));
    }

    #[test]
    fn frame_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), link in prop_oneof![Just(0u32), Just(1), Just(101), Just(113), Just(276), any::<u32>()]) {
        let _ = decode(LinkType(link), &bytes);
    }

    /// eBPF ring-buffer records of any content, any kind and any length (a record the BPF
    /// program never writes, or one cut short) never panic the parser or the translation, and
    /// a record that parses goes through the pipeline.
    #[test]
    fn ebpf_records_never_panic(
        records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..40),
        kinds in proptest::collection::vec(0u8..9, 0..40),
    ) {
        use mqtt_keepalive::capture::ebpf::{event::Record, translate::Translator};
        let mut pipeline = mqtt_keepalive::pipeline::Pipeline::new(Default::default());
        let mut t = Translator::new(0);
        for (mut b, kind) in records.into_iter().zip(kinds.into_iter().chain(std::iter::repeat(1))) {
            if b.len() > 60 {
                b[60] = kind; // mostly known kinds, so records get past the header checks
                b[52] = if kind % 2 == 0 { 2 } else { 10 };
                b[53] = 0;
            }
            if let Ok(r) = Record::parse(&b) {
                t.apply(&r, &mut pipeline);
            }
        }
        t.release_due(Timestamp::from_secs_f64(1e9), &mut pipeline);
        pipeline.finish(&mut []).unwrap();
    }

    #[test]
    fn stream_decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..3000), framed: bool, gap in 0u64..100_000) {
        let mut d = StreamDecoder::new(framed);
        let mut n = 0;
        for chunk in bytes.chunks(97) {
            d.feed(chunk, &mut |_| n += 1);
        }
        d.gap(gap, &mut |_| n += 1);
        d.feed(&bytes, &mut |_| n += 1);
        prop_assert!(d.buffered() <= mqtt_keepalive::mqtt::stream::HUNT_LIMIT + 64 * 1024 + 5);
    }

    #[test]
    fn any_segmentation_gives_the_same_mqtt_packets(bytes in mqtt_stream(), mut cuts in proptest::collection::vec(0usize..10_000, 0..40)) {
        cuts.sort_unstable();
        let whole = decode_chunks(&bytes, &[]);
        prop_assert!(whole.iter().all(|e| matches!(e, StreamEvent::Packet(_))));
        prop_assert_eq!(decode_chunks(&bytes, &cuts), whole);
    }

    #[test]
    fn reassembly_of_any_reordering_and_duplication_gives_the_stream(
        data in proptest::collection::vec(any::<u8>(), 1..3000),
        mut cuts in proptest::collection::vec(0usize..3000, 0..30),
        order in proptest::collection::vec(any::<u32>(), 0..60),
        isn: u32,
    ) {
        cuts.push(data.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut segments = Vec::new();
        let mut start = 0;
        for c in cuts {
            let end = c.min(data.len());
            if end > start {
                segments.push((start, end));
                start = end;
            }
        }
        // Shuffle deterministically from `order`, and duplicate some.
        let mut schedule: Vec<(usize, usize)> = segments.clone();
        for (i, r) in order.iter().enumerate() {
            let a = i % schedule.len();
            let b = *r as usize % schedule.len();
            schedule.swap(a, b);
            if r % 5 == 0 {
                schedule.push(segments[*r as usize % segments.len()]);
            }
        }
        let mut reasm = Reassembler::new(1 << 20);
        reasm.on_syn(SeqNumber(isn));
        let mut out = Vec::new();
        for (s, e) in schedule {
            let seq = SeqNumber(isn).wrapping_add(1 + s as u32);
            reasm.on_segment(seq, &data[s..e], (e - s) as u32, &mut |c| match c {
                Chunk::Data(d) => out.extend_from_slice(d),
                Chunk::Gap(n) => panic!("no gap expected, got {n}"),
            });
        }
        prop_assert_eq!(out, data);
    }
}

/// A conversation whose segmentation and order on the wire are chosen by the property.
fn render(client_cuts: &[usize], reorder: bool, duplicate: bool) -> Vec<u8> {
    let client: std::net::SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let broker: std::net::SocketAddr = "192.0.2.2:1883".parse().unwrap();
    let t = |s: f64| Timestamp::from_nanos(1_700_000_000_000_000_000 + (s * 1e9) as i64);
    let mut cap = Capture::new(Encap::Ethernet);
    let mut conn = Conn::new(client, broker, 77, 99);
    conn.handshake(&mut cap, t(0.0));
    let script: Vec<(f64, Side, Vec<u8>)> = vec![
        (0.1, Side::Client, mqtt::connect(4, 3, "prop", true, None)),
        (0.1, Side::Broker, mqtt::connack(0, None)),
        (2.0, Side::Client, [mqtt::publish("a", &[1; 300]), mqtt::pingreq()].concat()),
        (2.001, Side::Broker, mqtt::pingresp()),
        (3.0, Side::Client, mqtt::publish("b", &[2; 50])),
    ];
    for (at, from, bytes) in script {
        let mut frames = Vec::new();
        let mut start = 0;
        let cuts: Vec<usize> = if from == Side::Client { client_cuts.to_vec() } else { vec![] };
        for c in cuts.into_iter().chain(std::iter::once(bytes.len())) {
            let end = c.clamp(start, bytes.len());
            if end == start {
                continue;
            }
            let piece = &bytes[start..end];
            let seq = if from == Side::Client { conn.client_seq } else { conn.broker_seq };
            frames.push(conn.frame_at(Encap::Ethernet, from, seq, piece));
            if from == Side::Client {
                conn.client_seq += piece.len() as u32;
            } else {
                conn.broker_seq += piece.len() as u32;
            }
            start = end;
        }
        if reorder {
            frames.reverse();
        }
        for f in frames {
            if duplicate {
                cap.raw(t(at), f.clone());
            }
            cap.raw(t(at), f);
        }
    }
    conn.fin(&mut cap, t(9.0), Side::Broker);
    conn.fin(&mut cap, t(9.0), Side::Client);
    cap.to_pcap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_segmentation_reordering_or_duplication_gives_the_same_verdicts(
        mut cuts in proptest::collection::vec(0usize..400, 0..12),
        reorder: bool,
        duplicate: bool,
    ) {
        cuts.sort_unstable();
        let reference = serde_json::to_value(&analyze_bytes(&render(&[], false, false)).0.sessions).unwrap();
        // Not two empty results: the reference has its one session, pinged and closed.
        prop_assert_eq!(reference.as_array().map(Vec::len), Some(1));
        prop_assert_eq!(&reference[0]["pingreq"], 1);
        let got = serde_json::to_value(&analyze_bytes(&render(&cuts, reorder, duplicate)).0.sessions).unwrap();
        prop_assert_eq!(got, reference);
    }
}
