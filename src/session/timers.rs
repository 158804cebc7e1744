//! The session's three timers, packed: each timer's state is a one-byte kind beside its time in
//! [`Session`], not an enum with a payload, so a session stays small (a tracker holds one per
//! open connection, a million of them at scale).
//!
//! Contract: the rules in the parent module read and change the timers only through the typed
//! views here ([`KeepaliveClock`], [`Enforcement`], [`OutstandingPing`]); the packing is this
//! file's business alone.

use super::Session;
use crate::time::Timestamp;

/// The keepalive timer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeepaliveClock {
    /// No CONNECT seen (joined mid-stream, or not sent yet): no verdict from a guess.
    Unknown,
    /// Keepalive 0.
    Disabled,
    /// The client must show activity by `deadline`.
    Armed { deadline: Timestamp },
    /// The deadline passed at `since` and the client has been silent since.
    Expired { since: Timestamp },
    /// The session is closed.
    Stopped,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct OutstandingPing {
    pub(super) sent: Timestamp,
    pub(super) reported: bool,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Enforcement {
    /// No expiry yet.
    None,
    /// Expired at `deadline`; `resumed` once the client was active again.
    Pending {
        deadline: Timestamp,
        resumed: bool,
    },
    Decided,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ClockKind {
    Unknown,
    Disabled,
    Armed,
    Expired,
    Stopped,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum EnforcementKind {
    None,
    Pending,
    PendingResumed,
    Decided,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum PingKind {
    None,
    Outstanding,
    Reported,
}

impl Session {
    /// The keepalive timer.
    #[inline]
    pub fn clock(&self) -> KeepaliveClock {
        match self.clock_kind {
            ClockKind::Unknown => KeepaliveClock::Unknown,
            ClockKind::Disabled => KeepaliveClock::Disabled,
            ClockKind::Armed => KeepaliveClock::Armed { deadline: self.clock_at },
            ClockKind::Expired => KeepaliveClock::Expired { since: self.clock_at },
            ClockKind::Stopped => KeepaliveClock::Stopped,
        }
    }

    #[inline]
    pub(super) fn set_clock(&mut self, clock: KeepaliveClock) {
        (self.clock_kind, self.clock_at) = match clock {
            KeepaliveClock::Unknown => (ClockKind::Unknown, self.clock_at),
            KeepaliveClock::Disabled => (ClockKind::Disabled, self.clock_at),
            KeepaliveClock::Armed { deadline } => (ClockKind::Armed, deadline),
            KeepaliveClock::Expired { since } => (ClockKind::Expired, since),
            KeepaliveClock::Stopped => (ClockKind::Stopped, self.clock_at),
        };
    }

    #[inline]
    pub(super) fn enforcement(&self) -> Enforcement {
        match self.enforcement_kind {
            EnforcementKind::None => Enforcement::None,
            EnforcementKind::Pending => Enforcement::Pending { deadline: self.enforcement_at, resumed: false },
            EnforcementKind::PendingResumed => Enforcement::Pending { deadline: self.enforcement_at, resumed: true },
            EnforcementKind::Decided => Enforcement::Decided,
        }
    }

    #[inline]
    pub(super) fn set_enforcement(&mut self, e: Enforcement) {
        (self.enforcement_kind, self.enforcement_at) = match e {
            Enforcement::None => (EnforcementKind::None, self.enforcement_at),
            Enforcement::Pending { deadline, resumed: false } => (EnforcementKind::Pending, deadline),
            Enforcement::Pending { deadline, resumed: true } => (EnforcementKind::PendingResumed, deadline),
            Enforcement::Decided => (EnforcementKind::Decided, self.enforcement_at),
        };
    }

    #[inline]
    pub(super) fn ping(&self) -> Option<OutstandingPing> {
        match self.ping_kind {
            PingKind::None => None,
            PingKind::Outstanding => Some(OutstandingPing { sent: self.ping_sent, reported: false }),
            PingKind::Reported => Some(OutstandingPing { sent: self.ping_sent, reported: true }),
        }
    }

    #[inline]
    pub(super) fn set_ping(&mut self, ping: Option<OutstandingPing>) {
        (self.ping_kind, self.ping_sent) = match ping {
            None => (PingKind::None, self.ping_sent),
            Some(OutstandingPing { sent, reported: false }) => (PingKind::Outstanding, sent),
            Some(OutstandingPing { sent, reported: true }) => (PingKind::Reported, sent),
        };
    }
}
