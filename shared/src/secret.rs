use std::borrow::Cow;
use std::fmt;
use std::sync::RwLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every secret value this process has seen, as written and as JSON would escape it: a log
/// writer scrubs them from each line, so that no dependency's log line, whatever it prints,
/// carries one (see [`scrub`]).
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter values are not scrubbed: they cannot be told from the words of a log line (and a
/// secret that short is no secret).
const SHORTEST_SCRUBBED: usize = 4;

/// Adds `value` to the secrets scrubbed from every log line.
pub fn register(value: &str) {
    if value.len() < SHORTEST_SCRUBBED {
        return;
    }
    let escaped = serde_json::to_string(value).unwrap_or_default();
    let escaped = escaped.trim_matches('"');
    let Ok(mut known) = KNOWN.write() else {
        return;
    };
    for form in [value, escaped] {
        if !form.is_empty() && !known.iter().any(|k| k == form) {
            known.push(form.to_owned());
        }
    }
    // The longest first: a secret that contains another is replaced whole.
    known.sort_by_key(|k| std::cmp::Reverse(k.len()));
}

/// `text` with every registered secret, and the password of any URL in it
/// (`scheme://user:password@host`), replaced by `***`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(text);
    if let Ok(known) = KNOWN.read() {
        for secret in known.iter() {
            if text.contains(secret.as_str()) {
                text = Cow::Owned(text.replace(secret.as_str(), "***"));
            }
        }
    }
    match redact_userinfo(&text) {
        Some(redacted) => Cow::Owned(redacted),
        None => text,
    }
}

/// `text` with the password of each `scheme://user:password@` replaced by `***`; `None` when
/// it has none.
pub fn redact_userinfo(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || c == '"')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                changed |= userinfo.contains(':');
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// A password, API key or token.
///
/// `Debug`, `Display` and `Serialize` print `***` (or nothing when it is empty), so a secret
/// cannot reach a log line, an error or `oiseau config` by accident; the one way to the value
/// is [`Secret::expose`], which is easy to search for.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The value itself, for the one place that sends it to the service it belongs to.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn redacted(&self) -> &'static str {
        if self.0.is_empty() { "" } else { "***" }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.redacted())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.redacted())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "\"***\"");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(\"***\")");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn known_secrets_and_url_passwords_are_scrubbed_from_any_text() {
        let _ = Secret::new("s3cr\"et-value");
        assert_eq!(
            scrub("key: s3cr\"et-value, json: \"s3cr\\\"et-value\""),
            "key: ***, json: \"***\""
        );
        assert_eq!(
            scrub("GET ftp://backup:pa55@host:21/replays and https://h/x?a=1"),
            "GET ftp://backup:***@host:21/replays and https://h/x?a=1"
        );
        assert_eq!(redact_userinfo("https://user@host/"), None, "no password");
    }

    #[test]
    fn an_empty_secret_shows_as_empty() {
        assert_eq!(format!("{}", Secret::default()), "");
    }
}
