//! Any bytes cut into eBPF ring-buffer records (the first byte of each piece picks its length):
//! the record parser and the translation into the pipeline never panic, whatever the kinds,
//! addresses, lengths and loss counts claim.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::capture::ebpf::{event::Record, translate::Translator};
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let mut pipeline = Pipeline::new(Default::default());
    let mut t = Translator::new(0);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (usize::from(len) + 80).min(tail.len());
        let (record, next) = tail.split_at(n);
        if let Ok(r) = Record::parse(record) {
            t.apply(&r, &mut pipeline);
        }
        rest = next;
    }
    t.release_due(Timestamp::from_secs_f64(1e9), &mut pipeline);
    pipeline.finish(&mut []).unwrap();
});
