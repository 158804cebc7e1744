//! Ranking sessions by severity: the text table's order, and the `keep` most severe of any
//! number of sessions in memory for `keep` only.

use crate::session::record::SessionRecord;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The text table's order: most severe first, then the most silence for the keepalive (highest
/// headroom), then the session that began first.
pub(crate) fn worse_first(a: &SessionRecord, b: &SessionRecord) -> Ordering {
    b.severity()
        .cmp(&a.severity())
        .then(b.headroom.unwrap_or(0.0).total_cmp(&a.headroom.unwrap_or(0.0)))
        .then(a.id.cmp(&b.id))
}

/// The `keep` most severe sessions (in the text table's order), from any number, in memory for
/// `keep` only.
pub struct WorstSessions {
    keep: usize,
    /// The least severe kept session on top.
    heap: BinaryHeap<Ranked>,
}

/// A record ordered by how early the text table lists it (greater = listed later).
struct Ranked(SessionRecord);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        worse_first(&self.0, &other.0)
    }
}

impl WorstSessions {
    pub fn new(keep: usize) -> Self {
        WorstSessions { keep, heap: BinaryHeap::new() }
    }

    pub fn push(&mut self, r: SessionRecord) {
        if self.keep == 0 {
            return;
        }
        if self.heap.len() == self.keep {
            match self.heap.peek_mut() {
                Some(mut least) if worse_first(&r, &least.0) == Ordering::Less => *least = Ranked(r),
                _ => {}
            }
        } else {
            self.heap.push(Ranked(r));
        }
    }

    /// The kept sessions, most severe first.
    pub fn into_sorted(self) -> Vec<SessionRecord> {
        self.heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::FlowKeyJson;
    use crate::session::record::RecordState;
    use crate::session::{Event, EventKind};
    use crate::time::Timestamp;
    use std::time::Duration;

    fn end(ts: f64, silence: f64, mqtt: bool) -> EventKind {
        EventKind::SessionEnd {
            last_packet: Timestamp::from_secs_f64(ts),
            max_silence_s: Duration::from_secs_f64(silence),
            open: false,
            evicted: false,
            mqtt,
        }
    }

    #[test]
    fn worst_sessions_keeps_the_head_of_the_table_order() {
        let record = |id: u64, expired: bool, headroom: f64| {
            let mut s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
            let flow = FlowKeyJson { client: "10.0.0.1:1".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
            let mut r = s
                .finish(&Event {
                    ts: Timestamp::from_secs_f64(1.0),
                    session: id,
                    flow,
                    kind: end(1.0, 1.0, true),
                    client_id: None,
                })
                .unwrap();
            (r.id, r.expired, r.headroom) = (id, expired, Some(headroom));
            r
        };
        let all: Vec<SessionRecord> =
            (0..200u64).map(|i| record(i, i % 7 == 0, ((i * 37) % 11) as f64 / 4.0)).collect();
        let mut full: Vec<&SessionRecord> = all.iter().collect();
        full.sort_by(|a, b| worse_first(a, b));
        let mut worst = WorstSessions::new(10);
        all.iter().rev().cloned().for_each(|r| worst.push(r));
        let kept: Vec<u64> = worst.into_sorted().iter().map(|r| r.id).collect();
        assert_eq!(kept, full[..10].iter().map(|r| r.id).collect::<Vec<_>>());
        assert!(all[kept[0] as usize].expired, "an expired session heads the table");
    }
}
