//! Discord: the run's events as a channel webhook's embeds, a colour per outcome and the
//! figures as fields.

use async_trait::async_trait;
use serde_json::{Value, json};
use shared::Secret;

use super::{ChatMessage, Endpoint, took};
use crate::report::events::{Event, Reporter};
use crate::settings::DiscordSettings;
use crate::units::ByteSize;

const GREEN: u32 = 0x2e_cc71;
const AMBER: u32 = 0xf1_c40f;
const RED: u32 = 0xe7_4c3c;
/// Discord refuses an embed whose description is longer than 4096 characters.
const DESCRIPTION_LIMIT: usize = 4000;

/// Posts to a Discord channel's webhook.
#[derive(Debug)]
pub struct Discord {
    endpoint: Endpoint,
    webhook_url: Secret,
}

impl Discord {
    /// On when the webhook URL is set.
    pub fn new(settings: &DiscordSettings) -> Option<Self> {
        (!settings.webhook_url.is_empty()).then(|| Discord {
            endpoint: Endpoint::new("Discord", settings.timeout),
            webhook_url: settings.webhook_url.clone(),
        })
    }
}

#[async_trait]
impl Reporter for Discord {
    async fn report(&self, event: &Event) {
        let Some(body) = ChatMessage::of(event).map(render) else {
            return;
        };
        self.endpoint
            .send(
                |client| client.post(self.webhook_url.expose()).json(&body),
                "check discord.webhook_url (DISCORD_WEBHOOK_URL)",
            )
            .await;
    }
}

/// The webhook's JSON body: one embed, and no mention in an error text ever pings anyone.
fn render(message: ChatMessage<'_>) -> Value {
    let embed = match message {
        ChatMessage::Archived(done) => json!({
            "title": format!("✅ Archived {}", done.archive_name),
            "color": GREEN,
            "fields": [
                field("Archive", done.archive_id.to_string()),
                field("Replays", done.replays.to_string()),
                field("Size", ByteSize(done.archive_bytes).to_string()),
                field("Took", took(done)),
                field("Host", shared::host_name()),
            ],
        }),
        ChatMessage::Waiting(reason) => json!({
            "title": "⏳ Waiting for the storage",
            "description": truncated(reason),
            "color": AMBER,
            "fields": [field("Host", shared::host_name())],
        }),
        ChatMessage::Notice(detail) => json!({
            "title": "⚠️ The storage needs a look",
            "description": truncated(detail),
            "color": AMBER,
            "fields": [field("Host", shared::host_name())],
        }),
        ChatMessage::Failed(error) => json!({
            "title": "❌ Backup failed, nothing was deleted",
            "description": truncated(error),
            "color": RED,
            "fields": [field("Host", shared::host_name())],
        }),
    };
    json!({
        "username": "oiseau",
        "embeds": [embed],
        "allowed_mentions": { "parse": [] },
    })
}

fn field(name: &str, value: String) -> Value {
    json!({ "name": name, "value": value, "inline": true })
}

fn truncated(text: &str) -> String {
    if text.chars().count() <= DESCRIPTION_LIMIT {
        text.to_owned()
    } else {
        text.chars().take(DESCRIPTION_LIMIT).chain(['…']).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_error_is_cut_to_what_discord_accepts() {
        let body = render(ChatMessage::Failed(&"x".repeat(10_000)));
        let description = body["embeds"][0]["description"].as_str().unwrap();
        assert_eq!(description.chars().count(), DESCRIPTION_LIMIT + 1);
        assert_eq!(body["embeds"][0]["color"], RED);
        assert_eq!(body["allowed_mentions"]["parse"], json!([]));
    }
}
