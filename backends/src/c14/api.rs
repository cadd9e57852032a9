//! The online.net API, as far as C14 needs it: archives, their locations and buckets, and
//! errors that name the call and the API's own words, never the key.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{ErrorKind, Result, StorageError};
use shared::Secret;

/// How long one API call may take.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// One archive as `GET /api/v1/storage/c14/archive` lists it (other fields are ignored).
#[derive(Debug, Deserialize)]
pub(super) struct Archive {
    #[serde(rename = "$ref")]
    pub(super) reference: String,
    pub(super) name: String,
    pub(super) status: String,
    pub(super) creation_date: String,
}

impl Archive {
    pub(super) fn created(&self) -> Result<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.creation_date).map_err(|e| {
            StorageError::other(format!(
                "online.net API: archive {} has a creation_date {:?} that is not ISO 8601 ({e})",
                self.reference, self.creation_date
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Location {
    pub(super) uuid_ref: String,
    #[serde(default)]
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Bucket {
    pub(super) archival_date: Option<String>,
    #[serde(default)]
    pub(super) credentials: Vec<Credentials>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Credentials {
    pub(super) protocol: String,
    #[serde(default)]
    pub(super) login: String,
    #[serde(default)]
    pub(super) password: Secret,
    #[serde(default)]
    pub(super) uri: String,
}

/// The online.net API: bearer-key authentication, JSON in and out.
#[derive(Debug)]
pub(super) struct Api {
    client: reqwest::Client,
    pub(super) base: String,
    key: Secret,
}

/// Why an API call did not return a success.
pub(super) enum ApiError {
    Status(StatusCode, String),
    Network(String),
}

impl ApiError {
    /// A storage error naming the call, the HTTP status and the API's own words; never the key.
    pub(super) fn into_storage(self, api: &Api, path: &str) -> StorageError {
        match self {
            ApiError::Status(status, _) if status == StatusCode::NOT_FOUND => {
                StorageError::not_found(path)
            }
            ApiError::Status(status, text)
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
            {
                StorageError::new(
                    ErrorKind::Denied,
                    format!(
                        "online.net API refused the key (HTTP {status}: {text}); check storage.c14.api_key or ONLINE_API_KEY"
                    ),
                )
            }
            ApiError::Status(status, text) if status.is_server_error() => {
                StorageError::temporary(format!("online.net API {path}: HTTP {status}: {text}"))
            }
            ApiError::Status(status, text) => {
                StorageError::other(format!("online.net API {path}: HTTP {status}: {text}"))
            }
            ApiError::Network(e) => StorageError::temporary(format!(
                "cannot reach the online.net API at {}: {e}",
                api.base
            )),
        }
    }
}

impl Api {
    pub(super) fn new(base: &str, key: Secret) -> Result<Self> {
        shared::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(API_TIMEOUT)
            .build()
            .map_err(|e| StorageError::config(format!("cannot set up HTTPS: {e}")))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> std::result::Result<Vec<u8>, ApiError> {
        // `$ref` values are absolute paths: they join the base URL, not `/api/v1`.
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key.expose());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::Network(e.without_url().to_string()))?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(ApiError::Status(status, error_text(&bytes)))
        }
    }

    pub(super) async fn json<T: DeserializeOwned>(&self, method: Method, path: &str) -> Result<T> {
        let bytes = self
            .call(method, path, None)
            .await
            .map_err(|e| e.into_storage(self, path))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::other(format!("online.net API {path}: unexpected answer ({e})"))
        })
    }
}

/// The API's explanation of an error: its `error` or `message` field, or the start of the body.
fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Explained {
        error: Option<serde_json::Value>,
        message: Option<String>,
        error_description: Option<String>,
    }
    if let Ok(explained) = serde_json::from_slice::<Explained>(body) {
        let text = match (
            explained.error_description,
            explained.message,
            explained.error,
        ) {
            (Some(text), _, _) | (None, Some(text), _) => Some(text),
            (None, None, Some(serde_json::Value::String(text))) => Some(text),
            (None, None, Some(other)) => Some(other.to_string()),
            _ => None,
        };
        if let Some(text) = text {
            return text;
        }
    }
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    if text.trim().is_empty() {
        "no details".to_owned()
    } else {
        text.trim().to_owned()
    }
}
