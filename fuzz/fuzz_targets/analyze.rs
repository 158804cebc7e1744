//! Any packet records after a valid pcap header, through the whole offline analysis (reader,
//! decoder, reassembly, MQTT, sessions, report): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::capture::{LinkType, OfflineReader, PacketSource};
use mqtt_keepalive::sink::report::Report;
use mqtt_keepalive::tracker::{Tracker, TrackerConfig};

fuzz_target!(|data: &[u8]| {
    let mut file = Vec::new();
    mqtt_keepalive::synth::write_pcap_header(&mut file, LinkType::RAW, 65535);
    file.extend_from_slice(data);
    let Ok(mut r) = OfflineReader::from_reader("fuzz".as_ref(), std::io::Cursor::new(file), None) else { return };
    // Every idle connection parked, so parking and waking are fuzzed too.
    let mut tracker = Tracker::new(TrackerConfig { active_limit: 0, ..TrackerConfig::default() });
    let mut report = Report::new();
    let mut clock = mqtt_keepalive::time::Timestamp::from_nanos(0);
    while let Ok(Some(p)) = r.next_packet() {
        clock = clock.max(p.ts);
        if let Ok(seg) = mqtt_keepalive::decode::decode(p.link, p.data) {
            tracker.on_segment(clock, &seg);
        }
        tracker.events().clear();
        for r in tracker.finished().drain(..) {
            report.add(&r);
        }
    }
    tracker.finish(clock);
    for r in tracker.finished().drain(..) {
        report.add(&r);
    }
});
