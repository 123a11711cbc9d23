//! Durations as users write them in specs: `30s`, `15m`, `24h`, `60d`, `1h30m`, `1d12h`.
//!
//! Units must appear in the order d, h, m, s (each at most once), which keeps the text easy to read
//! and lets the CRD's CEL rules convert it (see [`cel_seconds`]) to compare durations at the door.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema pattern for a duration. Kept in sync with [`Duration::from_str`] by a test.
pub const DURATION_PATTERN: &str = r"^([0-9]{1,6}d)?([0-9]{1,7}h)?([0-9]{1,9}m)?([0-9]{1,10}s)?$";

/// A non-zero length of time written as `<n>d<n>h<n>m<n>s` with any parts left out.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration {
    secs: u64,
    /// As written; shared (`Text`), since every resource of a kind tends to carry the same few.
    text: super::Text,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("duration is empty; write e.g. \"30s\", \"15m\", \"24h\", \"60d\" or \"1h30m\"")]
    Empty,
    #[error(
        "invalid duration {0:?}: use whole numbers with units d, h, m, s in that order, e.g. \"60d\" or \"1h30m\""
    )]
    Invalid(String),
    #[error("duration {0:?} must be longer than zero")]
    Zero(String),
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

impl Duration {
    /// A duration of whole seconds, rendered in the largest exact units (`90s` → `1m30s`).
    pub fn from_secs(secs: u64) -> Self {
        let mut text = String::new();
        let mut rest = secs;
        for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
            if rest >= size {
                text.push_str(&format!("{}{unit}", rest / size));
                rest %= size;
            }
        }
        if text.is_empty() {
            text.push_str("0s");
        }
        Duration {
            secs,
            text: super::Text::interned(&text),
        }
    }

    pub fn as_secs(&self) -> u64 {
        self.secs
    }

    pub fn as_std(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.secs)
    }

    /// As a jiff span for timestamp arithmetic.
    pub fn as_signed(&self) -> jiff::SignedDuration {
        jiff::SignedDuration::from_secs(self.secs as i64)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let invalid = || DurationError::Invalid(s.to_string());
        let units = [('d', 86_400u64), ('h', 3_600), ('m', 60), ('s', 1)];
        let mut next_unit = 0;
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let pos = units[next_unit..]
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(invalid)?;
            if digits.is_empty() {
                return Err(invalid());
            }
            let n: u64 = digits
                .parse()
                .map_err(|_| DurationError::Overflow(s.into()))?;
            let (_, size) = units[next_unit + pos];
            total = n
                .checked_mul(size)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(|| DurationError::Overflow(s.into()))?;
            next_unit += pos + 1;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(invalid());
        }
        // Beyond ~100 years nothing here makes sense, and CEL's duration type tops out near 290.
        if total > 100 * 365 * 86_400 {
            return Err(DurationError::Overflow(s.into()));
        }
        if total == 0 {
            return Err(DurationError::Zero(s.into()));
        }
        Ok(Duration {
            secs: total,
            text: super::Text::interned(s),
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Duration({})", self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 2,
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
        })
    }
}

/// How long the previous credential stays valid after a rotation: a duration, or `UntilExpiry`
/// to keep it until its own expiry (what banks need: they switch secrets on their own schedule).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Overlap {
    For(Duration),
    UntilExpiry,
}

/// The schema pattern for an overlap: a duration or the word `UntilExpiry`.
pub const OVERLAP_PATTERN: &str =
    r"^(UntilExpiry|([0-9]{1,6}d)?([0-9]{1,7}h)?([0-9]{1,9}m)?([0-9]{1,10}s)?)$";

impl FromStr for Overlap {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "UntilExpiry" {
            Ok(Overlap::UntilExpiry)
        } else {
            s.parse().map(Overlap::For)
        }
    }
}

impl fmt::Display for Overlap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Overlap::For(d) => d.fmt(f),
            Overlap::UntilExpiry => f.write_str("UntilExpiry"),
        }
    }
}

impl Serialize for Overlap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Overlap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Overlap {
    fn schema_name() -> Cow<'static, str> {
        "Overlap".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 2,
            "maxLength": 32,
            "pattern": OVERLAP_PATTERN,
        })
    }
}

/// A CEL expression giving the duration string at `field` in seconds (an `int`).
///
/// CEL's `duration()` understands h/m/s but not days, so the day part is counted separately
/// (`1d12h` → `86400 + duration('12h').getSeconds()`). The expression builds no string: the API
/// server's cost estimator cannot bound a string made by `string(int)` and `+`, and refuses a CRD
/// whose rule concatenates one (its estimate is unbounded).
pub fn cel_seconds(field: &str) -> String {
    format!(
        "({f}.contains('d') ? int({f}.split('d')[0]) * 86400 + ({f}.split('d')[1] == '' ? 0 : duration({f}.split('d')[1]).getSeconds()) : duration({f}).getSeconds())",
        f = field
    )
}

/// The largest lifetime of a client secret, in seconds (730 days: Entra's limit).
pub const MAX_SECRET_LIFETIME_SECS: u64 = 730 * 86_400;

#[cfg(test)]
mod tests {
    #[test]
    fn durations_written_alike_share_one_text() {
        let a: Duration = "60d".parse().unwrap();
        let b: Duration = serde_json::from_value(serde_json::json!("60d")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "60d");
        // One copy for every resource that says "60d" (10,000 BankClients and their children).
        assert!(std::ptr::eq(a.text.as_str(), b.text.as_str()));
        assert!(std::ptr::eq(
            Duration::from_secs(60 * 86_400).text.as_str(),
            a.text.as_str()
        ));
    }

    use super::*;

    #[test]
    fn parses_each_unit_and_combinations() {
        let cases = [
            ("30s", 30),
            ("15m", 900),
            ("24h", 86_400),
            ("60d", 5_184_000),
            ("1h30m", 5_400),
            ("1d12h", 129_600),
            ("2d3h4m5s", 2 * 86_400 + 3 * 3600 + 4 * 60 + 5),
            ("730d", 730 * 86_400),
        ];
        for (text, secs) in cases {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
            assert_eq!(d.to_string(), text);
        }
    }

    #[test]
    fn rejects_garbage_with_a_clear_error() {
        for bad in [
            "", "abc", "10", "h", "1x", "1h1d", "1m1h", "1h1h", "-5s", "1.5h", " 1h", "1h ",
        ] {
            let err = bad.parse::<Duration>().unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("duration"),
                "error for {bad:?} should mention duration: {msg}"
            );
        }
        assert_eq!(
            "0s".parse::<Duration>(),
            Err(DurationError::Zero("0s".into()))
        );
        assert!(matches!(
            "99999999999999999999s".parse::<Duration>(),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn schema_pattern_agrees_with_parser() {
        // The pattern is what the API server checks; the parser is what the operator uses.
        // A string the pattern accepts must parse (zero and overflow aside), and vice versa.
        let re = regex_lite::Regex::new(DURATION_PATTERN).unwrap();
        for s in [
            "30s", "15m", "24h", "60d", "1h30m", "1d12h", "abc", "1h1d", "1.5h", "10", "1h1h",
        ] {
            assert_eq!(re.is_match(s), s.parse::<Duration>().is_ok(), "{s}");
        }
    }

    #[test]
    fn from_secs_renders_largest_units() {
        assert_eq!(Duration::from_secs(90).to_string(), "1m30s");
        assert_eq!(Duration::from_secs(86_400 * 60).to_string(), "60d");
        assert_eq!(
            Duration::from_secs(90)
                .to_string()
                .parse::<Duration>()
                .unwrap(),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn overlap_accepts_until_expiry() {
        assert_eq!("UntilExpiry".parse::<Overlap>(), Ok(Overlap::UntilExpiry));
        assert_eq!(
            "7d".parse::<Overlap>(),
            Ok(Overlap::For("7d".parse().unwrap()))
        );
        assert!("Forever".parse::<Overlap>().is_err());
        let json = serde_json::to_string(&Overlap::UntilExpiry).unwrap();
        assert_eq!(json, "\"UntilExpiry\"");
    }
}
