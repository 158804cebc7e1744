//! Input formats and recorders shared by the TLS and WebSocket targets (`#[path]`-included).
//!
//! One-sided input (`tls_record`, `tls_handshake`): byte 0 = flags (low 4 bits: plan length k;
//! bit 7: gap mode), then k plan bytes, then the stream. The stream is cut into chunks whose sizes
//! cycle through the plan (byte b: b + 1 bytes; no plan: one chunk). In gap mode a plan byte of
//! 0xC0 or more is a gap of ((b & 0x3F) * 97 + 1) bytes instead of a chunk.
//!
//! Two-sided input (`tls_layer`, `ws_layer`): byte 0 = mode, then segments `[tag][len u16 BE]
//! [bytes]`: tag bit 0 = the broker's side, bit 1 = a gap of `len` bytes (no bytes follow); a
//! last segment shorter than its length takes what is left.
#![allow(dead_code)]

use mqtt_keepalive::flow::Side;
use mqtt_keepalive::layer::{Chunk, LayerEvent, UNKNOWN_LEN, Up};

/// One piece of a plan.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    Data(usize),
    Gap(u64),
}

/// The chunk plan and the stream of a one-sided input; `gaps`: the plan may hold gaps.
pub fn one_sided(data: &[u8]) -> Option<(Vec<Step>, &[u8], bool)> {
    let (&flags, rest) = data.split_first()?;
    let k = usize::from(flags & 0x0F).min(rest.len());
    let gaps = flags & 0x80 != 0;
    let (plan, stream) = rest.split_at(k);
    let plan =
        plan.iter()
            .map(|&b| {
                if gaps && b >= 0xC0 { Step::Gap(u64::from(b & 0x3F) * 97 + 1) } else { Step::Data(usize::from(b) + 1) }
            })
            .collect();
    Some((plan, stream, gaps))
}

/// Cuts `stream` by `plan` (cycling); calls `f` with each chunk, gaps included.
pub fn chunks(stream: &[u8], plan: &[Step], mut f: impl FnMut(Chunk<'_>)) {
    if !plan.iter().any(|s| matches!(s, Step::Data(_))) {
        if !stream.is_empty() {
            f(Chunk::Data(stream));
        }
        for s in plan {
            if let Step::Gap(n) = s {
                f(Chunk::Gap(*n));
            }
        }
        return;
    }
    let mut at = 0;
    for step in plan.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        match *step {
            Step::Data(n) => {
                let end = (at + n).min(stream.len());
                f(Chunk::Data(&stream[at..end]));
                at = end;
            }
            Step::Gap(n) => f(Chunk::Gap(n)),
        }
    }
}

/// An owned segment of a two-sided input.
#[derive(Clone, Debug)]
pub enum Seg {
    Data(Side, Vec<u8>),
    Gap(Side, u64),
}

impl Seg {
    pub fn side(&self) -> Side {
        match self {
            Seg::Data(s, _) | Seg::Gap(s, _) => *s,
        }
    }
    pub fn chunk(&self) -> Chunk<'_> {
        match self {
            Seg::Data(_, d) => Chunk::Data(d),
            Seg::Gap(_, n) => Chunk::Gap(*n),
        }
    }
}

/// The mode byte and segments of a two-sided input.
pub fn two_sided(data: &[u8]) -> Option<(u8, Vec<Seg>)> {
    let (&mode, mut rest) = data.split_first()?;
    let mut segs = Vec::new();
    while let [tag, hi, lo, tail @ ..] = rest {
        let side = if tag & 1 == 0 { Side::Client } else { Side::Broker };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tag & 2 != 0 {
            segs.push(Seg::Gap(side, len as u64));
            rest = tail;
        } else {
            let n = len.min(tail.len());
            segs.push(Seg::Data(side, tail[..n].to_vec()));
            rest = &tail[n..];
        }
    }
    Some((mode, segs))
}

/// The same segments with adjacent data of the same side joined: the same two streams, split
/// differently.
pub fn coalesced(segs: &[Seg]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    for s in segs {
        match (out.last_mut(), s) {
            (Some(Seg::Data(a, prev)), Seg::Data(b, d)) if *a == *b => prev.extend_from_slice(d),
            _ => out.push(s.clone()),
        }
    }
    out
}

/// What a layer handed up, per item, adjacent data of one side joined.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Data(Side, Vec<u8>),
    Gap(Side, u64),
    Event(Side, LayerEvent),
}

/// An [`Up`] that records everything, and counts the data bytes per side.
#[derive(Default)]
pub struct Recorder {
    pub items: Vec<Item>,
    /// Data bytes handed up: client, broker.
    pub up_bytes: [u64; 2],
}

pub fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Broker => 1,
    }
}

impl Up for Recorder {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        self.up_bytes[idx(side)] += bytes.len() as u64;
        if bytes.is_empty() {
            return;
        }
        match self.items.last_mut() {
            Some(Item::Data(s, prev)) if *s == side => prev.extend_from_slice(bytes),
            _ => self.items.push(Item::Data(side, bytes.to_vec())),
        }
    }
    fn gap(&mut self, side: Side, len: u64) {
        self.items.push(Item::Gap(side, len));
    }
    fn event(&mut self, side: Side, event: LayerEvent) {
        self.items.push(Item::Event(side, event));
    }
}

impl Recorder {
    /// The items up to and including the first for which `cut` is true (all when none is).
    pub fn prefix(&self, cut: impl Fn(&Item) -> bool) -> &[Item] {
        match self.items.iter().position(cut) {
            Some(i) => &self.items[..=i],
            None => &self.items,
        }
    }
}

/// True for a gap whose size the layer above cannot know (its framing is lost).
pub fn unknown_gap(item: &Item) -> bool {
    matches!(item, Item::Gap(_, UNKNOWN_LEN))
}
