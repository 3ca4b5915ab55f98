//! Timestamps: whole milliseconds since the Unix epoch, shown as RFC 3339.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, in whole milliseconds since the Unix epoch; shown as
/// RFC 3339 (UTC) wherever a person or another program reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The latest time a record may hold: 9999-12-31T23:59:59.999Z, the
    /// last one RFC 3339 can write. A stored time past it (or before
    /// 1970) is a corrupt field.
    pub const MAX: Timestamp = Timestamp(253_402_300_799_999);

    /// Whether RFC 3339 can show this time (1970 up to [`Timestamp::MAX`]).
    pub fn in_range(self) -> bool {
        (0..=Timestamp::MAX.0).contains(&self.0)
    }

    /// The current time.
    pub fn now() -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    /// Converts, clamping times before 1970 to the epoch.
    pub fn from_system(t: SystemTime) -> Timestamp {
        Timestamp(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )
    }

    /// Back to `SystemTime`, for formatting (clamped to the epoch and
    /// [`Timestamp::MAX`], the range RFC 3339 can show).
    pub fn to_system(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.clamp(0, Timestamp::MAX.0) as u64)
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(i64::MAX as u128) as i64)
                .min(Timestamp::MAX.0),
        )
    }

    /// Parses RFC 3339 (`2026-11-27T13:47:00Z`, fractional seconds allowed).
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        humantime::parse_rfc3339_weak(text.trim_end_matches('Z'))
            .map(Timestamp::from_system)
            .map_err(|e| format!("invalid timestamp {text:?}: {e}"))
    }

    /// The UTC day, `YYYY-MM-DD`, for daily usage counters.
    pub fn day(self) -> String {
        let s = Timestamp(self.0.clamp(0, Timestamp::MAX.0)).to_string();
        s[..10].to_owned()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339; a time it cannot show (past year 9999, before 1970) is
    /// clamped to the nearest it can, never a panic. Records never hold
    /// one: reading a record checks its range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.in_range() {
            return Timestamp(self.0.clamp(0, Timestamp::MAX.0)).fmt(f);
        }
        if self.0 % 1000 == 0 {
            write!(f, "{}", humantime::format_rfc3339_seconds(self.to_system()))
        } else {
            write!(f, "{}", humantime::format_rfc3339_millis(self.to_system()))
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    #[test]
    fn timestamps_roundtrip_as_rfc3339() {
        let t = Timestamp(1_795_000_000_123);
        let s = t.to_string();
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(Timestamp::parse(&s).unwrap(), t);
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(0).day(), "1970-01-01");
        assert!(Timestamp::parse("yesterday").is_err());
    }

    #[test]
    fn far_times_clamp_instead_of_failing_to_show() {
        let far = Timestamp(0).plus(Duration::from_secs(u64::MAX / 2));
        assert_eq!(far, Timestamp::MAX);
        assert_eq!(far.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(i64::MAX).to_string(), "9999-12-31T23:59:59.999Z");
    }
}
