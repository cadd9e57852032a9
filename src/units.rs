//! Sizes as people write and read them: `"500 MiB"` in the settings, `1.2 GiB` in a log line
//! or a chat message. Here rather than in the settings, so that what only formats a size does
//! not depend on them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written in the settings as an integer or as `"500 MiB"`, and shown with a
/// binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    const UNITS: [(&'static str, u64); 7] = [
        ("b", 1),
        ("kb", 1000),
        ("mb", 1000 * 1000),
        ("gb", 1000 * 1000 * 1000),
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
    ];

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('-') {
            return Err(format!("{text:?} is negative; a size is 0 or more"));
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            1
        } else {
            Self::UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, multiplier)| *multiplier)
                .ok_or_else(|| {
                    format!("unknown unit {unit:?} in {text:?}; use B, KB, MB, GB, KiB, MiB or GiB")
                })?
        };
        // In integers, so that "1.5 GiB" is exact: the whole part, then the fraction's digits
        // scaled and rounded to the byte.
        let not_a_size = || format!("{text:?} is not a size such as \"500 MiB\"");
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(not_a_size());
        }
        let digits = |part: &str| -> Result<u128, String> {
            if part.is_empty() {
                return Ok(0);
            }
            part.parse().map_err(|_| not_a_size())
        };
        let scale = u32::try_from(fraction.len())
            .ok()
            .and_then(|len| 10u128.checked_pow(len))
            .ok_or_else(not_a_size)?;
        let multiplier = u128::from(multiplier);
        let bytes =
            digits(whole)? * multiplier + (digits(fraction)? * multiplier + scale / 2) / scale;
        u64::try_from(bytes)
            .map(ByteSize)
            .map_err(|_| format!("{text:?} is too large: a size is at most 16 EiB"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if bytes >= size {
                let tenths = (u128::from(bytes) * 10 + u128::from(size) / 2) / u128::from(size);
                return write!(f, "{}.{} {unit}", tenths / 10, tenths % 10);
            }
        }
        write!(f, "{bytes} B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    /// A whole number of bytes or a string with a unit; anything else says what is expected.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: whole bytes (2048) or a string such as \"500 MiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, bytes: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(bytes))
            }

            fn visit_i64<E: serde::de::Error>(self, bytes: i64) -> Result<ByteSize, E> {
                u64::try_from(bytes)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{bytes} is negative; a size is 0 or more")))
            }

            fn visit_f64<E: serde::de::Error>(self, bytes: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "{bytes} is not a whole number of bytes; write a string such as \"1.5 MiB\""
                )))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ByteSize, E> {
                ByteSize::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}
