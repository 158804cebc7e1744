//! Any bytes as a capture file: the reader and the frame decoder never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::capture::{OfflineReader, PacketSource};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = OfflineReader::from_reader("fuzz".as_ref(), std::io::Cursor::new(data.to_vec()), None) {
        while let Ok(Some(p)) = r.next_packet() {
            let _ = mqtt_keepalive::decode::decode(p.link, p.data);
        }
    }
});
