//! The S3 calls OpenDAL has none for: restores of cold objects (GLACIER, DEEP_ARCHIVE), with a
//! `HEAD` that reads `x-amz-storage-class` and `x-amz-restore` and `POST ?restore`; and the
//! incomplete multipart uploads a killed run leaves behind (`GET ?uploads`, `DELETE
//! ?uploadId=`), which are billed until aborted. All are signed with reqsign, the signing crate
//! OpenDAL itself uses, so no SigV4 is written here.

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
pub struct RawS3 {
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

impl RawS3 {
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
        shared::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| StorageError::config(format!("storage.s3: cannot set up HTTPS: {e}")))?;
        Ok(RawS3 {
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

    /// The URL of the object `name` (relative to the prefix), with `query`.
    fn url(&self, name: &str, query: &str) -> String {
        let key = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        };
        self.key_url(&key, query)
    }

    /// The URL of the key `key` (from the bucket's root), with `query`.
    fn key_url(&self, key: &str, query: &str) -> String {
        format!("{}/{}{query}", self.base, encode(key, true))
    }

    /// Aborts the incomplete multipart uploads under the prefix that were started before
    /// `older_than` (a killed run's: S3 bills their parts until they are aborted), and returns
    /// their keys.
    pub async fn abort_abandoned_uploads(
        &self,
        older_than: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<String>> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let url = format!("{}?prefix={}&uploads=", self.base, encode(&prefix, false));
        let response = self
            .send(
                http::Method::GET,
                &url,
                String::new(),
                "the multipart uploads",
            )
            .await?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(answer_error(
                "the multipart uploads",
                "ListMultipartUploads",
                status,
                &text,
            ));
        }
        let mut aborted = Vec::new();
        // Only objects of the storage's flat layout: a bucket shared with other tools keeps
        // their uploads, in folders below the prefix or beside it.
        let ours = |key: &str| {
            key.strip_prefix(&prefix)
                .is_some_and(|name| !name.contains('/'))
        };
        for (key, id) in abandoned(&text, older_than)
            .into_iter()
            .filter(|(key, _)| ours(key))
        {
            let url = self.key_url(key, &format!("?uploadId={}", encode(id, false)));
            let response = self
                .send(http::Method::DELETE, &url, String::new(), key)
                .await?;
            let status = response.status();
            if !status.is_success() && status != reqwest::StatusCode::NOT_FOUND {
                let text = response.text().await.unwrap_or_default();
                return Err(answer_error(key, "AbortMultipartUpload", status, &text));
            }
            aborted.push(key.to_owned());
        }
        Ok(aborted)
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

/// Percent-encodes a key or a query value once, as SigV4 expects; `/` stays in keys.
fn encode(text: &str, keep_slashes: bool) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    const KEY: &AsciiSet = &VALUE.remove(b'/');
    utf8_percent_encode(text, if keep_slashes { KEY } else { VALUE }).to_string()
}

/// The uploads of a `ListMultipartUploads` answer started before `older_than`: key and id.
fn abandoned(listing: &str, older_than: chrono::DateTime<chrono::Utc>) -> Vec<(&str, &str)> {
    listing
        .split("<Upload>")
        .skip(1)
        .filter_map(|upload| {
            let initiated = xml_field(upload, "Initiated")
                .and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok())?;
            (initiated < older_than)
                .then(|| Some((xml_field(upload, "Key")?, xml_field(upload, "UploadId")?)))?
        })
        .collect()
}

/// The text of the first `<name>` element in `xml`.
fn xml_field<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = xml.split_once(&format!("<{name}>"))?;
    rest.split_once(&format!("</{name}>"))
        .map(|(value, _)| value)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uploads_started_before_the_limit_are_abandoned() {
        let listing = "<ListMultipartUploadsResult>\
            <Upload><UploadId>old</UploadId><Key>osu/1.tar.gz</Key>\
            <Initiated>2026-11-01T10:00:00.000Z</Initiated></Upload>\
            <Upload><UploadId>live</UploadId><Key>osu/2.tar.gz</Key>\
            <Initiated>2026-11-29T10:00:00.000Z</Initiated></Upload>\
            </ListMultipartUploadsResult>";
        let limit = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(abandoned(listing, limit), [("osu/1.tar.gz", "old")]);
    }

    #[test]
    fn keys_and_values_are_encoded_once() {
        assert_eq!(
            encode("osu/replay 1+2.tar.gz", true),
            "osu/replay%201%2B2.tar.gz"
        );
        assert_eq!(encode("osu/", false), "osu%2F");
    }
}
