//! Choosing sessions: `--client-id PATTERN`, `--since`, `--until`, `--session ID` of `analyze`,
//! and `/sessions?client_id=` of the live agent.
//!
//! Contract: a [`Glob`] matches a whole client id, `*` standing for any run of characters
//! (none too) and `?` for exactly one; every other character stands for itself (there is no
//! escape: a literal `*` is matched by `*`). A session without a client id (no CONNECT seen)
//! matches no pattern. [`SessionFilter::matches`] keeps a session record when every given
//! condition holds: its client id matches, it was still going at `since` (its last packet at or
//! after it), it had begun by `until`, and its id is `session`. [`SessionFilter::wants_event`]
//! is the same choice for one event of the JSON-lines stream: its time is within
//! `since..=until`, its session is `session`, and its session's client id (as known when the
//! event happens) matches. Matching is linear in the pattern times the id at worst; nothing
//! here panics.

use crate::session::record::SessionRecord;
use crate::session::{Event, SessionId};
use crate::time::Timestamp;

/// A client id pattern: `*` any run of characters, `?` one character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Glob(pattern.chars().collect())
    }

    /// True when the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        let (p, t): (&[char], Vec<char>) = (&self.0, s.chars().collect());
        // Two pointers; on a mismatch, go back to just after the last `*` and let it take one
        // more character.
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] == t[ti] && p[pi] != '*')) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl std::fmt::Display for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|c| write!(f, "{c}"))
    }
}

/// Which sessions (and events) a report shows; empty shows all.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub client_id: Option<Glob>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub session: Option<SessionId>,
}

impl SessionFilter {
    /// True when no condition is given.
    pub fn is_empty(&self) -> bool {
        self.client_id.is_none() && self.since.is_none() && self.until.is_none() && self.session.is_none()
    }

    /// True when a session with this client id matches the pattern (if any).
    pub fn client_id_matches(&self, client_id: Option<&str>) -> bool {
        match &self.client_id {
            None => true,
            Some(g) => client_id.is_some_and(|id| g.matches(id)),
        }
    }

    /// True when the session record is shown (see the module doc).
    pub fn matches(&self, r: &SessionRecord) -> bool {
        self.client_id_matches(r.client_id.as_deref())
            && self.since.is_none_or(|since| r.ended.is_none_or(|end| end >= since))
            && self.until.is_none_or(|until| r.started <= until)
            && self.session.is_none_or(|id| r.id == id)
    }

    /// True when an event is written, its session's client id being `client_id` (when known).
    pub fn wants_event(&self, e: &Event, client_id: Option<&str>) -> bool {
        self.since.is_none_or(|since| e.ts >= since)
            && self.until.is_none_or(|until| e.ts <= until)
            && self.session.is_none_or(|id| e.session == id)
            && self.client_id_matches(client_id)
    }

    /// The conditions as given on the command line, for the report's title.
    pub fn describe(&self, zone: super::times::Zone) -> String {
        let mut parts = Vec::new();
        if let Some(g) = &self.client_id {
            parts.push(format!("--client-id {}", super::terminal::escape(&g.to_string())));
        }
        if let Some(t) = self.since {
            parts.push(format!("--since {}", zone.format(t)));
        }
        if let Some(t) = self.until {
            parts.push(format!("--until {}", zone.format(t)));
        }
        if let Some(id) = self.session {
            parts.push(format!("--session {id}"));
        }
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_ids() {
        let g = |p: &str, s: &str| Glob::new(p).matches(s);
        assert!(g("sensor-*", "sensor-7") && g("sensor-*", "sensor-") && !g("sensor-*", "a-sensor-7"));
        assert!(g("*-7", "sensor-7") && g("s?nsor-?", "sensor-7") && !g("s?nsor-?", "sensor-77"));
        assert!(g("*", "") && g("*", "anything") && g("", "") && !g("", "x"));
        assert!(g("a*b*c", "aXXbYYc") && g("a*b*c", "abc") && !g("a*b*c", "acb"));
        assert!(g("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab") && !g("*a*a*a*a*b", &"a".repeat(40)));
        assert!(g("传感器-?", "传感器-7") && g("exact", "exact") && !g("exact", "Exact"));
        assert_eq!(Glob::new("s*-?").to_string(), "s*-?");
    }
}
