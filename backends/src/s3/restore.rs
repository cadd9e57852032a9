//! Restores of cold objects (GLACIER, DEEP_ARCHIVE), which OpenDAL does not speak: a `HEAD`
//! that reads `x-amz-storage-class` and `x-amz-restore`, and `POST ?restore`. Both are signed
//! with reqsign, the signing crate OpenDAL itself uses, so no SigV4 is written here.

use reqsign_core::SignRequest;

use super::S3Config;
use crate::{ErrorKind, Readiness, Result, StorageError};

/// Where an object stands, as far as reading it goes.
#[derive(Debug, PartialEq, Eq)]
enum ColdState {
    /// Not in a class that needs a restore, or restored and readable.
    Readable,
    /// A restore is under way.
    Restoring,
    /// Cold, and no restore asked for.
    Frozen,
}

/// Signs and sends the few S3 requests OpenDAL has no call for.
#[derive(Debug)]
pub struct Restorer {
    client: reqwest::Client,
    signer: reqsign_aws_v4::RequestSigner,
    credential: reqsign_aws_v4::Credential,
    /// `https://host[:port]/bucket` (path style) or `https://bucket.host` (virtual host).
    base: String,
    prefix: String,
    days: u32,
    tier: String,
}

/// Classes whose objects answer `InvalidObjectState` until restored.
pub const NEEDS_RESTORE: [&str; 2] = ["GLACIER", "DEEP_ARCHIVE"];

impl Restorer {
    pub fn new(config: &S3Config, prefix: &str) -> Result<Self> {
        let endpoint = if config.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", config.region)
        } else {
            config.endpoint.trim_end_matches('/').to_owned()
        };
        let base = if config.virtual_host_style {
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", &endpoint));
            format!("{scheme}://{}.{host}", config.bucket)
        } else {
            format!("{endpoint}/{}", config.bucket)
        };
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| StorageError::config(format!("storage.s3: cannot set up HTTPS: {e}")))?;
        Ok(Restorer {
            client,
            signer: reqsign_aws_v4::RequestSigner::new("s3", &config.region),
            credential: reqsign_aws_v4::Credential {
                access_key_id: config.access_key_id.clone(),
                secret_access_key: config.secret_access_key.expose().to_owned(),
                session_token: (!config.session_token.is_empty())
                    .then(|| config.session_token.expose().to_owned()),
                expires_in: None,
            },
            base,
            prefix: prefix.to_owned(),
            days: config.restore_days,
            tier: config.restore_tier.clone(),
        })
    }

    fn url(&self, name: &str, query: &str) -> String {
        use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
        const KEY: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'/')
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~');
        let key = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        };
        format!("{}/{}{query}", self.base, utf8_percent_encode(&key, KEY))
    }

    /// Sends one signed request and returns the answer, whatever its status.
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: String,
        name: &str,
    ) -> Result<reqwest::Response> {
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(())
            .map_err(|e| StorageError::other(format!("cannot build a request for {name}: {e}")))?;
        let (mut parts, ()) = request.into_parts();
        self.signer
            .sign_request(
                &reqsign_core::Context::new(),
                &mut parts,
                Some(&self.credential),
                None,
            )
            .await
            .map_err(|e| StorageError::other(format!("cannot sign a request for {name}: {e}")))?;
        self.client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                StorageError::temporary(format!("S3 request for {name}: {}", e.without_url()))
                    .with_object(name)
            })
    }

    async fn state(&self, name: &str) -> Result<ColdState> {
        let response = self
            .send(http::Method::HEAD, &self.url(name, ""), String::new(), name)
            .await?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(StorageError::not_found(name));
        }
        if !status.is_success() {
            return Err(answer_error(name, "HEAD", status, ""));
        }
        let header = |key: &str| {
            response
                .headers()
                .get(key)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let class = header("x-amz-storage-class");
        let restore = header("x-amz-restore");
        Ok(
            if !NEEDS_RESTORE.contains(&class.as_str())
                || restore.contains("ongoing-request=\"false\"")
            {
                ColdState::Readable
            } else if restore.contains("ongoing-request=\"true\"") {
                ColdState::Restoring
            } else {
                ColdState::Frozen
            },
        )
    }

    /// Makes `name` readable: nothing to do for a warm or restored object; otherwise a restore
    /// is requested (once) and the object is pending until S3 says it is done.
    pub async fn warm_up(&self, name: &str) -> Result<Readiness> {
        match self.state(name).await? {
            ColdState::Readable => Ok(Readiness::Ready),
            ColdState::Restoring => Ok(Readiness::Pending(format!("{name}: still restoring"))),
            ColdState::Frozen => {
                let body = format!(
                    "<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                     <Days>{}</Days><GlacierJobParameters><Tier>{}</Tier>\
                     </GlacierJobParameters></RestoreRequest>",
                    self.days, self.tier
                );
                let response = self
                    .send(http::Method::POST, &self.url(name, "?restore"), body, name)
                    .await?;
                let status = response.status();
                // 202: started; 409: already under way; 200: already restored.
                if status.is_success() || status == reqwest::StatusCode::CONFLICT {
                    return Ok(Readiness::Pending(format!(
                        "{name}: restore requested ({} tier, readable for {} days once done)",
                        self.tier, self.days
                    )));
                }
                let text = response.text().await.unwrap_or_default();
                Err(answer_error(name, "RestoreObject", status, &text))
            }
        }
    }
}

fn answer_error(name: &str, call: &str, status: reqwest::StatusCode, body: &str) -> StorageError {
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map_or("", |(code, _)| code);
    let kind = match status.as_u16() {
        401 | 403 => ErrorKind::Denied,
        _ => ErrorKind::Other,
    };
    let error = StorageError::new(kind, format!("S3 {call} of {name}: HTTP {status} {code}"))
        .with_object(name);
    if status.is_server_error() {
        error.with_status(crate::ErrorStatus::Temporary)
    } else {
        error
    }
}
