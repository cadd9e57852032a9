//! `[webhook]`: the run's events as JSON (see [`super::json::Report`]) posted to any URL:
//! Slack-compatible gateways, ntfy, Matrix bridges, the operators' own service.

use async_trait::async_trait;
use shared::Secret;

use super::Endpoint;
use super::json::Report;
use crate::report::events::{Event, Reporter};
use crate::settings::WebhookSettings;

#[derive(Debug)]
pub struct Webhook {
    endpoint: Endpoint,
    url: Secret,
    events: Vec<String>,
}

impl Webhook {
    /// On when the URL is set.
    pub fn new(settings: &WebhookSettings) -> Option<Self> {
        (!settings.url.is_empty()).then(|| Webhook {
            endpoint: Endpoint::new("webhook", settings.timeout),
            url: settings.url.clone(),
            events: settings.events.clone(),
        })
    }
}

#[async_trait]
impl Reporter for Webhook {
    async fn report(&self, event: &Event) {
        if !self.events.iter().any(|name| name == event.name()) {
            return;
        }
        let body = Report::of(event);
        self.endpoint
            .send(
                |client| client.post(self.url.expose()).json(&body),
                "check webhook.url (OISEAU_WEBHOOK_URL)",
            )
            .await;
    }
}
