//! TLS record framing over one side's TCP stream.
//!
//! Contract: [`RecordReader`] is fed one side's in-order stream ([`Chunk`]s) and yields whole
//! records ([`Framed::Record`]: 5-byte header and fragment, contiguous, however the record was
//! split across segments) in order. Memory is bounded: a header declaring more than
//! [`MAX_RECORD_LEN`] bytes is a counted error ([`Framed::TooLong`]), never an allocation, and
//! the reader then hunts for the next plausible header. A gap inside a record whose header was
//! seen yields [`Framed::Damaged`] (the record is lost but its length, and so the next record
//! boundary, is known); a gap anywhere else loses the framing ([`Framed::Lost`]): the reader
//! hunts for a plausible header — known content type, version 3.x, length in bounds, confirmed
//! by the header that follows it when that is present — and reports the bytes it skipped
//! ([`Framed::Resync`]). Hunting holds at most [`HUNT_WINDOW`] bytes.

use super::Sniff;
use crate::flow::reassembly::Chunk;

/// The largest record fragment allowed (RFC 5246 §6.2.3: 2^14 + 2048).
pub const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Record header bytes.
pub const HEADER_LEN: usize = 5;
/// Bytes held while hunting for a header after a gap (one largest record and the next header).
pub const HUNT_WINDOW: usize = MAX_RECORD_LEN + 2 * HEADER_LEN;

/// Record content types (RFC 8446 §5.1).
pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;
pub const HEARTBEAT: u8 = 24;

/// A record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub content_type: u8,
    pub version: u16,
    pub len: u16,
}

impl Header {
    /// The header's 5 bytes.
    pub fn bytes(&self) -> [u8; 5] {
        let v = self.version.to_be_bytes();
        let l = self.len.to_be_bytes();
        [self.content_type, v[0], v[1], l[0], l[1]]
    }
}

/// What a record header at the start of `bytes` looks like.
#[derive(Debug, PartialEq, Eq)]
enum HeaderCheck {
    Ok(Header),
    /// Fewer than 5 bytes, consistent so far.
    Short,
    /// Not a record header.
    Bad,
    /// A record header declaring more than [`MAX_RECORD_LEN`].
    TooLong(Header),
}

fn check_header(bytes: &[u8]) -> HeaderCheck {
    let plausible_type = |t: u8| (CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&t);
    match bytes {
        [t, ..] if !plausible_type(*t) => HeaderCheck::Bad,
        [_, major, ..] if *major != 3 => HeaderCheck::Bad,
        [_, _, minor, ..] if *minor > 4 => HeaderCheck::Bad,
        [t, major, minor, hi, lo, ..] => {
            let h = Header {
                content_type: *t,
                version: u16::from_be_bytes([*major, *minor]),
                len: u16::from_be_bytes([*hi, *lo]),
            };
            if h.len as usize > MAX_RECORD_LEN { HeaderCheck::TooLong(h) } else { HeaderCheck::Ok(h) }
        }
        _ => HeaderCheck::Short,
    }
}

/// Does `bytes` start with TLS records? A plausible header, and when the bytes reach it, a
/// plausible next header right after the first record.
pub fn sniff_record(bytes: &[u8]) -> Sniff {
    match check_header(bytes) {
        HeaderCheck::Short => Sniff::NeedMore,
        HeaderCheck::Bad | HeaderCheck::TooLong(_) => Sniff::No,
        HeaderCheck::Ok(h) if h.len == 0 => Sniff::No,
        HeaderCheck::Ok(h) => match bytes.get(HEADER_LEN + h.len as usize..) {
            None | Some([]) => Sniff::Yes,
            Some(next) => match check_header(next) {
                HeaderCheck::Ok(_) | HeaderCheck::Short => Sniff::Yes,
                _ => Sniff::No,
            },
        },
    }
}

/// Does `bytes` start a TLS connection (a handshake record holding a ClientHello)?
pub fn sniff_client_hello(bytes: &[u8]) -> Sniff {
    match check_header(bytes) {
        HeaderCheck::Short => Sniff::NeedMore,
        HeaderCheck::Ok(h) if h.content_type == HANDSHAKE && h.len >= 4 => match bytes.get(HEADER_LEN) {
            None => Sniff::NeedMore,
            Some(&1) => Sniff::Yes,
            Some(_) => Sniff::No,
        },
        _ => Sniff::No,
    }
}

/// What the reader yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// A whole record.
    Record(Header, &'a mut [u8]),
    /// A record whose header was seen but part of whose fragment a gap lost.
    Damaged(Header),
    /// A gap where no record length covers it: the framing is lost until a resync.
    Lost,
    /// A plausible header was found after `skipped` bytes of hunting.
    Resync { skipped: u64 },
    /// A header declaring more than [`MAX_RECORD_LEN`] bytes (hostile or not TLS).
    TooLong(Header),
    /// Bytes that are not a record header where one was due.
    BadHeader,
}

/// One side's record framing; see the module doc.
#[derive(Debug, Default)]
pub struct RecordReader {
    buf: Vec<u8>,
    /// Fragment bytes of a damaged record still to skip.
    skip: usize,
    hunting: bool,
    /// Bytes skipped since the hunt began.
    hunted: u64,
}

impl RecordReader {
    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// True while looking for a header after a gap.
    pub fn is_hunting(&self) -> bool {
        self.hunting
    }

    /// Feeds the next chunk; `out` gets what it framed.
    pub fn feed(&mut self, chunk: Chunk<'_>, out: &mut dyn FnMut(Framed<'_>)) {
        match chunk {
            Chunk::Data(d) => self.data(d, out),
            Chunk::Gap(n) => self.gap(n, out),
        }
    }

    fn gap(&mut self, n: u64, out: &mut dyn FnMut(Framed<'_>)) {
        if self.skip > 0 {
            if n <= self.skip as u64 {
                self.skip -= n as usize;
                return;
            }
            self.skip = 0;
            return self.lose(out);
        }
        if !self.hunting
            && let HeaderCheck::Ok(h) = check_header(&self.buf)
        {
            let have = self.buf.len() - HEADER_LEN;
            let left = h.len as usize - have;
            if n <= left as u64 {
                // The gap falls inside this record: it is lost, the next boundary is known.
                self.buf.clear();
                self.skip = left - n as usize;
                out(Framed::Damaged(h));
                return;
            }
            out(Framed::Damaged(h));
        }
        self.lose(out);
    }

    fn lose(&mut self, out: &mut dyn FnMut(Framed<'_>)) {
        self.buf.clear();
        if !self.hunting {
            self.hunting = true;
            self.hunted = 0;
        }
        out(Framed::Lost);
    }

    fn data(&mut self, mut d: &[u8], out: &mut dyn FnMut(Framed<'_>)) {
        if self.skip > 0 {
            let n = self.skip.min(d.len());
            self.skip -= n;
            d = &d[n..];
        }
        if d.is_empty() {
            return;
        }
        self.buf.extend_from_slice(d);
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            if self.hunting {
                match hunt(rest) {
                    Hunt::Found(at) => {
                        start += at;
                        self.hunted += at as u64;
                        self.hunting = false;
                        out(Framed::Resync { skipped: self.hunted });
                        continue;
                    }
                    Hunt::Wait(at) => {
                        start += at;
                        self.hunted += at as u64;
                        // Bounded: keep at most the hunt window.
                        let held = self.buf.len() - start;
                        if held > HUNT_WINDOW {
                            let drop = held - HUNT_WINDOW;
                            start += drop;
                            self.hunted += drop as u64;
                        }
                        break;
                    }
                }
            }
            match check_header(rest) {
                HeaderCheck::Short => break,
                HeaderCheck::Bad => {
                    out(Framed::BadHeader);
                    self.hunting = true;
                    self.hunted = 0;
                }
                HeaderCheck::TooLong(h) => {
                    out(Framed::TooLong(h));
                    self.hunting = true;
                    self.hunted = 0;
                    // Never take this header again.
                    start += 1;
                    self.hunted = 1;
                }
                HeaderCheck::Ok(h) => {
                    let end = HEADER_LEN + h.len as usize;
                    if rest.len() < end {
                        break;
                    }
                    out(Framed::Record(h, &mut self.buf[start + HEADER_LEN..start + end]));
                    start += end;
                }
            }
        }
        self.buf.drain(..start);
        if self.buf.is_empty() {
            // At a record boundary nothing is held: an idle connection keeps no buffer.
            self.buf = Vec::new();
        }
    }
}

enum Hunt {
    /// A confirmed header at this offset.
    Found(usize),
    /// Nothing confirmed yet; the bytes before this offset can be dropped.
    Wait(usize),
}

/// Looks for a plausible, confirmed record header in `buf`.
fn hunt(buf: &[u8]) -> Hunt {
    for at in 0..buf.len() {
        match check_header(&buf[at..]) {
            HeaderCheck::Short => return Hunt::Wait(at),
            HeaderCheck::Ok(h) if h.len > 0 => {
                let next = at + HEADER_LEN + h.len as usize;
                match buf.get(next..) {
                    // The record is not complete yet: wait, from here.
                    None => return Hunt::Wait(at),
                    Some(rest) => match check_header(rest) {
                        HeaderCheck::Ok(_) => return Hunt::Found(at),
                        // Ends exactly at the data's end, or the next header is still partial.
                        HeaderCheck::Short => return if rest.is_empty() { Hunt::Found(at) } else { Hunt::Wait(at) },
                        _ => {}
                    },
                }
            }
            _ => {}
        }
    }
    Hunt::Wait(buf.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Rec(u8, Vec<u8>),
        Damaged(u16),
        Lost,
        Resync(u64),
        TooLong,
        Bad,
    }

    fn run(chunks: &[Chunk<'_>]) -> (Vec<Got>, usize) {
        let mut r = RecordReader::default();
        let mut got = Vec::new();
        let mut max = 0;
        for c in chunks {
            let c = match c {
                Chunk::Data(d) => Chunk::Data(d),
                Chunk::Gap(n) => Chunk::Gap(*n),
            };
            r.feed(c, &mut |f| {
                got.push(match f {
                    Framed::Record(h, b) => Got::Rec(h.content_type, b.to_vec()),
                    Framed::Damaged(h) => Got::Damaged(h.len),
                    Framed::Lost => Got::Lost,
                    Framed::Resync { skipped } => Got::Resync(skipped),
                    Framed::TooLong(_) => Got::TooLong,
                    Framed::BadHeader => Got::Bad,
                })
            });
            max = max.max(r.buffered());
        }
        (got, max)
    }

    #[test]
    fn records_split_anyhow_come_out_whole() {
        let mut stream = rec(22, b"hello");
        stream.extend(rec(23, &[7; 300]));
        stream.extend(rec(21, &[1, 0]));
        for step in 1..stream.len() {
            let chunks: Vec<_> = stream.chunks(step).map(Chunk::Data).collect();
            let (got, _) = run(&chunks);
            assert_eq!(got, [Got::Rec(22, b"hello".to_vec()), Got::Rec(23, vec![7; 300]), Got::Rec(21, vec![1, 0])]);
        }
    }

    #[test]
    fn gap_inside_a_record_keeps_the_framing() {
        let a = rec(23, &[1; 100]);
        let b = rec(23, &[2; 10]);
        let (got, _) = run(&[Chunk::Data(&a[..30]), Chunk::Gap(50), Chunk::Data(&a[80..]), Chunk::Data(&b)]);
        assert_eq!(got, [Got::Damaged(100), Got::Rec(23, vec![2; 10])]);
    }

    #[test]
    fn gap_across_records_resyncs_on_a_confirmed_header() {
        let a = rec(23, &[1; 100]);
        let mut after = vec![0x17, 0x03]; // the tail of some record: looks like a header start
        after.extend(rec(23, &[3; 20]));
        after.extend(rec(23, &[4; 20]));
        let (got, _) = run(&[Chunk::Data(&a[..30]), Chunk::Gap(500), Chunk::Data(&after)]);
        assert_eq!(
            got,
            [Got::Damaged(100), Got::Lost, Got::Resync(2), Got::Rec(23, vec![3; 20]), Got::Rec(23, vec![4; 20])]
        );
    }

    #[test]
    fn hostile_lengths_are_counted_and_never_allocated() {
        let mut stream = vec![23, 3, 3, 0x48, 0x01]; // 2^14 + 2048 + 1
        stream.extend(vec![0xee; 40_000]);
        stream.extend(rec(23, &[5; 10]));
        stream.extend(rec(23, &[6; 10]));
        let chunks: Vec<_> = stream.chunks(1000).map(Chunk::Data).collect();
        let (got, max) = run(&chunks);
        assert_eq!(got[0], Got::TooLong);
        assert_eq!(got[got.len() - 2..], [Got::Rec(23, vec![5; 10]), Got::Rec(23, vec![6; 10])]);
        assert!(max <= 2 * (HUNT_WINDOW + 1000), "{max}");
        let (got, _) = run(&[Chunk::Data(b"GET / HTTP/1.1\r\n")]);
        assert_eq!(got, [Got::Bad]);
    }

    #[test]
    fn sniffing() {
        let ch = [22, 3, 1, 0, 200, 1, 0, 0, 196];
        assert_eq!(sniff_client_hello(&ch), Sniff::Yes);
        assert_eq!(sniff_client_hello(&ch[..3]), Sniff::NeedMore);
        assert_eq!(sniff_client_hello(&ch[..5]), Sniff::NeedMore);
        assert_eq!(sniff_client_hello(&[0x10, 0x0c, 0, 4]), Sniff::No, "MQTT CONNECT");
        assert_eq!(sniff_client_hello(b"GET /mqtt"), Sniff::No);
        assert_eq!(sniff_client_hello(&[22, 3, 3, 0, 10, 2]), Sniff::No, "a ServerHello");
        let two = [rec(23, &[1; 19]), rec(23, &[2; 19])].concat();
        assert_eq!(sniff_record(&two), Sniff::Yes);
        assert_eq!(sniff_record(&two[..3]), Sniff::NeedMore);
        assert_eq!(
            sniff_record(&[23, 3, 3, 0, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 0]),
            Sniff::No
        );
        assert_eq!(sniff_record(&[0xc0, 0x00]), Sniff::No, "PINGREQ");
        assert_eq!(sniff_record(&[23, 3, 3, 0x48, 0x01]), Sniff::No);
    }
}
