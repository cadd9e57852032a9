//! Telegram: the run's events as the chat messages operators know (emoji prefix, HTML).

use async_trait::async_trait;
use shared::Secret;

use super::{ChatMessage, Endpoint, took};
use crate::report::events::{Event, Reporter};
use crate::settings::TelegramSettings;
use crate::units::ByteSize;

/// Sends messages to the operators' chat.
#[derive(Debug)]
pub struct Telegram {
    endpoint: Endpoint,
    api_url: String,
    token: Secret,
    chat_id: String,
}

impl Telegram {
    /// On when both the token and the chat id are set.
    pub fn new(settings: &TelegramSettings) -> Option<Self> {
        (!settings.token.is_empty() && !settings.chat_id.is_empty()).then(|| Telegram {
            endpoint: Endpoint::new("Telegram", settings.timeout),
            api_url: settings.api_url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            chat_id: settings.chat_id.clone(),
        })
    }
}

#[async_trait]
impl Reporter for Telegram {
    async fn report(&self, event: &Event) {
        let Some(html) = ChatMessage::of(event).map(render) else {
            return;
        };
        let url = format!("{}/bot{}/sendMessage", self.api_url, self.token.expose());
        let body = serde_json::json!({
            "chat_id": self.chat_id,
            "text": html,
            "parse_mode": "HTML",
            "disable_web_page_preview": true,
        });
        self.endpoint
            .send(
                |client| client.post(&url).json(&body),
                "check telegram.token and telegram.chat_id",
            )
            .await;
    }
}

/// The chat message, in Telegram's HTML subset.
fn render(message: ChatMessage<'_>) -> String {
    match message {
        ChatMessage::Archived(done) => format!(
            "✅ <b>oiseau</b>: archived <code>{}</code>: {} replays, {}, in {}",
            escape(&done.archive_name),
            done.replays,
            ByteSize(done.archive_bytes),
            took(done),
        ),
        ChatMessage::Waiting(reason) => format!("⏳ <b>oiseau</b>: {}", escape(reason)),
        ChatMessage::Notice(detail) => format!("⚠️ <b>oiseau</b>: {}", escape(detail)),
        ChatMessage::Failed(error) => format!(
            "❌ <b>oiseau</b>: backup failed, nothing was deleted: {}",
            escape(error)
        ),
    }
}

/// Escapes text for Telegram's HTML parse mode.
fn escape(text: &str) -> String {
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
    fn messages_keep_their_prefixes_and_escape_what_comes_from_elsewhere() {
        assert_eq!(
            render(ChatMessage::Waiting("unarchive <started>")),
            "⏳ <b>oiseau</b>: unarchive &lt;started&gt;"
        );
        assert!(
            render(ChatMessage::Failed("index line 2"))
                .starts_with("❌ <b>oiseau</b>: backup failed")
        );
    }
}
