//! Packet time: the only clock type below the loops, and the one rule that keeps it.
//!
//! A [`Timestamp`] is nanoseconds since the Unix epoch, taken from the capture record (offline) or
//! the kernel's packet timestamp (live). Spans between timestamps are [`std::time::Duration`]s.
//! Arithmetic saturates: a timestamp never overflows or panics, whatever a capture file claims.
//! [`PacketClock`] is the clock every loop runs the analysis on: it never goes backwards (a
//! packet stamped earlier than the clock is counted and taken as "now"). [`StreamClock`] maps
//! the wall clock onto packet time for a capture fed live through a pipe. This module and the
//! live loop are the only places that read the system's clocks (a clippy rule keeps it so).

use std::fmt;
use std::time::Duration;

/// A point in packet time, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Timestamp {
    /// The timestamp `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    /// A timestamp from whole seconds plus a fraction counted in `units_per_sec` units
    /// (1_000_000 for microsecond captures, 1_000_000_000 for nanosecond ones).
    pub fn from_parts(secs: u64, frac: u64, units_per_sec: u64) -> Self {
        let units = units_per_sec.max(1) as u128;
        let frac_ns = (frac as u128 * NANOS_PER_SEC as u128) / units;
        let total = secs as u128 * NANOS_PER_SEC as u128 + frac_ns;
        Timestamp(i64::try_from(total).unwrap_or(i64::MAX))
    }

    /// A timestamp from fractional seconds (tests and examples).
    pub fn from_secs_f64(secs: f64) -> Self {
        Timestamp((secs * NANOS_PER_SEC as f64).round() as i64)
    }

    /// The system's real-time clock now (the clock the kernel stamps packets with). Only the
    /// live loop reads it; below it, time is always an argument.
    #[allow(clippy::disallowed_methods)] // the one place the real-time clock is read
    pub fn now_realtime() -> Self {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Seconds since the epoch, as a float (for reports).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }

    /// This timestamp moved `d` later, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        let nanos = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    /// The span from `earlier` to `self`; zero when `earlier` is not earlier.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let diff = self.0.saturating_sub(earlier.0);
        Duration::from_nanos(u64::try_from(diff).unwrap_or(0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.as_secs_f64())
    }
}

/// The clock the analysis runs on: the latest packet time seen, or a later time the loop moved
/// it to (live, where deadlines fire on the wall clock). It never goes backwards: a packet stamped
/// earlier than the clock is counted in [`PacketClock::backwards`] and happens "now".
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketClock {
    now: Option<Timestamp>,
    first: Option<Timestamp>,
    backwards: u64,
}

impl PacketClock {
    /// A packet stamped `ts` arrived: the time it is analysed at.
    pub fn packet(&mut self, ts: Timestamp) -> Timestamp {
        self.first.get_or_insert(ts);
        let now = match self.now {
            Some(now) if ts < now => {
                self.backwards += 1;
                now
            }
            _ => ts,
        };
        self.now = Some(now);
        now
    }

    /// Moves the clock forward to `t` (a poll at a time with no packet); never back.
    pub fn advance_to(&mut self, t: Timestamp) -> Timestamp {
        let now = self.now.map_or(t, |now| now.max(t));
        self.now = Some(now);
        now
    }

    /// The time now, once a packet or a poll set it.
    pub fn now(&self) -> Option<Timestamp> {
        self.now
    }

    /// The first packet's own timestamp.
    pub fn first_packet(&self) -> Option<Timestamp> {
        self.first
    }

    /// Packets stamped earlier than the clock (taken as "now").
    pub fn backwards(&self) -> u64 {
        self.backwards
    }
}

/// The monotonic clock now (the loops' measure of waiting; below them, time is an argument).
#[allow(clippy::disallowed_methods)] // the one place the monotonic clock is read
pub fn monotonic_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Packet time for a capture fed live through a pipe or FIFO (`analyze -`), so deadlines fire
/// on the clock there too: the latest packet's own timestamp, advanced by the wall time that has
/// passed since it arrived, held `grace` behind (packets in flight are not older than it). The
/// capture's clock need not agree with this host's (a capture from another host, or replayed):
/// only the time between packets is measured here.
#[derive(Clone, Copy, Debug)]
pub struct StreamClock {
    grace: Duration,
    last: Option<(Timestamp, std::time::Instant)>,
}

impl StreamClock {
    pub fn new(grace: Duration) -> Self {
        StreamClock { grace, last: None }
    }

    /// Packets up to `ts` arrived at `wall` (the clock never goes back).
    pub fn arrived(&mut self, ts: Timestamp, wall: std::time::Instant) {
        let ts = self.last.map_or(ts, |(last, _)| last.max(ts));
        self.last = Some((ts, wall));
    }

    /// Packet time at `wall`: never before the latest packet (`None` before any packet).
    pub fn at(&self, wall: std::time::Instant) -> Option<Timestamp> {
        let (ts, arrived) = self.last?;
        let passed = wall.saturating_duration_since(arrived).saturating_sub(self.grace);
        Some(ts.saturating_add(passed))
    }

    /// How long from `wall` until packet time reaches `t` (zero when it has).
    pub fn until(&self, t: Timestamp, wall: std::time::Instant) -> Option<Duration> {
        let now = self.at(wall)?;
        Some(t.since(now))
    }
}

/// `keepalive` seconds times 1.5: the span after which a broker treats a silent client as dead.
pub fn expiry_span(keepalive_s: u16) -> Duration {
    Duration::from_millis(u64::from(keepalive_s) * 1500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parts_handles_micro_and_nano_resolutions() {
        assert_eq!(Timestamp::from_parts(10, 500_000, 1_000_000).as_nanos(), 10_500_000_000);
        assert_eq!(Timestamp::from_parts(10, 1, 1_000_000_000).as_nanos(), 10_000_000_001);
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let max = Timestamp::from_nanos(i64::MAX);
        assert_eq!(max.saturating_add(Duration::from_secs(5)), max);
        assert_eq!(Timestamp::from_nanos(0).since(max), Duration::ZERO);
        assert_eq!(Timestamp::from_parts(u64::MAX, u64::MAX, 1).as_nanos(), i64::MAX);
    }

    #[test]
    fn the_packet_clock_never_goes_back_and_counts_who_tried() {
        let t = Timestamp::from_secs_f64;
        let mut c = PacketClock::default();
        assert_eq!(c.now(), None);
        assert_eq!(c.packet(t(5.0)), t(5.0));
        assert_eq!(c.packet(t(4.0)), t(5.0), "earlier packets happen now");
        assert_eq!(c.packet(t(6.0)), t(6.0));
        assert_eq!(c.advance_to(t(5.5)), t(6.0), "a poll never moves it back");
        assert_eq!(c.advance_to(t(9.0)), t(9.0));
        assert_eq!(c.packet(t(8.0)), t(9.0));
        assert_eq!((c.backwards(), c.first_packet()), (2, Some(t(5.0))));
    }

    #[test]
    fn a_stream_clock_advances_with_wall_time_since_the_last_packet_held_back_by_the_grace() {
        let t = Timestamp::from_secs_f64;
        let ms = Duration::from_millis;
        let wall = monotonic_now(); // any instant: only differences count
        let mut c = StreamClock::new(ms(200));
        assert_eq!(c.at(wall), None, "no packet, no time");
        c.arrived(t(100.0), wall);
        assert_eq!(c.at(wall), Some(t(100.0)));
        assert_eq!(c.at(wall + ms(150)), Some(t(100.0)), "within the grace");
        assert_eq!(c.at(wall + ms(1200)), Some(t(101.0)));
        assert_eq!(c.until(t(102.0), wall + ms(1200)), Some(ms(1000)));
        assert_eq!(c.until(t(100.5), wall + ms(1200)), Some(Duration::ZERO));
        c.arrived(t(50.0), wall + ms(1300)); // a packet stamped back in time
        assert_eq!(c.at(wall + ms(1300)), Some(t(100.0)), "never back");
    }

    #[test]
    fn expiry_span_is_one_and_a_half_keepalives() {
        assert_eq!(expiry_span(5), Duration::from_millis(7500));
        assert_eq!(expiry_span(0), Duration::ZERO);
        assert_eq!(expiry_span(u16::MAX), Duration::from_millis(65535 * 1500));
    }
}
