//! Where a capture's bytes come from: a regular file, standard input, a FIFO, gzip or not.
//!
//! Contract: [`open`] turns a path (`-`: standard input) into a byte stream for the capture
//! parser. Gzip is recognised by its magic bytes (`1f 8b`), whatever the name, and decompressed
//! on the fly (concatenated members too, as `gzip` writes them). A directory is refused. Input
//! that is not a regular file (a pipe, a FIFO, a socket, a terminal) is *live*: a pump thread
//! reads it, so the parser's reads can be told not to wait ([`LiveFeed::set_may_block`]); such a
//! read that finds no data yet fails with [`std::io::ErrorKind::WouldBlock`] and marks the feed
//! stalled ([`LiveFeed::take_stalled`]), which is how the reader knows to hand on what it has
//! before it waits. Regular files are read directly and never stall.

use super::CaptureError;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

/// Bytes read from live input at once (a pipe holds 64 KiB).
const PUMP_CHUNK: usize = 64 << 10;
/// Chunks queued between the pump and the parser.
const PUMP_QUEUE: usize = 64;

/// An opened input.
pub(crate) struct Input {
    pub reader: Box<dyn Read + Send>,
    /// Its size in bytes (regular files that are not compressed: for progress).
    pub size: Option<u64>,
    /// Set when the input is live (not a regular file).
    pub live: Option<LiveFeed>,
    /// Device and inode of a regular file (the same file named twice is read once).
    pub identity: Option<(u64, u64)>,
    /// The input is gzipped (decompressed on the fly).
    pub gzip: bool,
}

/// The reader's handle on a live input's pump.
#[derive(Clone, Debug, Default)]
pub struct LiveFeed {
    /// What a read does when no data is there yet: [`WAIT`], [`NO_WAIT`] or [`PEEK`].
    mode: Arc<AtomicU8>,
    stalled: Arc<AtomicBool>,
}

/// A read waits for data.
const WAIT: u8 = 0;
/// A read fails with `WouldBlock` (and marks the feed stalled).
const NO_WAIT: u8 = 1;
/// A read returns nothing (while the capture's header is parsed: its parser reads ahead once).
const PEEK: u8 = 2;

impl LiveFeed {
    /// Whether the next read may wait for data (else it fails with `WouldBlock` when none is
    /// there yet).
    pub fn set_may_block(&self, may: bool) {
        self.mode.store(if may { WAIT } else { NO_WAIT }, Ordering::Relaxed);
        self.stalled.store(false, Ordering::Relaxed);
    }

    /// Reads return what is there without waiting, nothing when nothing is.
    pub(crate) fn set_peek(&self) {
        self.mode.store(PEEK, Ordering::Relaxed);
    }

    /// True (once) when a read found no data and did not wait.
    pub fn take_stalled(&self) -> bool {
        self.stalled.swap(false, Ordering::Relaxed)
    }
}

/// Opens `path` (`-`: standard input) for reading a capture.
pub(crate) fn open(path: &Path) -> Result<Input, CaptureError> {
    use std::os::unix::fs::MetadataExt;
    let open_err = |source| CaptureError::Open { path: path.into(), source };
    let (file, meta) = if path == Path::new("-") {
        use std::os::fd::AsFd;
        let fd = io::stdin().as_fd().try_clone_to_owned().map_err(open_err)?;
        let file = std::fs::File::from(fd);
        let meta = file.metadata().map_err(open_err)?;
        (file, meta)
    } else {
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.is_dir() {
            return Err(CaptureError::IsDirectory { path: path.into() });
        }
        (std::fs::File::open(path).map_err(open_err)?, meta)
    };
    let (raw, size, live, identity): (Box<dyn Read + Send>, _, _, _) = if meta.is_file() {
        (Box::new(file), Some(meta.len()), None, Some((meta.dev(), meta.ino())))
    } else {
        let feed = LiveFeed::default();
        feed.set_may_block(true);
        (Box::new(pump(file, feed.clone())), None, Some(feed), None)
    };
    let (reader, gzip) = ungzip(raw, live.is_some()).map_err(open_err)?;
    Ok(Input { reader, size: if gzip { None } else { size }, live, identity, gzip })
}

/// How many bytes the capture's file header takes, from its first bytes (pcap: 24; pcapng:
/// the section header block's length), or how many are needed to tell.
fn header_len(head: &[u8]) -> usize {
    if head.len() < 4 || head[..4] != [0x0a, 0x0d, 0x0d, 0x0a] {
        return 24;
    }
    let (Some(len), Some(magic)) = (head.get(4..8), head.get(8..12)) else { return 12 };
    let len: [u8; 4] = len.try_into().unwrap_or_default();
    let len = if magic == [0x4d, 0x3c, 0x2b, 0x1a] { u32::from_le_bytes(len) } else { u32::from_be_bytes(len) };
    usize::try_from(len).unwrap_or(usize::MAX).clamp(12, 64 << 10)
}

/// The stream decompressed when it starts with gzip's magic bytes (and whether it did). With
/// `whole_header` (live input, read without waiting after this), the capture's file header is
/// read ahead whole.
pub(crate) fn ungzip(mut input: Box<dyn Read + Send>, whole_header: bool) -> io::Result<(Box<dyn Read + Send>, bool)> {
    let mut head = Vec::new();
    let mut want = 2;
    while head.len() < want {
        let at = head.len();
        head.resize(want, 0);
        match input.read(&mut head[at..]) {
            Ok(0) => {
                head.truncate(at);
                break;
            }
            Ok(n) => head.truncate(at + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => head.truncate(at),
            Err(e) => return Err(e),
        }
        if whole_header && head.len() >= 2 && head[..2] != [0x1f, 0x8b] {
            want = header_len(&head);
        }
    }
    let gzip = head.len() >= 2 && head[..2] == [0x1f, 0x8b];
    let whole = Prefixed { head, at: 0, inner: input };
    if gzip { Ok((Box::new(flate2::read::MultiGzDecoder::new(whole)), true)) } else { Ok((Box::new(whole), false)) }
}

/// Bytes read ahead, then the rest of the stream, in the same reads (a parser that reads its
/// header in one call gets all of it).
struct Prefixed {
    head: Vec<u8>,
    at: usize,
    inner: Box<dyn Read + Send>,
}

impl Read for Prefixed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.head.len() - self.at);
        buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
        self.at += n;
        if n == buf.len() {
            return Ok(n);
        }
        match self.inner.read(&mut buf[n..]) {
            Ok(more) => Ok(n + more),
            Err(_) if n > 0 => Ok(n), // the error comes again at the next read
            Err(e) => Err(e),
        }
    }
}

/// Reads `input` on its own thread; the returned reader hands its bytes on, waiting for more
/// only when the feed allows it. The thread ends at the end of the input or when the reader is
/// dropped (at its next chunk).
fn pump(mut input: std::fs::File, feed: LiveFeed) -> FeedReader {
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(PUMP_QUEUE);
    std::thread::spawn(move || {
        loop {
            let mut chunk = vec![0u8; PUMP_CHUNK];
            match input.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    FeedReader { rx, chunk: Vec::new(), at: 0, feed }
}

/// The parser's side of a pump.
struct FeedReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    feed: LiveFeed,
}

impl Read for FeedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            let next = match self.rx.try_recv() {
                Ok(next) => next,
                Err(TryRecvError::Disconnected) => return Ok(0),
                Err(TryRecvError::Empty) => match self.feed.mode.load(Ordering::Relaxed) {
                    WAIT => match self.rx.recv() {
                        Ok(next) => next,
                        Err(_) => return Ok(0),
                    },
                    PEEK => return Ok(0),
                    _ => {
                        self.feed.stalled.store(true, Ordering::Relaxed);
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                },
            };
            self.chunk = next?;
            self.at = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_recognised_by_its_magic_bytes() {
        let plain = b"\xd4\xc3\xb2\xa1 not really a capture".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let (mut r, was) = ungzip(Box::new(io::Cursor::new(gz.finish().unwrap())), false).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert!(was);
        assert_eq!(out, plain);
        let (mut r, was) = ungzip(Box::new(io::Cursor::new(plain.clone())), true).unwrap();
        out.clear();
        r.read_to_end(&mut out).unwrap();
        assert!(!was);
        assert_eq!(out, plain, "plain input passes untouched");
        let (mut r, _) = ungzip(Box::new(io::Cursor::new(vec![0x1f])), false).unwrap();
        out.clear();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, [0x1f], "a one-byte input is not lost");
    }

    #[test]
    fn a_live_read_that_may_not_wait_says_it_stalled() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let feed = LiveFeed::default();
        let mut r = FeedReader { rx, chunk: Vec::new(), at: 0, feed: feed.clone() };
        tx.send(Ok(b"abc".to_vec())).unwrap();
        feed.set_may_block(false);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert_eq!(r.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(feed.take_stalled());
        assert!(!feed.take_stalled(), "once");
        drop(tx);
        assert_eq!(r.read(&mut buf).unwrap(), 0, "the end of the input");
    }
}
