//! Figures about the input: what the pipeline counted of the capture ([`CaptureStats`]), what
//! the kernel counted for a live source ([`KernelStats`]), and the eBPF source's own counts
//! ([`EbpfStats`]).
//!
//! Contract: plain data, filled below (the pipeline, the sources) and printed above (the report,
//! the metrics); nothing here reads a clock or a file.

use super::times::opt_secs;
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// Figures about the capture itself, gathered by the pipeline (the files by the app loop).
#[derive(Clone, Debug, Default, Serialize)]
pub struct CaptureStats {
    pub files: Vec<String>,
    pub packets: u64,
    pub bytes: u64,
    #[serde(serialize_with = "opt_secs")]
    pub first_ts: Option<Timestamp>,
    #[serde(serialize_with = "opt_secs")]
    pub last_ts: Option<Timestamp>,
    /// Frames cut short by the capture's snaplen.
    pub truncated_packets: u64,
    /// Files that ended in the middle of a record.
    pub truncated_files: u64,
    /// Frames that yielded no TCP segment, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// TCP segments on other ports.
    pub other_tcp_segments: u64,
    /// The ports of those segments with the most of them (at most [`OTHER_PORTS_LISTED`]), by
    /// the server's port (a SYN's destination; else the lower port), busiest first.
    pub other_tcp_ports: Vec<PortSegments>,
    /// Records whose timestamp was earlier than the one before (clock kept monotonic).
    pub timestamps_out_of_order: u64,
    /// Problems met while reading: damaged files, unsupported interfaces.
    pub warnings: Vec<String>,
}

/// Ports listed in `capture.other_tcp_ports`.
pub const OTHER_PORTS_LISTED: usize = 10;

/// Segments seen on one port that is not a broker port.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct PortSegments {
    pub port: u16,
    pub segments: u64,
}

/// Packets received and dropped by the kernel since the capture opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub received: u64,
    pub dropped: u64,
    /// Times a TPACKET_V3 ring was full (the kernel "froze" its queue and dropped until a block
    /// was returned); 0 for sources without a ring.
    pub freezes: u64,
}

/// The kernel's counts of the eBPF source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EbpfStats {
    /// Records read from the ring buffer.
    pub records: u64,
    /// Records the ring buffer had no room for.
    pub ring_drops: u64,
    /// Plaintext bytes not copied (longer than a record holds, or dropped).
    pub lost_bytes: u64,
    /// SSL calls on connections whose socket was never seen (older than the probes).
    pub unbound_calls: u64,
    /// Records that could not be read.
    pub bad_records: u64,
}

/// What a live source has counted since it opened, as a live loop hands it to the sinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames (or the eBPF source's records) the pipeline has read.
    pub packets: u64,
    /// The kernel's counts.
    pub kernel: KernelStats,
    /// The eBPF source's own counts (`None` for packet capture).
    pub ebpf: Option<EbpfStats>,
    /// Connections the loop's tracker holds now.
    pub flows_tracked: usize,
}
