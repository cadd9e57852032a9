//! The channels that hear of runs: chats (Telegram, Discord), a JSON webhook, a dead man's
//! switch, and the metrics file. Each is off until configured, bounded by its timeout, and
//! never fails the run; the URLs and tokens that reach them stay out of every log line.

mod discord;
mod healthcheck;
pub mod json;
mod telegram;
mod webhook;

use std::time::{Duration, Instant};

use shared::Secret;

use crate::report::events::{Archived, Event, Outcome, Reporter, Reporters, WaitCause};
use crate::settings::Settings;
pub use json::{PrintJson, print_refused};

/// The reporters the settings turn on.
pub fn reporters(settings: &Settings) -> Reporters {
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    if let Some(telegram) = telegram::Telegram::new(&settings.telegram) {
        reporters.push(Box::new(telegram));
    }
    if let Some(discord) = discord::Discord::new(&settings.discord) {
        reporters.push(Box::new(discord));
    }
    if let Some(webhook) = webhook::Webhook::new(&settings.webhook) {
        reporters.push(Box::new(webhook));
    }
    if let Some(healthcheck) = healthcheck::Healthcheck::new(&settings.healthcheck) {
        reporters.push(Box::new(healthcheck));
    }
    if let Some(metrics) = crate::report::metrics::MetricsFile::new(settings) {
        reporters.push(Box::new(metrics));
    }
    Reporters::new(reporters)
}

/// What a chat hears of: successes, waits for the storage and failures; quiet runs and runs
/// that found another one working are not worth a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChatMessage<'a> {
    Archived(&'a Archived),
    Waiting(&'a str),
    Notice(&'a str),
    Failed(&'a str),
}

impl<'a> ChatMessage<'a> {
    fn of(event: &'a Event) -> Option<Self> {
        match event {
            Event::ArchivesWarmingUp { detail } => Some(ChatMessage::Waiting(detail)),
            Event::StorageNotice { detail } => Some(ChatMessage::Notice(detail)),
            Event::Finished(finished) => match &finished.outcome {
                Outcome::Done(done) => Some(ChatMessage::Archived(done)),
                Outcome::Waiting {
                    cause: WaitCause::Storage,
                    reason,
                } => Some(ChatMessage::Waiting(reason)),
                Outcome::Failed { error } => Some(ChatMessage::Failed(error)),
                Outcome::Waiting {
                    cause: WaitCause::AnotherRun | WaitCause::StorageLock,
                    ..
                }
                | Outcome::NothingToDo { .. } => None,
            },
            Event::Started | Event::Resumed { .. } => None,
        }
    }
}

/// How long an archiving run took, to the second, as the chats say it.
fn took(done: &Archived) -> String {
    humantime::format_duration(Duration::from_secs(done.duration.as_secs())).to_string()
}

/// An HTTP endpoint a channel posts to, whose URL is a secret.
///
/// A send is bounded by the channel's timeout, retries included; a `429 Too Many Requests`
/// is retried after the wait the service asks for, while that fits in the timeout.
#[derive(Debug)]
struct Endpoint {
    /// The channel's name in log lines: "Telegram", "Discord", "webhook", "healthcheck".
    channel: &'static str,
    client: reqwest::Client,
    timeout: Duration,
}

impl Endpoint {
    fn new(channel: &'static str, timeout: Duration) -> Self {
        shared::install_tls_provider();
        Endpoint {
            channel,
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a TLS backend is compiled in"),
            timeout,
        }
    }

    /// Sends the request `build` makes (once per attempt); `hint` says what to check when the
    /// service refuses it. A failure is logged, never returned: the run goes on regardless.
    async fn send(&self, build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder, hint: &str) {
        let deadline = Instant::now() + self.timeout;
        let attempts = async {
            loop {
                // reqwest puts the URL, and so the secret, in its errors: strip it before logging.
                let response = match build(&self.client).send().await {
                    Ok(response) => response,
                    Err(e) if e.is_timeout() => {
                        self.warn_no_answer();
                        return;
                    }
                    Err(e) => {
                        // `{:#}`: the error and its causes on one line.
                        let error = anyhow::Error::new(e.without_url());
                        tracing::warn!(error = %format!("{error:#}"), "cannot send the {} notification", self.channel);
                        return;
                    }
                };
                let status = response.status();
                if status.is_success() {
                    tracing::debug!("{} notification sent", self.channel);
                    return;
                }
                let retry_after = retry_after(response.headers());
                let text = response.text().await.unwrap_or_default();
                if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                    let wait = retry_after.or_else(|| retry_after_in_body(&text));
                    if let Some(wait) = wait.filter(|wait| Instant::now() + *wait < deadline) {
                        tracing::debug!(
                            "{} asks to wait {wait:?} before sending again",
                            self.channel
                        );
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                let answer: String = text.chars().take(300).collect();
                tracing::warn!(%status, %answer, "{} refused the notification; {hint}", self.channel);
                return;
            }
        };
        if tokio::time::timeout(self.timeout, attempts).await.is_err() {
            self.warn_no_answer();
        }
    }

    fn warn_no_answer(&self) {
        tracing::warn!(
            "cannot send the {} notification: no answer within {}",
            self.channel,
            humantime::format_duration(self.timeout)
        );
    }
}

/// The standard `Retry-After` header, in seconds.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// The wait a JSON body asks for: Discord's `retry_after`, Telegram's
/// `parameters.retry_after`, both in seconds.
fn retry_after_in_body(text: &str) -> Option<Duration> {
    let body: serde_json::Value = serde_json::from_str(text).ok()?;
    let seconds = body
        .get("retry_after")
        .or_else(|| body.get("parameters")?.get("retry_after"))?
        .as_f64()?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// A URL setting with any trailing `/` dropped, so that paths can be appended to it.
fn base_url(url: &Secret) -> Secret {
    Secret::new(url.expose().trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_a_service_asks_for_is_read_from_its_header_or_body() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after_in_body(
                r#"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#
            ),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after_in_body(r#"{"ok": false, "parameters": {"retry_after": 3}}"#),
            Some(Duration::from_secs(3))
        );
        assert_eq!(retry_after_in_body("Too Many Requests"), None);
    }
}
