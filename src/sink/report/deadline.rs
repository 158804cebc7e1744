//! The open sessions nearest their keepalive deadline, for `/sessions?sort=deadline` (and
//! `top`): the `keep` with the earliest deadlines of any number, in memory for `keep` only.
//!
//! Contract: the order is by deadline, earliest first (those already past it, open and expired,
//! come first, the most overdue first), then by session id; sessions without a deadline
//! (keepalive off or unknown) come after every session with one.

use crate::session::record::SessionRecord;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// The sort key: (no deadline, deadline in ns, id).
fn key(r: &SessionRecord) -> (bool, i64, u64) {
    (r.deadline.is_none(), r.deadline.map_or(i64::MAX, |d| d.as_nanos()), r.id)
}

/// Orders two records by deadline, earliest first.
pub fn nearest_first(a: &SessionRecord, b: &SessionRecord) -> Ordering {
    key(a).cmp(&key(b))
}

/// A record ordered by its deadline (greater = later).
struct ByDeadline(SessionRecord);

impl PartialEq for ByDeadline {
    fn eq(&self, other: &Self) -> bool {
        key(&self.0) == key(&other.0)
    }
}
impl Eq for ByDeadline {}
impl PartialOrd for ByDeadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByDeadline {
    fn cmp(&self, other: &Self) -> Ordering {
        nearest_first(&self.0, &other.0)
    }
}

/// The `keep` sessions with the earliest deadlines.
pub struct NearestDeadlines {
    keep: usize,
    /// The latest kept deadline on top.
    heap: BinaryHeap<ByDeadline>,
}

impl NearestDeadlines {
    pub fn new(keep: usize) -> Self {
        NearestDeadlines { keep, heap: BinaryHeap::new() }
    }

    pub fn push(&mut self, r: SessionRecord) {
        if self.keep == 0 {
            return;
        }
        if self.heap.len() < self.keep {
            self.heap.push(ByDeadline(r));
        } else if let Some(mut latest) = self.heap.peek_mut()
            && nearest_first(&r, &latest.0) == Ordering::Less
        {
            *latest = ByDeadline(r);
        }
    }

    /// The kept sessions, earliest deadline first.
    pub fn into_sorted(self) -> Vec<SessionRecord> {
        self.heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::event::FlowKeyJson;
    use crate::session::record::RecordState;
    use crate::time::Timestamp;

    fn record(id: u64, deadline: Option<f64>) -> SessionRecord {
        let s = RecordState::new(Timestamp::from_secs_f64(0.0), false);
        let flow = FlowKeyJson { client: "10.0.0.1:1".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() };
        let mut r = s.snapshot(id, flow, std::time::Duration::ZERO);
        r.deadline = deadline.map(Timestamp::from_secs_f64);
        r
    }

    #[test]
    fn keeps_the_earliest_deadlines_and_puts_none_last() {
        let all: Vec<SessionRecord> =
            (0..300u64).map(|i| record(i, (i % 10 != 0).then(|| ((i * 7919) % 1000) as f64 / 10.0))).collect();
        let mut full = all.clone();
        full.sort_by(nearest_first);
        let mut kept = NearestDeadlines::new(25);
        all.into_iter().rev().for_each(|r| kept.push(r));
        let ids: Vec<u64> = kept.into_sorted().iter().map(|r| r.id).collect();
        assert_eq!(ids, full[..25].iter().map(|r| r.id).collect::<Vec<_>>());
        assert!(full.last().unwrap().deadline.is_none(), "without a deadline: last");
        let mut few = NearestDeadlines::new(5);
        few.push(record(1, None));
        few.push(record(2, Some(3.0)));
        let ids: Vec<u64> = few.into_sorted().iter().map(|r| r.id).collect();
        assert_eq!(ids, [2, 1]);
    }
}
