//! Sources: where the input comes from. Every input is a [`Source`] ([`source`]: the one seam,
//! driven the same way by `analyze` and `live`), handing frames or streams to an [`Intake`].
//!
//! Contract: a [`PacketSource`] (a capture file read as an iterator, for tools and tests) yields frames in capture order with the capture's own timestamps
//! and link type. A damaged file ends its stream with an error after the packets before the
//! damage; a record cut short at the end of a file ends the stream cleanly and is counted.

pub mod afpacket;
pub mod bpf;
pub mod ebpf;
pub mod input;
#[cfg(feature = "libpcap")]
pub mod libpcap;
pub mod offline;
mod packet_socket;
pub(crate) mod poll;
pub mod ring;
pub mod source;

pub use crate::link::LinkType;
pub use crate::model::stats::KernelStats;
use crate::time::Timestamp;
use std::path::PathBuf;

pub use offline::OfflineReader;
pub use source::{Fed, Intake, Source, SourceError};

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
    #[error("{path}: is a directory; name the capture files in it (e.g. {path}/*.pcap)")]
    IsDirectory { path: PathBuf },
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

/// Why the live capture cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum LiveCaptureError {
    #[error("no interface named {name:?}; interfaces here: {}", existing.join(", "))]
    NoSuchInterface { name: String, existing: Vec<String> },
    #[error(
        "permission denied opening a packet socket on {iface}: run as root or give the binary CAP_NET_RAW \
         (sudo setcap cap_net_raw,cap_net_admin=eip {exe})"
    )]
    Permission { iface: String, exe: String },
    #[error("capture on {iface}: {what}: {source}")]
    Os { iface: String, what: &'static str, source: std::io::Error },
}

/// Names of the network interfaces on this host.
pub fn interface_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names.push("any".into());
    names
}

/// A live capture: waits for frames with a timeout, and reports the kernel's counts.
pub trait LiveSource {
    /// The next frame, waiting at most `timeout`; `Ok(None)` when none came. A zero timeout
    /// takes only a frame already queued, with no wait (and no `poll` where the source knows
    /// without one). A frame the kernel gave no timestamp is stamped `now` (the caller's clock:
    /// sources never read one).
    fn next_packet(
        &mut self,
        timeout: std::time::Duration,
        now: Timestamp,
    ) -> Result<Option<Packet<'_>>, LiveCaptureError>;
    /// Kernel counts since the capture opened.
    fn stats(&mut self) -> KernelStats;
}

impl<T: LiveSource + ?Sized> LiveSource for Box<T> {
    fn next_packet(
        &mut self,
        timeout: std::time::Duration,
        now: Timestamp,
    ) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        (**self).next_packet(timeout, now)
    }

    fn stats(&mut self) -> KernelStats {
        (**self).stats()
    }
}
