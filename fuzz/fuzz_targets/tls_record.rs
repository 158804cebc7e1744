//! TLS record framing (`layer::tls::record`): one side's stream in arbitrary chunks, with gaps
//! in gap mode (input format: `common/mod.rs`, one-sided).
//!
//! Checks: every record's fragment is exactly as long as its header says, and at most
//! `MAX_RECORD_LEN`; the bytes of records plus the bytes reported skipped never exceed the data bytes
//! fed (gaps or not); the buffer stays bounded (`HUNT_WINDOW` and one chunk, with the `Vec`'s doubling);
//! without gaps, the stream fed whole and fed in chunks frames the same records, and the same
//! events up to the first that starts a hunt (a bad or over-long header), after which a resync
//! may come sooner in chunks (a record that ends at a chunk's end confirms itself).
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::layer::Chunk;
use mqtt_keepalive::layer::tls::record::{Framed, HEADER_LEN, HUNT_WINDOW, MAX_RECORD_LEN, RecordReader};

#[path = "common/mod.rs"]
mod common;

#[derive(Debug, PartialEq, Eq)]
enum Got {
    Record(u8, u16, u16, Vec<u8>),
    Damaged(u16),
    Lost,
    Resync(u64),
    TooLong(u16),
    BadHeader,
}

struct Run {
    got: Vec<Got>,
    /// Bytes of records (header and fragment) and bytes reported skipped.
    accounted: u64,
    fed: u64,
}

fn run(stream: &[u8], plan: &[common::Step]) -> Run {
    let mut r = RecordReader::default();
    let mut run = Run { got: Vec::new(), accounted: 0, fed: 0 };
    let mut max_chunk = 0;
    common::chunks(stream, plan, |chunk| {
        if let Chunk::Data(d) = chunk {
            run.fed += d.len() as u64;
            max_chunk = max_chunk.max(d.len());
        }
        let got = &mut run.got;
        let accounted = &mut run.accounted;
        r.feed(chunk, &mut |f| {
            got.push(match f {
                Framed::Record(h, body) => {
                    assert_eq!(body.len(), usize::from(h.len), "{h:?}");
                    assert!(body.len() <= MAX_RECORD_LEN);
                    *accounted += (HEADER_LEN + body.len()) as u64;
                    Got::Record(h.content_type, h.version, h.len, body.to_vec())
                }
                Framed::Damaged(h) => Got::Damaged(h.len),
                Framed::Lost => Got::Lost,
                Framed::Resync { skipped } => {
                    *accounted += skipped;
                    Got::Resync(skipped)
                }
                Framed::TooLong(h) => {
                    assert!(usize::from(h.len) > MAX_RECORD_LEN);
                    Got::TooLong(h.len)
                }
                Framed::BadHeader => Got::BadHeader,
            })
        });
        assert!(r.buffered() <= 2 * (HUNT_WINDOW + max_chunk), "{} held", r.buffered());
    });
    assert!(run.accounted <= run.fed, "{} accounted of {} fed", run.accounted, run.fed);
    run
}

fuzz_target!(|data: &[u8]| {
    let Some((plan, stream, gaps)) = common::one_sided(data) else { return };
    let chunked = run(stream, &plan);
    if gaps {
        return;
    }
    let whole = run(stream, &[]);
    let hunt = |g: &Got| matches!(g, Got::BadHeader | Got::TooLong(_));
    let cut = |v: &[Got]| v.iter().position(hunt).map_or(v.len(), |i| i + 1);
    let (w, c) = (cut(&whole.got), cut(&chunked.got));
    assert_eq!(whole.got[..w], chunked.got[..c]);
});
