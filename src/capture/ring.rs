//! Live capture through a Linux AF_PACKET TPACKET_V3 memory-mapped ring (block-based, as
//! tcpdump's libpcap and Suricata use it): frames are read where the kernel wrote them, with
//! no copy and no system call per packet.
//!
//! Contract: [`Ring::open`] opens one `SOCK_DGRAM` packet socket per interface (`any`: all),
//! attaches the kernel BPF filter from [`super::bpf::port_filter`] before binding (nothing
//! unfiltered is queued), switches it to TPACKET_V3 with a receive ring of [`RingConfig::size`]
//! bytes in blocks of [`BLOCK_SIZE`], maps the ring, binds, and (with [`RingConfig::fanout`])
//! joins a `PACKET_FANOUT_HASH` group, so each connection's packets go to one socket of the
//! group. The kernel hands a block over when it is full or [`BLOCK_TIMEOUT_MS`] after its first
//! packet, so a quiet link still delivers within that time. [`Ring::next_packet`] yields the
//! frames of the block in hand (IP packets, link type RAW, with the kernel's nanosecond
//! timestamps) and returns the block to the kernel when it moves to the next; it calls `poll`
//! only when no block is ready (one poll per filled block under load), and never with a zero
//! timeout. On loopback each packet is seen twice by a packet socket; the outgoing copy is
//! dropped, as libpcap does. [`Ring::stats`] reads the kernel's received, dropped and ring
//! freeze counts. The ring takes no clock: frames carry the kernel's timestamps.
#![allow(unsafe_code)] // the ring is shared memory written by the kernel; each block says why it is sound

use super::bpf::{self, Insn};
use super::packet_socket::{self, ARPHRD_LOOPBACK, os_err, packet_statistics, setsockopt};
use super::{KernelStats, LinkType, LiveCaptureError, Packet};
use crate::time::Timestamp;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Bytes per ring block: the kernel fills one block at a time and hands it over whole, when it
/// is full or [`BLOCK_TIMEOUT_MS`] after its first packet. Below about 25 MB/s a block leaves on
/// its timeout, not full, so the ring holds `blocks x 10 ms` of traffic: small blocks (128 of
/// them in the default ring: 1.3 s) ride out a stall of the capture thread; 256 KiB still holds
/// about 1,600 small packets (one `poll` for all of them) and any packet the loopback makes.
pub const BLOCK_SIZE: usize = 256 << 10;
/// A block is handed over this long after its first packet, full or not.
pub const BLOCK_TIMEOUT_MS: u32 = 10;
/// Ring size when none is given.
pub const DEFAULT_RING_SIZE: usize = 32 << 20;
/// The frame size the kernel's ring set-up checks against (TPACKET_V3 packs frames of any
/// length into a block; this only has to be aligned and larger than the frame header).
const FRAME_SIZE: usize = 2048;
/// Offset of the `sockaddr_ll` after each frame header (`TPACKET_ALIGN(sizeof(tpacket3_hdr))`).
const SLL_OFFSET: usize =
    (size_of::<libc::tpacket3_hdr>() + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1);

/// How to set the ring up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes of ring per socket (rounded down to whole blocks, at least 2).
    pub size: usize,
    /// Join this `PACKET_FANOUT_HASH` group (one per interface: the id is offset by the
    /// interface's position), for several capture threads.
    pub fanout: Option<u16>,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig { size: DEFAULT_RING_SIZE, fanout: None }
    }
}

impl RingConfig {
    /// Blocks in each ring.
    pub fn blocks(&self) -> usize {
        (self.size / BLOCK_SIZE).max(2)
    }
}

/// The ring of one socket, mapped into this process.
struct Mapped {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping belongs to this value alone (no other pointer to it is kept in user
// space); the kernel's writes are synchronised through each block's status word.
unsafe impl Send for Mapped {}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `open_one`, unmapped once, here; no
        // frame borrowed from it outlives the `Ring` (borrows are tied to `&mut Ring`).
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// One socket and its ring, with the position of the reader in it.
struct RingSock {
    // Field order: the mapping is unmapped before the socket is closed.
    map: Mapped,
    fd: OwnedFd,
    iface: String,
    blocks: usize,
    /// Block being read (or next to wait for).
    block: usize,
    /// The block in hand: frames left and the offset of the next one in the block.
    in_hand: Option<(u32, usize)>,
}

/// Where a frame lies in a ring, and its header fields.
struct FrameAt {
    sock: usize,
    start: usize,
    snaplen: usize,
    len: u32,
    ts: Timestamp,
}

/// Live capture on one or more interfaces through TPACKET_V3 rings.
pub struct Ring {
    socks: Vec<RingSock>,
    pollfds: Vec<libc::pollfd>,
    /// The socket read first on the next call (round robin, so a busy interface cannot starve
    /// another).
    next: usize,
    stats: KernelStats,
}

impl RingSock {
    /// The status word of block `b` (the kernel and this reader hand the block over with it).
    fn status(&self, b: usize) -> &AtomicU32 {
        debug_assert!(b < self.blocks);
        // SAFETY: block `b` starts at `b * BLOCK_SIZE` inside the mapping (b < blocks); its
        // descriptor begins with `version` and `offset_to_priv` (u32 each) then the v1 header
        // whose first field is the u32 `block_status`, 8 bytes in and 4-aligned (the block is
        // page-aligned). The kernel writes it concurrently: it is only accessed atomically.
        unsafe { &*self.map.base.add(b * BLOCK_SIZE + 8).cast::<AtomicU32>() }
    }

    /// The next frame of this ring, returning finished blocks to the kernel; `None` when no
    /// block is ready.
    fn next_frame(&mut self, sock: usize) -> Option<FrameAt> {
        loop {
            if let Some((left, offset)) = self.in_hand {
                if left > 0 {
                    let block = self.block * BLOCK_SIZE;
                    // SAFETY: the block is ours (status TP_STATUS_USER, read with Acquire, so
                    // the kernel's writes to it are visible); `offset` is the kernel's offset
                    // of a frame header inside it, which is 16-aligned.
                    let hdr: libc::tpacket3_hdr =
                        unsafe { std::ptr::read(self.map.base.add(block + offset).cast::<libc::tpacket3_hdr>()) };
                    // SAFETY: as above; the sockaddr_ll follows the header at SLL_OFFSET.
                    let sll: libc::sockaddr_ll = unsafe {
                        std::ptr::read_unaligned(
                            self.map.base.add(block + offset + SLL_OFFSET).cast::<libc::sockaddr_ll>(),
                        )
                    };
                    let next = offset + hdr.tp_next_offset as usize;
                    self.in_hand = Some((left - 1, next));
                    if sll.sll_pkttype == libc::PACKET_OUTGOING && sll.sll_hatype == ARPHRD_LOOPBACK {
                        continue; // the second copy of a loopback packet
                    }
                    // Bounded by the block's end, whatever the header says.
                    let start = (block + offset + usize::from(hdr.tp_net)).min(block + BLOCK_SIZE);
                    let snaplen = (hdr.tp_snaplen as usize).min(block + BLOCK_SIZE - start);
                    let ts = Timestamp::from_parts(u64::from(hdr.tp_sec), u64::from(hdr.tp_nsec), 1_000_000_000);
                    return Some(FrameAt { sock, start, snaplen, len: hdr.tp_len, ts });
                }
                // Every frame read: the block goes back to the kernel.
                self.status(self.block).store(libc::TP_STATUS_KERNEL, Ordering::Release);
                self.in_hand = None;
                self.block = (self.block + 1) % self.blocks;
            }
            if self.status(self.block).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                return None;
            }
            let block = self.block * BLOCK_SIZE;
            // SAFETY: the block is ours (TP_STATUS_USER seen with Acquire); its descriptor's v1
            // header holds the frame count at byte 12 and the first frame's offset at byte 16.
            let (frames, first) = unsafe {
                let b = self.map.base.add(block);
                (std::ptr::read(b.add(12).cast::<u32>()), std::ptr::read(b.add(16).cast::<u32>()))
            };
            self.in_hand = Some((frames, first as usize));
        }
    }
}

impl Ring {
    /// Opens the capture on `interfaces` for TCP to or from `ports`.
    pub fn open(interfaces: &[String], ports: &[u16], cfg: RingConfig) -> Result<Self, LiveCaptureError> {
        let filter = bpf::port_filter(ports);
        let mut socks = Vec::new();
        for (i, iface) in interfaces.iter().enumerate() {
            let fanout = cfg.fanout.map(|id| id.wrapping_add(i as u16));
            socks.push(open_one(iface, &filter, cfg.blocks(), fanout)?);
        }
        let pollfds =
            socks.iter().map(|s| libc::pollfd { fd: s.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        Ok(Ring { socks, pollfds, next: 0, stats: KernelStats::default() })
    }

    /// The next packet, waiting at most `timeout` (a zero timeout: only a packet already in a
    /// handed-over block, with no system call); `Ok(None)` when none came.
    pub fn next_packet(&mut self, timeout: Duration, _now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        let mut waited = false;
        loop {
            let n = self.socks.len();
            for k in 0..n {
                let i = (self.next + k) % n;
                if let Some(f) = self.socks[i].next_frame(i) {
                    self.next = i; // stay on this ring while it has frames
                    return Ok(Some(self.packet(f)));
                }
            }
            self.next = (self.next + 1) % n;
            if waited || timeout.is_zero() {
                return Ok(None);
            }
            if let Err(e) = super::poll::wait(&mut self.pollfds, timeout) {
                return Err(LiveCaptureError::Os { iface: self.socks[0].iface.clone(), what: "poll", source: e });
            }
            for (i, p) in self.pollfds.iter().enumerate() {
                if p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                    let source = io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the interface went down or disappeared (start the agent again once it is back; the systemd unit restarts it)",
                    );
                    return Err(LiveCaptureError::Os { iface: self.socks[i].iface.clone(), what: "receive", source });
                }
            }
            waited = true;
        }
    }

    fn packet(&self, f: FrameAt) -> Packet<'_> {
        let s = &self.socks[f.sock];
        // SAFETY: `start..start + snaplen` lies inside the block in hand (bounded by the block's
        // end in `next_frame`), which the kernel does not write until this reader returns it,
        // on a later call taking `&mut self`: the borrow of `&self` keeps it ours meanwhile.
        let data = unsafe { std::slice::from_raw_parts(s.map.base.add(f.start), f.snaplen) };
        Packet { ts: f.ts, link: LinkType::RAW, data, orig_len: f.len }
    }

    /// Kernel counts since the capture opened (the kernel resets its counters on each read).
    pub fn stats(&mut self) -> KernelStats {
        for s in &self.socks {
            if let Some(st) =
                packet_statistics(&s.fd, libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 })
            {
                self.stats.received += u64::from(st.tp_packets);
                self.stats.dropped += u64::from(st.tp_drops);
                self.stats.freezes += u64::from(st.tp_freeze_q_cnt);
            }
        }
        self.stats
    }
}

impl super::LiveSource for Ring {
    fn next_packet(&mut self, timeout: Duration, now: Timestamp) -> Result<Option<Packet<'_>>, LiveCaptureError> {
        Ring::next_packet(self, timeout, now)
    }
    fn stats(&mut self) -> KernelStats {
        Ring::stats(self)
    }
}

fn open_one(iface: &str, filter: &[Insn], blocks: usize, fanout: Option<u16>) -> Result<RingSock, LiveCaptureError> {
    // Protocol 0: the socket receives nothing until it is bound, after the filter and the ring.
    let (fd, ifindex) = packet_socket::open(iface, 0, filter)?;
    let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
    setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version).map_err(|_| os_err(iface, "set TPACKET_V3"))?;
    let too_large = || LiveCaptureError::Os {
        iface: iface.into(),
        what: "set up the ring",
        source: io::Error::new(io::ErrorKind::InvalidInput, "ring too large"),
    };
    let req = libc::tpacket_req3 {
        tp_block_size: BLOCK_SIZE as u32,
        tp_block_nr: u32::try_from(blocks).map_err(|_| too_large())?,
        tp_frame_size: FRAME_SIZE as u32,
        // Wraps for rings of 8 TiB and more: the kernel then refuses the ring (it checks).
        tp_frame_nr: (BLOCK_SIZE / FRAME_SIZE * blocks) as u32,
        tp_retire_blk_tov: BLOCK_TIMEOUT_MS,
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req).map_err(|_| os_err(iface, "set up the ring"))?;
    let len = BLOCK_SIZE * blocks;
    // SAFETY: maps the ring just set up on `fd`, `len` bytes (its whole size); the result is
    // checked before use.
    let base = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
    };
    if base == libc::MAP_FAILED {
        return Err(os_err(iface, "map the ring"));
    }
    let map = Mapped { base: base.cast(), len };
    packet_socket::bind(&fd, iface, ifindex)?;
    if let Some(id) = fanout {
        let arg = u32::from(id) | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
            .map_err(|_| os_err(iface, "join the fanout group"))?;
    }
    Ok(RingSock { map, fd, iface: iface.into(), blocks, block: 0, in_hand: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_header_layout_is_the_kernels() {
        // TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) = 48: where the kernel puts the sockaddr_ll.
        assert_eq!(SLL_OFFSET, 48);
        assert_eq!(std::mem::offset_of!(libc::tpacket_block_desc, hdr), 8, "block_status at byte 8");
        assert_eq!(std::mem::offset_of!(libc::tpacket_hdr_v1, num_pkts), 4, "frame count at byte 12");
        assert_eq!(std::mem::offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt), 8, "first frame at byte 16");
    }

    #[test]
    fn the_ring_is_whole_blocks_and_at_least_two() {
        assert_eq!(RingConfig { size: 32 << 20, fanout: None }.blocks(), 128);
        assert_eq!(RingConfig { size: (3 * BLOCK_SIZE) + 5, fanout: None }.blocks(), 3);
        assert_eq!(RingConfig { size: 0, fanout: None }.blocks(), 2);
    }

    #[test]
    fn a_missing_interface_names_the_ones_that_exist() {
        let Err(e) = Ring::open(&["no-such-if0".into()], &[1883], RingConfig::default()) else {
            panic!("opened a missing interface")
        };
        let msg = e.to_string();
        assert!(msg.contains("no-such-if0") && msg.contains("lo") && msg.contains("any"), "{msg}");
    }
}
