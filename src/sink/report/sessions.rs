//! The live agent's `/sessions` document: the same session objects as `analyze --format json`.
//!
//! Contract: [`SessionsDocument::select`] lists, of the sessions whose client id matches the
//! selection's pattern (all without one), at most `limit` open sessions (the most severe, in the
//! order they began; or, by [`SessionOrder::Deadline`], the nearest their deadline, nearest
//! first) and counts them all, then at most `limit` of the [`RecentSessions`] closed
//! ones (the newest), newest last.

use super::deadline::NearestDeadlines;
use super::filter::Glob;
use super::json::JSON_VERSION;
use super::rank::WorstSessions;
use crate::session::record::SessionRecord;
use serde::Serialize;
use std::collections::VecDeque;

/// The `/sessions` document: the same session objects as `analyze --format json`.
#[derive(Serialize)]
pub struct SessionsDocument {
    pub format: &'static str,
    pub version: u32,
    /// Open MQTT sessions, listed or not.
    pub open: u64,
    /// The listed open sessions (the most severe, in the order they began), then the most
    /// recently closed, newest last.
    pub sessions: Vec<SessionRecord>,
}

impl SessionsDocument {
    /// The document listing at most `limit` of the `open` sessions given (the most severe) and
    /// of the closed ones.
    pub fn new(open: impl IntoIterator<Item = SessionRecord>, limit: usize, closed: &RecentSessions) -> Self {
        Self::select(open, &SessionsSelection { limit, ..SessionsSelection::default() }, closed)
    }

    /// The document of the sessions `selection` chooses (see the module doc).
    pub fn select(
        open: impl IntoIterator<Item = SessionRecord>,
        selection: &SessionsSelection,
        closed: &RecentSessions,
    ) -> Self {
        let chosen = |r: &SessionRecord| match &selection.client_id {
            None => true,
            Some(g) => r.client_id.as_deref().is_some_and(|id| g.matches(id)),
        };
        let mut count = 0;
        let open = open.into_iter().filter(|r| chosen(r)).inspect(|_| count += 1);
        let listed = match selection.order {
            SessionOrder::Severity => {
                let mut worst = WorstSessions::new(selection.limit);
                open.for_each(|r| worst.push(r));
                let mut listed = worst.into_sorted();
                listed.sort_unstable_by_key(|r| r.id);
                listed
            }
            SessionOrder::Deadline => {
                let mut nearest = NearestDeadlines::new(selection.limit);
                open.for_each(|r| nearest.push(r));
                nearest.into_sorted()
            }
        };
        let mut recent: Vec<&SessionRecord> =
            closed.closed.iter().rev().filter(|r| chosen(r)).take(selection.limit).collect();
        recent.reverse();
        let sessions = listed.into_iter().chain(recent.into_iter().cloned()).collect();
        SessionsDocument { format: "mqtt-keepalive/sessions", version: JSON_VERSION, open: count, sessions }
    }
}

/// Which sessions `/sessions` lists: at most `limit` open and `limit` closed ones, those whose
/// client id matches `client_id` (all without it), the open ones chosen and ordered by `order`.
#[derive(Clone, Debug, Default)]
pub struct SessionsSelection {
    pub limit: usize,
    pub client_id: Option<Glob>,
    pub order: SessionOrder,
}

/// Which open sessions `/sessions` lists when there are more than its limit, and in what order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionOrder {
    /// The most severe, listed in the order they began (`sort=severity`, the default).
    #[default]
    Severity,
    /// The nearest their keepalive deadline, the nearest first; those past it first of all
    /// (`sort=deadline`).
    Deadline,
}

/// The most recently closed sessions, for a live agent's `/sessions`: at most `keep`.
pub struct RecentSessions {
    closed: VecDeque<SessionRecord>,
    keep: usize,
}

impl RecentSessions {
    pub fn new(keep: usize) -> Self {
        RecentSessions { closed: VecDeque::new(), keep }
    }

    pub fn push(&mut self, r: SessionRecord) {
        if self.keep == 0 {
            return;
        }
        if self.closed.len() == self.keep {
            self.closed.pop_front();
        }
        self.closed.push_back(r);
    }
}
