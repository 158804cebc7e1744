//! The live agent's `/sessions` document: the same session objects as `analyze --format json`.
//!
//! Contract: [`SessionsDocument::new`] lists at most `limit` open sessions (the most severe, in
//! the order they began) and counts them all, then the [`RecentSessions`] closed ones, newest
//! last.

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
    /// The document listing at most `limit` of the `open` sessions given (the most severe).
    pub fn new(open: impl IntoIterator<Item = SessionRecord>, limit: usize, closed: &RecentSessions) -> Self {
        let mut worst = WorstSessions::new(limit);
        let mut count = 0;
        for r in open {
            count += 1;
            worst.push(r);
        }
        let mut listed = worst.into_sorted();
        listed.sort_unstable_by_key(|r| r.id);
        let sessions = listed.into_iter().chain(closed.closed.iter().cloned()).collect();
        SessionsDocument { format: "mqtt-keepalive/sessions", version: JSON_VERSION, open: count, sessions }
    }
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
