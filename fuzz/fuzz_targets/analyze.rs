//! Any packet records after a valid pcap header, through the whole offline analysis (reader,
//! pipeline: decoder, reassembly, MQTT, sessions, records): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::capture::{LinkType, OfflineReader, PacketSource};
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::session::record::SessionRecord;
use mqtt_keepalive::sink::RecordSink;
use mqtt_keepalive::sink::report::Report;
use mqtt_keepalive::tracker::TrackerConfig;

fuzz_target!(|data: &[u8]| {
    let mut file = Vec::new();
    mqtt_keepalive::synth::write_pcap_header(&mut file, LinkType::RAW, 65535);
    file.extend_from_slice(data);
    let Ok(mut r) = OfflineReader::from_reader("fuzz".as_ref(), std::io::Cursor::new(file), None) else { return };
    // Every idle connection parked, so parking and waking are fuzzed too.
    let mut pipeline = Pipeline::new(TrackerConfig { active_limit: 0, ..TrackerConfig::default() });
    let mut report = Report::new();
    let mut records = RecordSink(|r: &SessionRecord| report.add(r));
    while let Ok(Some(p)) = r.next_packet() {
        pipeline.frame(p.ts, p.link, p.data, p.orig_len);
        let _ = pipeline.drain(&mut [&mut records]);
    }
    let _ = pipeline.finish(&mut [&mut records]);
});
