//! Packet times as people read them: RFC 3339 in JSON, a calendar date and time of day in the
//! text table (UTC, or the local time zone with `--local`), and the instants `--since` and
//! `--until` take.
//!
//! Contract: only formatting and parsing, no clock is read. [`Rfc3339`] serialises as
//! `2026-11-26T09:41:57.631472Z` (UTC, microseconds, as precise as the Unix seconds beside it).
//! [`Zone::format`] gives `2026-11-26 09:41:57.631` (milliseconds, truncated); the local zone is
//! the system's (`TZ`, else `/etc/localtime`), applied to each time with the offset in force then.
//! [`parse_instant`] takes RFC 3339 (`2026-11-26T09:41:57Z`, `2026-11-26T10:41:57+01:00`, a space
//! for the `T` too) or Unix seconds (`1795695717`, `1795695717.5`). Times out of the calendar's
//! range show as the Unix seconds; nothing here panics.

use crate::time::Timestamp;
use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use std::time::Duration;

const NANOS: i64 = 1_000_000_000;

fn utc(t: Timestamp) -> Option<DateTime<Utc>> {
    let n = t.as_nanos();
    DateTime::<Utc>::from_timestamp(n.div_euclid(NANOS), n.rem_euclid(NANOS) as u32)
}

/// A packet time serialised as an RFC 3339 UTC string with microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub Timestamp);

impl Rfc3339 {
    /// The string, rounded to the microsecond (as the Unix seconds beside it are).
    pub fn to_string_us(self) -> String {
        let us = (i128::from(self.0.as_nanos()) + 500).div_euclid(1000);
        let rounded = Timestamp::from_nanos(i64::try_from(us * 1000).unwrap_or(i64::MAX));
        match utc(rounded) {
            Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Micros, true),
            None => format!("{:.6}", self.0.as_secs_f64()),
        }
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string_us())
    }
}

pub(crate) fn opt_rfc3339<S: Serializer>(t: &Option<Rfc3339>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => t.serialize(s),
        None => s.serialize_none(),
    }
}

/// The time zone the text report shows times in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Zone {
    #[default]
    Utc,
    /// The system's local time zone.
    Local,
}

impl Zone {
    /// `YYYY-MM-DD HH:MM:SS.mmm` in this zone.
    pub fn format(self, t: Timestamp) -> String {
        self.format_with(t, "%Y-%m-%d %H:%M:%S%.3f")
    }

    /// The calendar date in this zone, `YYYY-MM-DD`.
    pub fn date(self, t: Timestamp) -> String {
        self.format_with(t, "%Y-%m-%d")
    }

    /// `HH:MM:SS.mmm` in this zone.
    pub fn time_of_day(self, t: Timestamp) -> String {
        self.format_with(t, "%H:%M:%S%.3f")
    }

    /// The zone's name for headers: `UTC`, or `local time (UTC+01:00)` with the offset at `t`.
    pub fn label(self, t: Timestamp) -> String {
        match (self, utc(t)) {
            (Zone::Utc, _) => "UTC".into(),
            (Zone::Local, Some(dt)) => format!("local time (UTC{})", dt.with_timezone(&Local).offset()),
            (Zone::Local, None) => "local time".into(),
        }
    }

    fn format_with(self, t: Timestamp, fmt: &str) -> String {
        // Milliseconds truncated, as clocks show them.
        let Some(dt) = utc(t) else { return format!("{:.3}", t.as_secs_f64()) };
        match self {
            Zone::Utc => dt.format(fmt).to_string(),
            Zone::Local => dt.with_timezone(&Local).format(fmt).to_string(),
        }
    }
}

/// Why an instant could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} is not a time: give RFC 3339 (2026-11-26T09:41:57Z, 2026-11-26T10:41:57+01:00) or Unix seconds (1795695717.5)"
)]
pub struct InstantError(pub String);

/// An instant given as RFC 3339 or Unix seconds (see the module doc).
pub fn parse_instant(s: &str) -> Result<Timestamp, InstantError> {
    let err = || InstantError(s.to_string());
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !secs.is_finite() || !(0.0..=9.2e9).contains(&secs) {
            return Err(err());
        }
        return Ok(Timestamp::from_secs_f64(secs));
    }
    let dt = DateTime::parse_from_rfc3339(t)
        .or_else(|_| DateTime::parse_from_rfc3339(&t.replacen(' ', "T", 1)))
        .map_err(|_| err())?;
    dt.timestamp_nanos_opt().map(Timestamp::from_nanos).ok_or_else(err)
}

/// Serialisation of times as Unix seconds (the `ts` fields), rounded to the microsecond.
/// Rounds to microseconds so JSON output is stable across float formatting.
pub fn round_us(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

pub fn secs<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_us(t.as_secs_f64()))
}

pub fn dur_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_us(d.as_secs_f64()))
}

pub fn opt_secs<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => secs(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_microseconds() {
        let t = Timestamp::from_nanos(1_795_695_717_631_472_400);
        assert_eq!(Rfc3339(t).to_string_us(), "2026-11-26T12:21:57.631472Z");
        let json = serde_json::to_string(&Rfc3339(Timestamp::from_nanos(999_999_999_600))).unwrap();
        assert_eq!(json, "\"1970-01-01T00:16:40.000000Z\"", "rounded like the seconds, carrying over");
        assert_eq!(Zone::Utc.format(t), "2026-11-26 12:21:57.631");
        assert_eq!(Zone::Utc.time_of_day(t), "12:21:57.631");
        assert_eq!(Zone::Utc.label(t), "UTC");
        let far = Timestamp::from_nanos(i64::MAX);
        assert!(!Rfc3339(far).to_string_us().is_empty(), "no panic at the end of time");
    }

    #[test]
    fn instants_are_rfc3339_or_unix_seconds() {
        let t = Timestamp::from_nanos(1_795_695_717_000_000_000);
        assert_eq!(parse_instant("2026-11-26T12:21:57Z"), Ok(t));
        assert_eq!(parse_instant("2026-11-26T13:21:57+01:00"), Ok(t));
        assert_eq!(parse_instant("2026-11-26 12:21:57Z"), Ok(t));
        assert_eq!(parse_instant("1795695717"), Ok(t));
        assert_eq!(parse_instant("1795695717.5"), Ok(Timestamp::from_nanos(1_795_695_717_500_000_000)));
        for bad in ["yesterday", "", "2026-11-26", "-5", "NaN", "1e300"] {
            assert!(parse_instant(bad).is_err(), "{bad}");
        }
        assert!(parse_instant("soon").unwrap_err().to_string().contains("RFC 3339"));
    }
}
