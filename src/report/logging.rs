//! The log: text or JSON lines on stderr, at the level `OISEAU_LOG` asks for, and never a
//! secret in it, whatever crate wrote the line: dependencies' chatty targets are filtered, and
//! every line is scrubbed of each secret value this process knows (the settings' secrets, and
//! the environment's passwords, keys and tokens, which rclone and the AWS variables carry)
//! before it is written, so that the next dependency that logs its credentials cannot leak
//! them either.

use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::LogFormat;

/// Words in an environment variable's name that mark its value as a secret.
const SECRET_NAME_WORDS: [&str; 5] = ["PASS", "SECRET", "TOKEN", "API_KEY", "WEBHOOK"];

/// Targets whose every line is dropped: they trace the credentials they sign or log in with.
const SILENCED: [(&str, tracing::Level); 2] = [
    ("suppaftp", tracing::Level::TRACE),
    ("reqsign", tracing::Level::TRACE),
];

pub fn init(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    for (name, value) in std::env::vars() {
        if SECRET_NAME_WORDS.iter().any(|word| name.contains(word)) {
            shared::register_secret(&value);
        }
    }
    let filter = EnvFilter::try_from_env("OISEAU_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let silenced = tracing_subscriber::filter::filter_fn(|meta| {
        !SILENCED
            .iter()
            .any(|(target, level)| meta.target().starts_with(target) && meta.level() <= level)
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(ScrubbedStderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter).with(silenced);
    match format {
        LogFormat::Text => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
}

/// Stderr, one scrubbed line at a time.
struct ScrubbedStderr;

impl<'a> MakeWriter<'a> for ScrubbedStderr {
    type Writer = ScrubbedLine;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedLine(Vec::new())
    }
}

/// One event's output, held until it is complete (a secret must not be split between two
/// writes), then scrubbed and written.
struct ScrubbedLine(Vec<u8>);

impl Write for ScrubbedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(shared::scrub_secrets(&text).as_bytes());
    }
}
