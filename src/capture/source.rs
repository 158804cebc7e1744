//! The one seam every input implements: a [`Source`] hands what it captured to an [`Intake`]
//! (the pipeline, or `analyze`'s reader stage), and never knows what is behind it.
//!
//! Contract: a source is driven by one call, [`Source::feed`]: hand over what has arrived,
//! waiting at most `timeout` for the first item (a zero timeout takes only what is already
//! there, with no wait), at most `max` items, and say how many and whether the input ended. A
//! frame source (a file or pipe, the AF_PACKET ring or `recvmsg` socket, libpcap) hands frames
//! ([`Intake::frame`]); a stream source (eBPF on the broker's libssl) hands in-order bytes and TCP
//! changes ([`Intake::stream`], [`Intake::tcp`]). `now` is the caller's real time, for items the
//! kernel gave no timestamp: sources never read a clock. Live frame sources implement the
//! simpler [`LiveSource`] (one frame per call) and are sources by that; files implement
//! [`Source`] through [`OfflineReader`].
//!
//! `analyze` (files and pipes, `app.rs`) and `live` (`live.rs`) drive every source through this
//! trait; nothing here imports the pipeline (it implements [`Intake`]).

use super::ebpf::{EbpfError, EbpfSource};
use super::offline::Next;
use super::{CaptureError, LinkType, LiveCaptureError, LiveSource, OfflineReader};
use crate::flow::{FlowKey, Side};
use crate::model::stats::{EbpfStats, KernelStats};
use crate::time::Timestamp;
use crate::tracker::{StreamInput, TcpChange};
use std::time::Duration;

/// Where a source hands what it captured. The pipeline is one; so is `analyze`'s reader stage,
/// which decodes frames on its own thread.
pub trait Intake {
    /// A captured frame stamped `ts`, `orig_len` bytes long on the wire.
    fn frame(&mut self, ts: Timestamp, link: LinkType, data: &[u8], orig_len: u32);
    /// In-order bytes (or lost ones) of one side of a connection, from a stream source.
    fn stream(&mut self, ts: Timestamp, key: FlowKey, from: Side, input: StreamInput<'_>);
    /// A TCP state change of a connection, from a stream source.
    fn tcp(&mut self, ts: Timestamp, key: FlowKey, change: TcpChange);
}

/// What one [`Source::feed`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Items handed over.
    pub items: usize,
    /// The input ended (a file): no more calls.
    pub end: bool,
}

/// Why a source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] CaptureError),
    #[error(transparent)]
    Live(#[from] LiveCaptureError),
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
}

/// An input. See the module doc.
pub trait Source {
    /// Hands what arrived to `into`, waiting at most `timeout` for the first item; at most `max`
    /// items. `now` is the caller's real time.
    fn feed(
        &mut self,
        into: &mut dyn Intake,
        timeout: Duration,
        now: Timestamp,
        max: usize,
    ) -> Result<Fed, SourceError>;

    /// Kernel counts since the source opened (none for a file).
    fn stats(&mut self) -> KernelStats {
        KernelStats::default()
    }

    /// The eBPF source's own counts (`None` for the others).
    fn ebpf_stats(&self) -> Option<EbpfStats> {
        None
    }

    /// Hands over, with no wait, what the source already holds in memory it reads without a
    /// system call (the eBPF ring buffer: its data records do not wake the reader). Frame
    /// sources hand theirs over in [`Source::feed`].
    fn take_held(&mut self, _into: &mut dyn Intake) {}

    /// The input ends: hands over everything the source still holds, even what it would
    /// otherwise keep back a while (the eBPF source's reorder window).
    fn finish(&mut self, into: &mut dyn Intake) {
        self.take_held(into);
    }
}

impl<T: LiveSource + ?Sized> Source for T {
    fn feed(
        &mut self,
        into: &mut dyn Intake,
        timeout: Duration,
        now: Timestamp,
        max: usize,
    ) -> Result<Fed, SourceError> {
        let mut wait = timeout;
        for n in 0..max {
            let Some(p) = self.next_packet(wait, now)? else { return Ok(Fed { items: n, end: false }) };
            into.frame(p.ts, p.link, p.data, p.orig_len);
            wait = Duration::ZERO;
        }
        Ok(Fed { items: max, end: false })
    }

    fn stats(&mut self) -> KernelStats {
        LiveSource::stats(self)
    }
}

/// A file is read to its end (a non-zero timeout lets a read block: a file always, a pipe
/// until data comes); live input (a pipe, a FIFO) with a zero timeout stops when no whole record
/// is there yet.
impl Source for OfflineReader {
    fn feed(
        &mut self,
        into: &mut dyn Intake,
        timeout: Duration,
        _now: Timestamp,
        max: usize,
    ) -> Result<Fed, SourceError> {
        for n in 0..max {
            match self.next_record(!timeout.is_zero())? {
                Next::Packet(p) => into.frame(p.ts, p.link, p.data, p.orig_len),
                Next::Stalled => return Ok(Fed { items: n, end: false }),
                Next::End => return Ok(Fed { items: n, end: true }),
            }
        }
        Ok(Fed { items: max, end: false })
    }
}

impl Source for EbpfSource {
    fn feed(
        &mut self,
        into: &mut dyn Intake,
        timeout: Duration,
        now: Timestamp,
        max: usize,
    ) -> Result<Fed, SourceError> {
        let items = EbpfSource::feed(self, into, timeout, now, max)?;
        Ok(Fed { items, end: false })
    }

    fn stats(&mut self) -> KernelStats {
        EbpfSource::stats(self)
    }

    fn ebpf_stats(&self) -> Option<EbpfStats> {
        Some(EbpfSource::ebpf_stats(self))
    }

    fn take_held(&mut self, into: &mut dyn Intake) {
        EbpfSource::take_held(self, into);
    }

    fn finish(&mut self, into: &mut dyn Intake) {
        EbpfSource::flush(self, into);
    }
}
