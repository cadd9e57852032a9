//! Telegram notifications. A notification that cannot be sent is logged and never fails the
//! run: the backup itself matters more than the message about it.

use std::time::Duration;

use backends::Secret;

use crate::settings::TelegramSettings;

/// How long one message may take before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends messages to the operators' chat, or nowhere when notifications are off.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
}

#[derive(Debug)]
struct Target {
    client: reqwest::Client,
    api_url: String,
    token: Secret,
    chat_id: String,
}

impl Notifier {
    /// Notifications are on when both the token and the chat id are set.
    pub fn new(settings: &TelegramSettings) -> Self {
        let target = (!settings.token.is_empty() && !settings.chat_id.is_empty()).then(|| Target {
            client: reqwest::Client::builder()
                .timeout(SEND_TIMEOUT)
                .build()
                .expect("a TLS backend is compiled in"),
            api_url: settings.api_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            chat_id: settings.chat_id.clone(),
        });
        Notifier { target }
    }

    /// Sends `html` (Telegram's HTML subset; escape what comes from elsewhere with [`escape`]).
    pub async fn send(&self, html: &str) {
        let Some(target) = &self.target else {
            return;
        };
        let url = format!(
            "{}/bot{}/sendMessage",
            target.api_url,
            target.token.expose()
        );
        let body = serde_json::json!({
            "chat_id": target.chat_id,
            "text": html,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        // reqwest puts the URL, and so the token, in its errors: strip it before logging.
        match target.client.post(url).json(&body).send().await {
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
        assert!(Notifier::new(&settings).target.is_none());
        settings.token = Secret::new("t");
        assert!(Notifier::new(&settings).target.is_some());
    }
}
