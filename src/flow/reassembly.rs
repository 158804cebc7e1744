//! One direction of a TCP connection, turned back into an in-order byte stream.
//!
//! Contract: [`Reassembler`] yields each byte of the stream at most once and strictly in order,
//! as [`Chunk::Data`]. Retransmissions and overlaps are trimmed (counted once). Out-of-order
//! segments wait in a store capped at `max_buffered` bytes. A hole is given up as a
//! [`Chunk::Gap`] of its exact size when the peer has acknowledged bytes past it (they were sent
//! and received, the capture just lost them), when the store is full, or on [`Reassembler::flush`]
//! (FIN, RST, eviction, end of capture). Bytes cut off by the capture's snaplen are a gap too.
//! In-order segments are passed through without copying or allocating.

use super::seq::SeqNumber;

/// Segments (and acknowledgments) further ahead of the next expected byte than the largest TCP
/// window (2^30 with window scaling) are out of window and ignored.
pub const MAX_WINDOW: i64 = 1 << 30;

/// What the reassembler hands on, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Stream bytes, in order.
    Data(&'a [u8]),
    /// This many stream bytes were never captured.
    Gap(u64),
}

/// What became of one segment (for counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No payload.
    Empty,
    /// Delivered in order (possibly after trimming an overlap).
    InOrder,
    /// Every byte had been delivered already.
    Retransmission,
    /// Stored until the hole before it fills.
    OutOfOrder,
    /// Too far ahead of the stream to be plausible; dropped.
    OutOfWindow,
}

#[derive(Debug)]
struct Pending {
    seq: SeqNumber,
    data: Box<[u8]>,
    /// Length on the wire: `data.len()` plus any bytes cut off by the snaplen.
    wire_len: u32,
}

/// A reassembler holding no bytes is just two sequence numbers: the connection table keeps
/// idle connections in this form (see [`Reassembler::rest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReasmRest {
    pub next: Option<SeqNumber>,
    pub peer_acked: Option<SeqNumber>,
}

/// Reassembly state for one direction.
#[derive(Debug, Default)]
pub struct Reassembler {
    next: Option<SeqNumber>,
    pending: Vec<Pending>,
    pending_bytes: usize,
    peer_acked: Option<SeqNumber>,
    max_buffered: usize,
}

impl Reassembler {
    /// A reassembler that buffers at most `max_buffered` out-of-order bytes.
    pub fn new(max_buffered: usize) -> Self {
        Reassembler { max_buffered, ..Default::default() }
    }

    /// The sequence number of the next byte expected, once known.
    pub fn next_seq(&self) -> Option<SeqNumber> {
        self.next
    }

    /// Bytes held out of order.
    pub fn buffered(&self) -> usize {
        self.pending_bytes
    }

    /// The state at rest, when no out-of-order bytes are held (`None` otherwise).
    pub fn rest(&self) -> Option<ReasmRest> {
        self.pending.is_empty().then_some(ReasmRest { next: self.next, peer_acked: self.peer_acked })
    }

    /// Puts back a state at rest (any held bytes are dropped; their buffer is kept for reuse).
    pub fn restore(&mut self, rest: ReasmRest) {
        self.pending.clear();
        self.pending_bytes = 0;
        self.next = rest.next;
        self.peer_acked = rest.peer_acked;
    }

    /// A SYN with initial sequence number `isn`: the stream starts at `isn + 1`.
    /// Ignored once the stream has started (a retransmitted SYN).
    pub fn on_syn(&mut self, isn: SeqNumber) {
        if self.next.is_none() {
            self.next = Some(isn.wrapping_add(1));
        }
    }

    /// A FIN at `fin_seq` (after the segment's payload): once the stream reaches it, the FIN's
    /// sequence number is consumed, so the peer's ACK of it is not mistaken for lost bytes.
    pub fn on_fin(&mut self, fin_seq: SeqNumber) {
        match self.next {
            Some(next) if next == fin_seq => self.next = Some(fin_seq.wrapping_add(1)),
            None => self.next = Some(fin_seq.wrapping_add(1)),
            _ => {}
        }
    }

    /// A segment carrying `payload` at `seq`; `wire_len` is its payload length on the wire
    /// (larger than `payload.len()` when the capture truncated it).
    pub fn on_segment(
        &mut self,
        seq: SeqNumber,
        payload: &[u8],
        wire_len: u32,
        out: &mut impl FnMut(Chunk<'_>),
    ) -> Outcome {
        let wire_len = wire_len.max(payload.len() as u32);
        if wire_len == 0 {
            return Outcome::Empty;
        }
        // Joined mid-stream: the first data segment seen starts the stream.
        let next = *self.next.get_or_insert(seq);
        let ahead = seq.distance_from(next);
        let outcome = if ahead > 0 {
            if ahead > MAX_WINDOW {
                return Outcome::OutOfWindow;
            }
            self.store(seq, payload, wire_len, out);
            Outcome::OutOfOrder
        } else if self.deliver(seq, payload, wire_len, out) {
            Outcome::InOrder
        } else {
            Outcome::Retransmission
        };
        self.drain(out);
        self.resolve_acked(out);
        outcome
    }

    /// The peer acknowledged every byte before `ack`. A hole before it will never be filled by
    /// the capture: it becomes a gap.
    pub fn on_peer_ack(&mut self, ack: SeqNumber, out: &mut impl FnMut(Chunk<'_>)) {
        let Some(next) = self.next else { return };
        let ahead = ack.distance_from(next);
        if ahead <= 0 || ahead > MAX_WINDOW {
            return;
        }
        if self.peer_acked.is_none_or(|acked| ack > acked) {
            self.peer_acked = Some(ack);
        }
        self.resolve_acked(out);
    }

    /// Give up every hole: deliver all stored bytes, with gaps where bytes are missing.
    pub fn flush(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while !self.pending.is_empty() {
            self.skip_to_first_pending(out);
        }
    }

    /// Delivers the part of `[seq, seq + wire_len)` at or after `next`; false if nothing was new.
    fn deliver(&mut self, seq: SeqNumber, payload: &[u8], wire_len: u32, out: &mut impl FnMut(Chunk<'_>)) -> bool {
        let next = self.next.expect("deliver runs once the stream has started");
        let behind = next.distance_from(seq);
        debug_assert!(behind >= 0);
        let behind = behind as u64;
        if behind >= u64::from(wire_len) {
            return false;
        }
        let data = payload.get(behind as usize..).unwrap_or(&[]);
        if !data.is_empty() {
            out(Chunk::Data(data));
        }
        let missing = u64::from(wire_len) - behind - data.len() as u64;
        if missing > 0 {
            out(Chunk::Gap(missing));
        }
        self.next = Some(seq.wrapping_add(wire_len));
        true
    }

    fn store(&mut self, seq: SeqNumber, payload: &[u8], wire_len: u32, out: &mut impl FnMut(Chunk<'_>)) {
        if self.pending.iter().any(|p| p.seq == seq && p.wire_len >= wire_len) {
            return; // a retransmission of a segment already waiting
        }
        while self.pending_bytes + payload.len() > self.max_buffered && !self.pending.is_empty() {
            self.skip_to_first_pending(out);
        }
        let next = self.next.expect("store runs once the stream has started");
        if seq.distance_from(next) <= 0 {
            // Giving up holes caught the stream up to this segment.
            self.deliver(seq, payload, wire_len, out);
            return;
        }
        if payload.len() > self.max_buffered {
            // Cannot hold it: the bytes before it and the segment itself are lost to us.
            let lost = seq.distance_from(next) as u64 + u64::from(wire_len);
            out(Chunk::Gap(lost));
            self.next = Some(seq.wrapping_add(wire_len));
            return;
        }
        let at = self.pending.partition_point(|p| p.seq.distance_from(seq) < 0);
        self.pending_bytes += payload.len();
        self.pending.insert(at, Pending { seq, data: payload.into(), wire_len });
    }

    /// Deliver stored segments that the stream has reached.
    fn drain(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        while let Some(first) = self.pending.first() {
            let next = self.next.expect("pending implies started");
            if first.seq.distance_from(next) > 0 {
                break;
            }
            let p = self.pending.remove(0);
            self.pending_bytes -= p.data.len();
            self.deliver(p.seq, &p.data, p.wire_len, out);
        }
    }

    /// Give up the hole before the first stored segment.
    fn skip_to_first_pending(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        let (Some(next), Some(first)) = (self.next, self.pending.first()) else { return };
        let hole = first.seq.distance_from(next);
        if hole > 0 {
            out(Chunk::Gap(hole as u64));
            self.next = Some(first.seq);
        }
        self.drain(out);
    }

    fn resolve_acked(&mut self, out: &mut impl FnMut(Chunk<'_>)) {
        let Some(acked) = self.peer_acked else { return };
        loop {
            let next = self.next.expect("acks are only kept once started");
            let hole_end = match self.pending.first() {
                Some(p) if p.seq.distance_from(acked) < 0 => p.seq,
                _ => acked,
            };
            let hole = hole_end.distance_from(next);
            if hole <= 0 {
                return;
            }
            out(Chunk::Gap(hole as u64));
            self.next = Some(hole_end);
            self.drain(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` and returns what it delivered, with gaps as `[gap N]`.
    fn collect(f: impl FnOnce(&mut dyn FnMut(Chunk<'_>))) -> String {
        let mut s = String::new();
        f(&mut |c| match c {
            Chunk::Data(d) => s.push_str(std::str::from_utf8(d).unwrap()),
            Chunk::Gap(n) => s.push_str(&format!("[gap {n}]")),
        });
        s
    }

    fn seg(r: &mut Reassembler, seq: u32, data: &str) -> (Outcome, String) {
        let mut outcome = Outcome::Empty;
        let s =
            collect(|out| outcome = r.on_segment(SeqNumber(seq), data.as_bytes(), data.len() as u32, &mut |c| out(c)));
        (outcome, s)
    }

    fn started_at(isn: u32) -> Reassembler {
        let mut r = Reassembler::new(1024);
        r.on_syn(SeqNumber(isn));
        r
    }

    #[test]
    fn in_order_segments_pass_through() {
        let mut r = started_at(99);
        assert_eq!(seg(&mut r, 100, "abc"), (Outcome::InOrder, "abc".into()));
        assert_eq!(seg(&mut r, 103, "de"), (Outcome::InOrder, "de".into()));
    }

    #[test]
    fn out_of_order_waits_for_the_hole() {
        let mut r = started_at(99);
        assert_eq!(seg(&mut r, 103, "def"), (Outcome::OutOfOrder, "".into()));
        assert_eq!(r.buffered(), 3);
        assert_eq!(seg(&mut r, 100, "abc"), (Outcome::InOrder, "abcdef".into()));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn retransmissions_and_overlaps_are_delivered_once() {
        let mut r = started_at(99);
        seg(&mut r, 100, "abcd");
        assert_eq!(seg(&mut r, 100, "abcd"), (Outcome::Retransmission, "".into()));
        assert_eq!(seg(&mut r, 102, "cdef"), (Outcome::InOrder, "ef".into()));
        // Two stored segments that overlap each other.
        seg(&mut r, 110, "klm");
        seg(&mut r, 108, "ijkl");
        assert_eq!(seg(&mut r, 106, "gh"), (Outcome::InOrder, "ghijklm".into()));
    }

    #[test]
    fn one_byte_segments_in_reverse_order() {
        let mut r = started_at(0);
        let text = "hello";
        let mut got = String::new();
        for (i, c) in text.char_indices().rev() {
            got += &seg(&mut r, 1 + i as u32, &c.to_string()).1;
        }
        assert_eq!(got, "hello");
    }

    #[test]
    fn sequence_wraparound() {
        let mut r = started_at(u32::MAX - 2); // stream starts at MAX-1
        assert_eq!(seg(&mut r, u32::MAX - 1, "ab").1, "ab");
        assert_eq!(r.next_seq(), Some(SeqNumber(0)));
        assert_eq!(seg(&mut r, 2, "cd"), (Outcome::OutOfOrder, "".into()));
        assert_eq!(seg(&mut r, 0, "xy").1, "xycd");
    }

    #[test]
    fn peer_ack_past_a_hole_makes_it_a_gap() {
        let mut r = started_at(99);
        seg(&mut r, 100, "ab");
        seg(&mut r, 105, "fg");
        let s = collect(|out| r.on_peer_ack(SeqNumber(107), &mut |c| out(c)));
        assert_eq!(s, "[gap 3]fg");
        // The lost bytes arriving later are retransmissions, not new data.
        assert_eq!(seg(&mut r, 102, "cde"), (Outcome::Retransmission, "".into()));
    }

    #[test]
    fn peer_ack_with_nothing_stored_skips_the_lost_tail() {
        let mut r = started_at(99);
        seg(&mut r, 100, "ab");
        let s = collect(|out| r.on_peer_ack(SeqNumber(110), &mut |c| out(c)));
        assert_eq!(s, "[gap 8]");
        assert_eq!(seg(&mut r, 110, "z").1, "z");
    }

    #[test]
    fn full_store_gives_up_the_oldest_hole() {
        let mut r = Reassembler::new(4);
        r.on_syn(SeqNumber(0));
        seg(&mut r, 3, "cc");
        seg(&mut r, 8, "ee");
        // 4 bytes stored: one more segment forces the first hole out.
        let (_, s) = seg(&mut r, 12, "gg");
        assert_eq!(s, "[gap 2]cc");
        assert!(r.buffered() <= 4);
        let s = collect(|out| r.flush(&mut |c| out(c)));
        assert_eq!(s, "[gap 3]ee[gap 2]gg");
    }

    #[test]
    fn snaplen_truncation_is_a_gap_of_the_cut_length() {
        let mut r = started_at(0);
        let s = collect(|out| {
            r.on_segment(SeqNumber(1), b"abc", 10, &mut |c| out(c));
        });
        assert_eq!(s, "abc[gap 7]");
        assert_eq!(r.next_seq(), Some(SeqNumber(11)));
    }

    #[test]
    fn joined_mid_stream_starts_at_the_first_data_seen() {
        let mut r = Reassembler::new(64);
        assert_eq!(seg(&mut r, 5000, "xyz"), (Outcome::InOrder, "xyz".into()));
        assert_eq!(seg(&mut r, 4000, "old"), (Outcome::Retransmission, "".into()));
    }

    #[test]
    fn the_fin_sequence_number_is_not_a_gap() {
        let mut r = started_at(0);
        seg(&mut r, 1, "ab");
        r.on_fin(SeqNumber(3));
        let s = collect(|out| r.on_peer_ack(SeqNumber(4), &mut |c| out(c)));
        assert_eq!(s, "");
    }

    #[test]
    fn far_ahead_segments_are_out_of_window() {
        let mut r = started_at(0);
        let far = (MAX_WINDOW + 10) as u32;
        assert_eq!(seg(&mut r, far, "x").0, Outcome::OutOfWindow);
        assert_eq!(r.buffered(), 0);
    }
}
