//! Telegram notifications: a reporter that renders the run's events as the chat messages
//! operators know. A message that cannot be sent is logged and never fails the run.

use std::time::Duration;

use async_trait::async_trait;
use backends::Secret;

use crate::events::{Event, Outcome, Reporter, Reporters, WaitCause};
use crate::settings::{ByteSize, Settings, TelegramSettings};

/// How long one message may take before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The reporters the settings turn on.
pub fn reporters(settings: &Settings) -> Reporters {
    let mut reporters: Vec<Box<dyn Reporter>> = Vec::new();
    if let Some(telegram) = Telegram::new(&settings.telegram) {
        reporters.push(Box::new(telegram));
    }
    Reporters::new(reporters)
}

/// Sends messages to the operators' chat.
#[derive(Debug)]
pub struct Telegram {
    client: reqwest::Client,
    api_url: String,
    token: Secret,
    chat_id: String,
}

impl Telegram {
    /// On when both the token and the chat id are set.
    pub fn new(settings: &TelegramSettings) -> Option<Self> {
        (!settings.token.is_empty() && !settings.chat_id.is_empty()).then(|| Telegram {
            client: reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .build()
                .expect("a TLS backend is compiled in"),
            api_url: settings.api_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            chat_id: settings.chat_id.clone(),
        })
    }

    /// Sends `html` (Telegram's HTML subset; escape what comes from elsewhere with [`escape`]).
    async fn send(&self, html: &str) {
        let url = format!("{}/bot{}/sendMessage", self.api_url, self.token.expose());
        let body = serde_json::json!({
            "chat_id": self.chat_id,
            "text": html,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        // reqwest puts the URL, and so the token, in its errors: strip it before logging.
        match self.client.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => {
                tracing::debug!("notification sent");
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                tracing::warn!(%status, answer = %text.chars().take(300).collect::<String>(), "Telegram refused the notification; check telegram.token and telegram.chat_id");
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "cannot send the Telegram notification");
            }
        }
    }
}

/// The chat message for an event, if the chat hears of it: successes, waits for the storage
/// and failures.
fn render(event: &Event) -> Option<String> {
    let outcome = match event {
        Event::Finished(outcome) => outcome,
        Event::ArchivesWarmingUp { detail } => {
            return Some(format!("⏳ <b>oiseau</b>: {}", escape(detail)));
        }
        Event::Started | Event::Resumed { .. } => return None,
    };
    match outcome {
        Outcome::Done(done) => Some(format!(
            "✅ <b>oiseau</b>: archived <code>{}</code>: {} replays, {}, in {}",
            escape(&done.archive_name),
            done.replays,
            ByteSize(done.archive_bytes),
            humantime::format_duration(Duration::from_secs(done.duration.as_secs())),
        )),
        Outcome::Waiting {
            cause: WaitCause::Storage,
            reason,
        } => Some(format!("⏳ <b>oiseau</b>: {}", escape(reason))),
        Outcome::Failed { error } => Some(format!(
            "❌ <b>oiseau</b>: backup failed, nothing was deleted: {}",
            escape(error)
        )),
        Outcome::Waiting {
            cause: WaitCause::AnotherRun,
            ..
        }
        | Outcome::NothingToDo { .. } => None,
    }
}

#[async_trait]
impl Reporter for Telegram {
    async fn report(&self, event: &Event) {
        if let Some(html) = render(event) {
            self.send(&html).await;
        }
    }
}

/// Escapes text for Telegram's HTML parse mode.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_telegram_would_parse() {
        assert_eq!(escape("a<b> & c"), "a&lt;b&gt; &amp; c");
    }

    #[test]
    fn off_without_token_or_chat() {
        let mut settings = TelegramSettings {
            chat_id: "1".into(),
            ..TelegramSettings::default()
        };
        assert!(Telegram::new(&settings).is_none());
        settings.token = Secret::new("t");
        assert!(Telegram::new(&settings).is_some());
    }

    #[test]
    fn the_chat_hears_of_outcomes_worth_acting_on() {
        let waiting = |cause| {
            Event::Finished(Outcome::Waiting {
                cause,
                reason: "unarchive <started>".into(),
            })
        };
        assert_eq!(
            render(&waiting(WaitCause::Storage)).as_deref(),
            Some("⏳ <b>oiseau</b>: unarchive &lt;started&gt;")
        );
        assert_eq!(render(&waiting(WaitCause::AnotherRun)), None);
        assert_eq!(render(&Event::Started), None);
        let failed = Event::Finished(Outcome::Failed {
            error: "index line 2".into(),
        });
        assert!(
            render(&failed)
                .unwrap()
                .starts_with("❌ <b>oiseau</b>: backup failed")
        );
    }
}
