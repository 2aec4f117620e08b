//! Durations written as strings in policy and config files (`"90s"`, `"12h"`, `"7d"`,
//! `"500ms"`): one unsigned integer and one unit, so a file reads the same to everyone.

use std::time::Duration;

use crate::error::ValueError;

/// The longest any device credential (certificate or browser credential) may live, as public CAs
/// cap their certificates. Policy lifetimes and `ca issue-client --lifetime` are held to it, and
/// revocations are kept this long, so none lapses before a credential it covers.
pub const MAX_CREDENTIAL_LIFETIME: Duration = Duration::from_secs(398 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("missing unit (use ms, s, m, h or d)")]
    MissingUnit,
    #[error("missing number before the unit")]
    MissingNumber,
    #[error("unknown unit {0:?} (use ms, s, m, h or d)")]
    UnknownUnit(String),
    #[error("too large")]
    Overflow,
}

/// Parses `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d` (a day is 24 hours).
///
/// Signs, fractions, spaces and compound forms (`1h30m`) are refused rather than guessed at.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(DurationError::MissingNumber);
    }
    if unit.is_empty() {
        return Err(DurationError::MissingUnit);
    }
    let number: u64 = digits.parse().map_err(|_| DurationError::Overflow)?;
    let seconds_per_unit = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        other => return Err(DurationError::UnknownUnit(other.to_owned())),
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or(DurationError::Overflow)
}

/// The longest any duration setting may be; longer ones are typing mistakes, and would overflow
/// the time arithmetic done with them.
const MAX_SETTING: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A duration for a policy or config key; `allow_zero` only where zero means something (hiding
/// the "trust this device" checkbox).
pub(crate) fn duration_setting(text: &str, allow_zero: bool) -> Result<Duration, ValueError> {
    duration_at_most(text, allow_zero, MAX_SETTING, "")
}

/// [`duration_setting`] with a smaller upper bound; `why`, when not empty, follows the bound in
/// the message.
pub(crate) fn duration_at_most(
    text: &str,
    allow_zero: bool,
    max: Duration,
    why: &'static str,
) -> Result<Duration, ValueError> {
    match parse_duration(text) {
        Ok(duration) if duration.is_zero() && !allow_zero => {
            Err(ValueError::ZeroDuration(text.to_owned()))
        }
        Ok(duration) if duration > max => Err(ValueError::TooLong {
            text: text.to_owned(),
            max,
            why,
        }),
        Ok(duration) => Ok(duration),
        Err(source) => Err(ValueError::NotADuration {
            text: text.to_owned(),
            source,
        }),
    }
}

/// A credential's lifetime, held to [`MAX_CREDENTIAL_LIFETIME`].
pub(crate) fn lifetime_setting(text: &str, allow_zero: bool) -> Result<Duration, ValueError> {
    duration_at_most(
        text,
        allow_zero,
        MAX_CREDENTIAL_LIFETIME,
        ", the longest a credential may live",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn refuses_malformed_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("90"), Err(DurationError::MissingUnit));
        assert_eq!(parse_duration("-5s"), Err(DurationError::MissingNumber));
        assert_eq!(parse_duration("s"), Err(DurationError::MissingNumber));
        assert_eq!(parse_duration(" 5s"), Err(DurationError::MissingNumber));
        assert_eq!(
            parse_duration("5 s"),
            Err(DurationError::UnknownUnit(" s".into()))
        );
        assert_eq!(
            parse_duration("1.5h"),
            Err(DurationError::UnknownUnit(".5h".into()))
        );
        assert_eq!(
            parse_duration("1h30m"),
            Err(DurationError::UnknownUnit("h30m".into()))
        );
        assert_eq!(
            parse_duration("7x"),
            Err(DurationError::UnknownUnit("x".into()))
        );
        assert_eq!(
            parse_duration("5S"),
            Err(DurationError::UnknownUnit("S".into()))
        );
    }

    #[test]
    fn refuses_overflow() {
        assert_eq!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration("18446744073709551615d"),
            Err(DurationError::Overflow)
        );
        assert!(parse_duration("18446744073709551615ms").is_ok());
    }
}
