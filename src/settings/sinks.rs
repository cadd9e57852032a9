//! The settings of the channels that hear of runs: `[telegram]`, `[discord]`, `[webhook]` and
//! `[healthcheck]`. Each is off while its token or URL is empty; each URL is a secret (a
//! Discord webhook or a healthcheck URL is all it takes to post as oiseau).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::Secret;

/// How long one notification may take, retries included, before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// `[telegram]`: notifications are off while the token or the chat id is empty.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramSettings {
    pub token: Secret,
    pub chat_id: String,
    pub api_url: String,
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for TelegramSettings {
    fn default() -> Self {
        TelegramSettings {
            token: Secret::default(),
            chat_id: String::new(),
            api_url: "https://api.telegram.org".to_owned(),
            timeout: SEND_TIMEOUT,
        }
    }
}

/// `[discord]`: a channel's webhook.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordSettings {
    pub webhook_url: Secret,
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for DiscordSettings {
    fn default() -> Self {
        DiscordSettings {
            webhook_url: Secret::default(),
            timeout: SEND_TIMEOUT,
        }
    }
}

/// The events a `[webhook]` can hear of, by the name its JSON body gives them.
pub const WEBHOOK_EVENTS: [&str; 8] = [
    "started",
    "resumed",
    "warming_up",
    "storage_notice",
    "done",
    "nothing_to_do",
    "waiting",
    "failed",
];

/// `[webhook]`: the run's events as JSON, for gateways and the operators' own services.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    pub url: Secret,
    /// Which events are sent; by default what an operator acts on, not every quiet run.
    pub events: Vec<String>,
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            url: Secret::default(),
            events: [
                "resumed",
                "warming_up",
                "storage_notice",
                "done",
                "waiting",
                "failed",
            ]
            .map(str::to_owned)
            .to_vec(),
            timeout: SEND_TIMEOUT,
        }
    }
}

/// `[healthcheck]`: a dead man's switch (healthchecks.io and its self-hosted clones).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthcheckSettings {
    pub url: Secret,
    /// Waiting for the storage counts as success until it has lasted this long.
    #[serde(with = "shared::duration")]
    pub pending_grace: Duration,
    /// Report a failure as `<url>/<exit code>` rather than `<url>/fail`.
    pub exit_codes: bool,
    #[serde(with = "shared::duration")]
    pub timeout: Duration,
}

impl Default for HealthcheckSettings {
    fn default() -> Self {
        HealthcheckSettings {
            url: Secret::default(),
            pending_grace: Duration::from_secs(2 * 24 * 3600),
            exit_codes: false,
            timeout: SEND_TIMEOUT,
        }
    }
}
