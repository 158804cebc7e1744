//! Reading pcap and pcapng files (or standard input) in pure Rust, through `pcap-parser`.
//!
//! Contract: [`OfflineReader`] yields every packet record of a classic pcap (micro- or
//! nanosecond, either byte order) or pcapng file (any number of sections and interfaces, each
//! with its own link type and timestamp resolution; unknown block types skipped). A record cut
//! short at the end of the file ends the stream cleanly and sets [`OfflineReader::truncated_tail`].
//! Damage in the middle is a [`CaptureError::Damaged`] naming the record number. Gzipped
//! captures are read directly, and live input (a pipe or FIFO) can be read without waiting
//! ([`OfflineReader::next_record`]): see [`super::input`].

use super::input::{self, LiveFeed};
use super::{CaptureError, LinkType, Packet, PacketSource};
use crate::time::Timestamp;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use std::io::Read;
use std::path::{Path, PathBuf};

const INITIAL_BUFFER: usize = 1 << 20;
const MIN_BUFFER: usize = 64 << 10;
/// Largest record accepted; real frames are at most 256 KiB.
const MAX_BUFFER: usize = 16 << 20;

/// The file format, for reading record headers ourselves.
#[derive(Clone, Copy, Debug)]
enum Format {
    Pcap { big_endian: bool },
    Pcapng,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    units_per_sec: u64,
    offset_secs: i64,
}

/// A pcap or pcapng reader.
pub struct OfflineReader {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    /// Interfaces of the current pcapng section, or the one of a classic pcap.
    interfaces: Vec<Interface>,
    /// Bytes of the record returned last, consumed at the next call (the packet borrows them).
    pending: usize,
    capacity: usize,
    records: u64,
    truncated_tail: bool,
    size: Option<u64>,
    format: Format,
    /// Set when the input is live (a pipe, a FIFO): reads may be told not to wait.
    live: Option<LiveFeed>,
    /// Device and inode of a regular file.
    identity: Option<(u64, u64)>,
}

/// What [`OfflineReader::next_record`] found.
#[derive(Debug)]
pub enum Next<'a> {
    Packet(Packet<'a>),
    /// Live input has no whole record yet (only when told not to wait).
    Stalled,
    /// The end of the input.
    End,
}

impl OfflineReader {
    /// Opens a file; `-` is standard input. Gzip is decompressed; a directory is refused.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let input = input::open(path)?;
        if let Some(feed) = input.live.as_ref().filter(|_| !input.gzip) {
            feed.set_peek(); // the parser reads ahead once after the header, which is there
        }
        let mut r = Self::from_reader(path, input.reader, input.size)?;
        if let Some(feed) = &input.live {
            feed.set_may_block(true);
        }
        r.live = input.live;
        r.identity = input.identity;
        Ok(r)
    }

    /// The first packet's timestamp (opens the file again; `None` when it has no packet).
    pub fn first_timestamp(path: &Path) -> Result<Option<Timestamp>, CaptureError> {
        let mut r = Self::open(path)?;
        Ok(r.next_packet()?.map(|p| p.ts))
    }

    /// True when the input is live (a pipe, a FIFO, a socket): it may stall.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Device and inode of a regular file (the same file named twice has the same).
    pub fn identity(&self) -> Option<(u64, u64)> {
        self.identity
    }

    /// Reads a capture from any byte stream; `path` names it in errors.
    pub fn from_reader(
        path: &Path,
        input: impl Read + Send + 'static,
        size: Option<u64>,
    ) -> Result<Self, CaptureError> {
        let path = path.to_path_buf();
        // A small file needs no more buffer than its size; records larger grow it on demand.
        let capacity =
            size.map_or(INITIAL_BUFFER, |s| usize::try_from(s).unwrap_or(usize::MAX).clamp(MIN_BUFFER, INITIAL_BUFFER));
        let reader = match create_reader(capacity, input) {
            Ok(r) => r,
            Err(PcapError::Eof) => return Err(CaptureError::Empty { path }),
            Err(PcapError::Incomplete(_)) => return Err(CaptureError::TruncatedHeader { path }),
            Err(PcapError::ReadError) => {
                return Err(CaptureError::Read { path, record: 0, detail: "cannot read the file header".into() });
            }
            Err(_) => return Err(CaptureError::NotACapture { path }),
        };
        let mut r = OfflineReader {
            path,
            reader,
            interfaces: Vec::new(),
            pending: 0,
            capacity,
            records: 0,
            truncated_tail: false,
            size,
            format: Format::Pcapng,
            live: None,
            identity: None,
        };
        r.check_classic_link_type()?;
        Ok(r)
    }

    /// Name given at open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the file consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.reader.consumed() as u64
    }

    /// File size, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// True when the file ended in the middle of a record.
    pub fn truncated_tail(&self) -> bool {
        self.truncated_tail
    }

    /// A classic pcap states its one link type up front: refuse unsupported ones at open.
    fn check_classic_link_type(&mut self) -> Result<(), CaptureError> {
        if let Ok((offset, PcapBlockOwned::LegacyHeader(h))) = self.reader.next() {
            self.format = Format::Pcap { big_endian: h.is_bigendian() };
            let units = if h.is_nanosecond_precision() { 1_000_000_000 } else { 1_000_000 };
            let link = LinkType(h.network.0 as u32);
            self.interfaces.push(Interface { link, units_per_sec: units, offset_secs: 0 });
            self.reader.consume_noshift(offset);
            if link.framing().is_none() {
                return Err(CaptureError::UnsupportedLink { path: self.path.clone(), link });
            }
        }
        Ok(())
    }

    /// The length the record at the read position claims (classic pcap: its captured length;
    /// pcapng: its block length), when enough of its header is there.
    fn claimed_record_len(&self) -> Option<u64> {
        let data = self.reader.data();
        let field = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?)) };
        let (le, be) = match &self.format {
            Format::Pcap { big_endian: false } => (field(8)?, 0),
            Format::Pcap { big_endian: true } => (0, field(8)?.swap_bytes()),
            Format::Pcapng => (field(4)?, 0),
        };
        Some(u64::from(le.max(be)))
    }

    fn damaged(&self, detail: String) -> CaptureError {
        damage(&self.path, self.records, detail)
    }
}

/// Damage at the record after the `records` read so far (a free function: it borrows only the
/// fields it needs, so it can be called while the reader's buffer is borrowed).
fn damage(path: &Path, records: u64, detail: impl Into<String>) -> CaptureError {
    CaptureError::Damaged { path: path.to_path_buf(), record: records + 1, detail: detail.into() }
}

impl PacketSource for OfflineReader {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        match self.next_record(true)? {
            Next::Packet(p) => Ok(Some(p)),
            Next::Stalled | Next::End => Ok(None), // a read that may wait never stalls
        }
    }
}

impl OfflineReader {
    /// The next packet record. With `may_block` false, live input that has no whole record
    /// buffered returns [`Next::Stalled`] instead of waiting (call again later); files never
    /// stall.
    pub fn next_record(&mut self, may_block: bool) -> Result<Next<'_>, CaptureError> {
        // Zero copy: the packet returned last borrowed the reader's buffer; release it now.
        // `consume_noshift` never moves data; only `refill` does, when a record is incomplete.
        if self.pending > 0 {
            self.reader.consume_noshift(std::mem::take(&mut self.pending));
        }
        let mut stalled = 0;
        let (ts, link, start, len, orig_len) = loop {
            // Packet data is located by its offset from the start of the buffered data, so no
            // borrow of the reader outlives this loop.
            let base = self.reader.data().as_ptr() as usize;
            let (offset, found) = match self.reader.next() {
                Ok((offset, block)) => {
                    stalled = 0;
                    let found = match block {
                        PcapBlockOwned::LegacyHeader(_) => None,
                        PcapBlockOwned::Legacy(b) => {
                            let Some(ifc) = self.interfaces.first().copied() else {
                                return Err(damage(
                                    &self.path,
                                    self.records,
                                    "packet record before the file header".to_string(),
                                ));
                            };
                            let ts =
                                Timestamp::from_parts(u64::from(b.ts_sec), u64::from(b.ts_usec), ifc.units_per_sec);
                            Some((ts, ifc.link, b.data.as_ptr() as usize - base, b.data.len(), b.origlen))
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                            self.interfaces.clear();
                            None
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            self.interfaces.push(Interface {
                                link: LinkType(idb.linktype.0 as u32),
                                units_per_sec: idb.ts_resolution().unwrap_or(1_000_000),
                                offset_secs: idb.ts_offset(),
                            });
                            None
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let Some(ifc) = self.interfaces.get(epb.if_id as usize).copied() else {
                                return Err(damage(
                                    &self.path,
                                    self.records,
                                    format!("packet on undeclared interface {}", epb.if_id),
                                ));
                            };
                            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let units = ifc.units_per_sec.max(1);
                            let secs = (raw / units).saturating_add_signed(ifc.offset_secs);
                            let ts = Timestamp::from_parts(secs, raw % units, units);
                            let data = epb.packet_data();
                            Some((ts, ifc.link, data.as_ptr() as usize - base, data.len(), epb.orig_len()))
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            let Some(ifc) = self.interfaces.first().copied() else {
                                return Err(damage(
                                    &self.path,
                                    self.records,
                                    "simple packet block before any interface".to_string(),
                                ));
                            };
                            let data = spb.packet_data();
                            // Simple packet blocks carry no timestamp.
                            Some((
                                Timestamp::default(),
                                ifc.link,
                                data.as_ptr() as usize - base,
                                data.len(),
                                spb.orig_len(),
                            ))
                        }
                        PcapBlockOwned::NG(_) => None, // statistics, name resolution, custom, unknown
                    };
                    (offset, found)
                }
                Err(PcapError::Eof) => return Ok(Next::End),
                Err(PcapError::UnexpectedEof) => {
                    // The file ends inside a record: cut short, unless the record claims a length
                    // no capture writes (then it is damage, e.g. a 4 GB record length).
                    if let Some(claimed) = self.claimed_record_len().filter(|n| *n > MAX_BUFFER as u64) {
                        return Err(
                            self.damaged(format!("a record of {claimed} bytes, larger than {} MiB", MAX_BUFFER >> 20))
                        );
                    }
                    self.truncated_tail = true;
                    return Ok(Next::End);
                }
                Err(PcapError::Incomplete(_)) => {
                    // Reads that bring nothing mean the input ended inside a record; a pipe
                    // may bring a record in pieces, so only reads that bring nothing count.
                    if stalled > 2 {
                        self.truncated_tail = true;
                        return Ok(Next::End);
                    }
                    let records = self.records;
                    let before = self.reader.data().len();
                    if let Some(feed) = &self.live {
                        feed.set_may_block(may_block);
                    }
                    if self.reader.refill().is_err() {
                        if self.live.as_ref().is_some_and(LiveFeed::take_stalled) {
                            return Ok(Next::Stalled);
                        }
                        return Err(CaptureError::Read {
                            path: self.path.clone(),
                            record: records,
                            detail: "read failed".into(),
                        });
                    }
                    if self.reader.data().len() == before {
                        stalled += 1;
                    }
                    continue;
                }
                Err(PcapError::BufferTooSmall) => {
                    let size = self.capacity * 2;
                    if size > MAX_BUFFER || !self.reader.grow(size) {
                        return Err(self.damaged(format!("a record larger than {} MiB", MAX_BUFFER >> 20)));
                    }
                    self.capacity = size;
                    if let Some(feed) = &self.live {
                        feed.set_may_block(true); // the rest of a record being read
                    }
                    let _ = self.reader.refill();
                    continue;
                }
                Err(e) => {
                    let detail = match e {
                        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
                            format!("unparseable block ({kind:?})")
                        }
                        other => format!("{other:?}"),
                    };
                    return Err(self.damaged(detail));
                }
            };
            match found {
                Some(packet) => {
                    self.pending = offset;
                    break packet;
                }
                None => self.reader.consume_noshift(offset),
            }
        };
        self.records += 1;
        Ok(Next::Packet(Packet { ts, link, data: &self.reader.data()[start..start + len], orig_len }))
    }
}
