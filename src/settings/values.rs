//! Settings values written the way operators write them: rates (`"20 MiB/s"`) and the
//! compression level (sizes, `"500 MiB"`, are [`crate::units::ByteSize`]).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::archive::gzip::Level;
use crate::units::ByteSize;

/// The `compression` setting: `"auto"` or a zlib level 0 (store) to 9.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression(pub Level);

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Level(u32),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Level(level) if level <= 9 => Ok(Compression(Level::Fixed(level))),
            Raw::Text(text) if text == "auto" => Ok(Compression(Level::Auto)),
            _ => Err(serde::de::Error::custom(
                "compression is \"auto\" or a level from 0 (store) to 9",
            )),
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Level::Auto => serializer.serialize_str("auto"),
            Level::Fixed(level) => serializer.serialize_u32(level),
        }
    }
}

/// The `bandwidth` setting: a cap on upload speed in bytes per second, written `"20 MiB/s"`;
/// empty means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bandwidth(pub Option<u64>);

impl Bandwidth {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Bandwidth(None));
        }
        let size = text
            .strip_suffix("/s")
            .ok_or_else(|| format!("bandwidth {text:?} is not a rate such as \"20 MiB/s\""))?;
        match ByteSize::parse(size)? {
            ByteSize(0) => Err(format!(
                "bandwidth {text:?} would stop every upload; leave it empty for no limit"
            )),
            ByteSize(bytes) => Ok(Bandwidth(Some(bytes))),
        }
    }
}

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Bandwidth::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Bandwidth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_str(""),
            Some(bytes) => serializer.serialize_str(&format!("{bytes} B/s")),
        }
    }
}
