//! Packet sources: where timestamped link-layer frames come from.
//!
//! Contract: a [`PacketSource`] yields frames in capture order with the capture's own timestamps
//! and link type. A damaged file ends its stream with an error after the packets before the
//! damage; a record cut short at the end of a file ends the stream cleanly and is counted.

pub mod afpacket;
pub mod bpf;
#[cfg(feature = "libpcap")]
pub mod libpcap;
pub mod offline;

use crate::time::Timestamp;
use std::path::PathBuf;

pub use offline::OfflineReader;

/// A link-layer header type (a LINKTYPE_ value from the pcap spec).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The conventional name (as libpcap's `pcap_datalink_val_to_name`).
    pub fn name(self) -> String {
        match self.0 {
            0 => "NULL".into(),
            1 => "EN10MB".into(),
            12 | 14 | 101 => "RAW".into(),
            108 => "LOOP".into(),
            113 => "LINUX_SLL".into(),
            228 => "IPV4".into(),
            229 => "IPV6".into(),
            276 => "LINUX_SLL2".into(),
            105 => "IEEE802_11".into(),
            127 => "IEEE802_11_RADIO".into(),
            189 => "USB_LINUX".into(),
            n => format!("LINKTYPE {n}"),
        }
    }
}

/// One captured frame, borrowed from the source until the next call.
#[derive(Debug)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire (larger than `data.len()` when the snaplen cut the frame).
    pub orig_len: u32,
}

/// Why a capture cannot be read (further).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file, not a capture")]
    Empty { path: PathBuf },
    #[error("{path}: not a pcap or pcapng capture (unrecognised file header)")]
    NotACapture { path: PathBuf },
    #[error("{path}: the file ends inside its capture header")]
    TruncatedHeader { path: PathBuf },
    #[error(
        "{path}: link type {} is not supported (supported: Ethernet, Linux cooked SLL/SLL2, BSD loopback, raw IP)",
        link.name()
    )]
    UnsupportedLink { path: PathBuf, link: LinkType },
    #[error("{path}: read error after record {record}: {detail}")]
    Read { path: PathBuf, record: u64, detail: String },
    #[error("{path}: damaged capture at record {record}: {detail}; the records before it were analysed")]
    Damaged { path: PathBuf, record: u64, detail: String },
}

/// A source of captured frames.
pub trait PacketSource {
    /// The next frame, `Ok(None)` at the end.
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError>;
}

/// A live capture: waits for frames with a timeout, and reports the kernel's counts.
pub trait LiveSource {
    /// The next frame, waiting at most `timeout`; `Ok(None)` when none came.
    fn next_packet(&mut self, timeout: std::time::Duration) -> Result<Option<Packet<'_>>, afpacket::LiveCaptureError>;
    /// Kernel counts since the capture opened.
    fn stats(&mut self) -> afpacket::KernelStats;
}
