//! An organisation's time zone (`time_zone = "Europe/Amsterdam"` in its policy file) and the two
//! ways certgate writes a time in it: for people on the pages, and ISO 8601 for the CLI. The tz
//! database is the one bundled into the binary, so a zone works the same on every machine,
//! with or without `/usr/share/zoneinfo`.

use std::fmt;

/// Why a name is not a time zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeZoneError {
    #[error("must name a time zone, such as \"Europe/Amsterdam\"")]
    Missing,
    #[error("{0:?} is not a time zone (an IANA name such as \"Europe/Amsterdam\")")]
    Unknown(String),
}

/// A named IANA time zone, checked against the bundled tz database.
#[derive(Clone)]
pub struct TimeZone {
    /// The name as the tz database spells it (`Europe/Amsterdam`).
    name: String,
    zone: jiff::tz::TimeZone,
}

impl TimeZone {
    /// Where a policy file names none.
    pub const DEFAULT: &'static str = "Europe/Amsterdam";

    /// The zone called `name` (an IANA name such as `Europe/Amsterdam` or `UTC`; the tz
    /// database's own spelling, though case does not matter).
    pub fn named(name: &str) -> Result<Self, TimeZoneError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(TimeZoneError::Missing);
        }
        match jiff::tz::db().get(name) {
            Ok(zone) => Ok(TimeZone {
                name: zone.iana_name().unwrap_or(name).to_owned(),
                zone,
            }),
            Err(_) => Err(TimeZoneError::Unknown(name.to_owned())),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `2026-12-06 21:07 CET`: minutes and the zone's abbreviation, as the pages show a time.
    /// A no-break space keeps the zone with the time where a narrow column wraps the line.
    pub fn readable(&self, unix: i64) -> String {
        self.format(unix, "%Y-%m-%d %H:%M\u{a0}%Z")
    }

    /// `2026-12-06T21:07:16+01:00`: ISO 8601 with the offset, as the CLI prints a time.
    pub fn iso(&self, unix: i64) -> String {
        self.format(unix, "%Y-%m-%dT%H:%M:%S%:z")
    }

    /// A time outside jiff's range (±9999 years) cannot come from certgate; it reads `-`.
    fn format(&self, unix: i64, pattern: &str) -> String {
        match jiff::Timestamp::from_second(unix) {
            Ok(at) => at
                .to_zoned_datetime(self.zone.clone())
                .strftime(pattern)
                .to_string(),
            Err(_) => "-".to_owned(),
        }
    }
}

impl Default for TimeZone {
    /// `Europe/Amsterdam`; UTC only if the bundled database somehow lacks it.
    fn default() -> Self {
        TimeZone::named(Self::DEFAULT).unwrap_or_else(|_| TimeZone {
            name: "UTC".to_owned(),
            zone: jiff::tz::TimeZone::UTC,
        })
    }
}

impl PartialEq for TimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for TimeZone {}

impl fmt::Debug for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimeZone({})", self.name)
    }
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-12-06 20:07:16 UTC, in winter; 2026-07-01 12:00:00 UTC, in summer.
    const WINTER: i64 = 1_796_587_636;
    const SUMMER: i64 = 1_782_907_200;

    #[test]
    fn amsterdam_is_the_default_and_keeps_summer_time() {
        let zone = TimeZone::default();
        assert_eq!(zone.name(), "Europe/Amsterdam");
        assert_eq!(zone.iso(WINTER), "2026-12-06T21:07:16+01:00");
        assert_eq!(zone.readable(WINTER), "2026-12-06 21:07\u{a0}CET");
        assert_eq!(zone.iso(SUMMER), "2026-07-01T14:00:00+02:00");
        assert_eq!(zone.readable(SUMMER), "2026-07-01 14:00\u{a0}CEST");
    }

    #[test]
    fn other_zones_by_their_iana_name() {
        let utc = TimeZone::named("UTC").unwrap();
        assert_eq!(utc.iso(WINTER), "2026-12-06T20:07:16+00:00");
        let curacao = TimeZone::named("america/curacao").unwrap();
        assert_eq!(curacao.name(), "America/Curacao");
        assert_eq!(curacao.iso(WINTER), "2026-12-06T16:07:16-04:00");
    }

    #[test]
    fn unknown_names_are_refused_with_an_example() {
        for bad in [
            "",
            "  ",
            "Europe/Amsterdamm",
            "CET+1",
            "../etc/passwd",
            "Mars/Olympus",
        ] {
            let error = TimeZone::named(bad).unwrap_err().to_string();
            assert!(error.contains("Europe/Amsterdam"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn times_out_of_range_read_as_a_dash() {
        assert_eq!(TimeZone::default().readable(i64::MAX), "-");
        assert_eq!(TimeZone::default().iso(i64::MIN), "-");
    }
}
