//! Durations and sizes as operators write them in `gateway.toml` (`"30s"`, `"10MiB"`).
//!
//! The grammar is deliberately small: a whole number and one unit, no spaces, no
//! fractions, no compound forms such as `"1h30m"`. A typo must be an error at
//! `check` time, never a silently different timeout or limit.

use std::time::Duration;

/// Turns `"250ms"`, `"30s"`, `"5m"`, `"24h"` or `"7d"` into a [`Duration`] so every
/// timeout in the file shares one strict, predictable syntax.
///
/// `"0s"` is accepted; callers decide whether zero makes sense for their field.
/// The error message quotes the offending value.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    let (number, unit) = split_number(text).map_err(|why| bad(&why))?;
    if unit.is_empty() {
        return Err(bad(
            "missing unit; write a whole number followed by ms, s, m, h or d (e.g. \"30s\")",
        ));
    }
    let seconds_per_unit: u64 = match unit {
        "ms" => return Ok(Duration::from_millis(number)),
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        other => {
            return Err(bad(&format!(
                "unknown unit {other:?}; use ms, s, m, h or d"
            )))
        }
    };
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(|| bad("too large"))
}

/// Turns `"512"`, `"64KiB"`, `"10MiB"` or `"1GB"` into a byte count so body and header
/// limits can be written the way operators think about them.
///
/// Binary units (`KiB`, `MiB`, `GiB`) are powers of 1024, decimal ones (`KB`, `MB`,
/// `GB`) powers of 1000; a bare number or `B` means bytes. Units are case-sensitive so
/// `kb` (kilobits to some readers) is refused rather than guessed at.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size {text:?}: {why}");
    let (number, unit) = split_number(text).map_err(|why| bad(&why))?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(bad(&format!(
                "unknown unit {other:?}; use B, KiB, MiB, GiB, KB, MB or GB (e.g. \"10MiB\")"
            )))
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| bad("too large"))
}

/// Splits the leading whole number from the unit; shared so both grammars reject
/// the same malformed numbers with the same words.
fn split_number(text: &str) -> Result<(u64, &str), String> {
    if text.is_empty() {
        return Err("empty value".to_owned());
    }
    if text.starts_with('-') {
        return Err("must not be negative".to_owned());
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("must start with a whole number".to_owned());
    }
    if unit.starts_with('.') || unit.starts_with(',') {
        return Err("fractions are not supported; use a smaller unit".to_owned());
    }
    if unit.starts_with(char::is_whitespace) {
        return Err("no space is allowed between the number and the unit".to_owned());
    }
    let number = digits.parse::<u64>().map_err(|_| "too large".to_owned())?;
    Ok((number, unit))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0ms").unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_durations_quote_the_value() {
        for (input, needle) in [
            ("", "empty"),
            ("-5s", "negative"),
            ("1.5s", "fractions"),
            ("5x", "unknown unit \"x\""),
            ("5S", "unknown unit \"S\""),
            ("30", "missing unit"),
            ("s", "whole number"),
            ("ms", "whole number"),
            (" 5s", "whole number"),
            ("5 s", "space"),
            ("5s ", "unknown unit"),
            ("1h30m", "unknown unit"),
            ("+5s", "whole number"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615m", "too large"),
        ] {
            let err = parse_duration(input).unwrap_err();
            assert!(err.contains(&format!("{input:?}")), "{input:?}: {err}");
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn largest_durations_do_not_overflow() {
        assert_eq!(
            parse_duration("18446744073709551615ms").unwrap(),
            Duration::from_millis(u64::MAX)
        );
        assert_eq!(
            parse_duration("18446744073709551615s").unwrap(),
            Duration::from_secs(u64::MAX)
        );
    }

    #[test]
    fn sizes_binary_decimal_and_bare() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("512B").unwrap(), 512);
        assert_eq!(parse_size("64KiB").unwrap(), 65_536);
        assert_eq!(parse_size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("64KB").unwrap(), 64_000);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
    }

    #[test]
    fn bad_sizes_quote_the_value() {
        for (input, needle) in [
            ("", "empty"),
            ("-1KiB", "negative"),
            ("1.5MiB", "fractions"),
            ("10mib", "unknown unit"),
            ("10kb", "unknown unit"),
            ("10TiB", "unknown unit"),
            ("MiB", "whole number"),
            ("10 MiB", "space"),
            ("18446744073709551616", "too large"),
            ("18446744073709551615KiB", "too large"),
        ] {
            let err = parse_size(input).unwrap_err();
            assert!(err.contains(&format!("{input:?}")), "{input:?}: {err}");
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }
}
