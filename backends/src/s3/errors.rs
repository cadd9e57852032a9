//! S3's failures in oiseau's words: classified by S3's code and the HTTP status (OpenDAL
//! hands S3's error body on only inside its text), and said in one line that names the
//! bucket and key, never with OpenDAL's request context and response headers.

use opendal::ErrorKind as OpendalKind;

use crate::{ErrorKind, StorageError};

/// An OpenDAL error as a storage error naming the bucket, the key and S3's own words.
pub(super) fn storage_error(
    bucket: &str,
    prefix: &str,
    name: &str,
    err: opendal::Error,
) -> StorageError {
    let key = if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    };
    let place = format!("s3://{bucket}/{key}");
    let code = s3_field(&err.to_string(), "code");
    let error = match err.kind() {
        _ if code.as_deref() == Some("NoSuchBucket") => StorageError::config(format!(
            "bucket {bucket} does not exist; create it or fix storage.s3.bucket"
        )),
        OpendalKind::NotFound => return StorageError::not_found(name).with_source(err),
        OpendalKind::ConditionNotMatch => StorageError::new(
            ErrorKind::ConditionFailed,
            format!("{place} was written by another writer meanwhile (HTTP 412)"),
        ),
        _ if code.as_deref() == Some("InvalidObjectState") => StorageError::new(
            ErrorKind::NotReady,
            format!("{place} is in a cold storage class and must be restored first"),
        ),
        OpendalKind::PermissionDenied => StorageError::new(
            ErrorKind::Denied,
            format!(
                "S3 refused access to {place} ({}); check AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY and the bucket's permissions",
                refusal_in_words(code.as_deref())
            ),
        ),
        OpendalKind::ConfigInvalid => {
            StorageError::config(format!("storage.s3 at {place}: {}", in_words(&err)))
        }
        _ if err.is_temporary() => StorageError::temporary(format!("{place}: {}", in_words(&err))),
        _ => StorageError::other(format!("{place}: {}", in_words(&err))),
    };
    error.with_object(name).with_source(err)
}

/// One line for a request tried again, in oiseau's words rather than OpenDAL's (whose own
/// line carries its whole error context).
pub(super) fn say_request_retried(event: opendal::layers::RetryEvent<'_>) {
    tracing::warn!(
        "S3 {} failed ({}); trying that request again in {:.1}s",
        event.op,
        in_words(event.err),
        event.retry_after.as_secs_f64()
    );
}

/// Why S3 refused, by its code: short, for the refusal's one line.
fn refusal_in_words(code: Option<&str>) -> String {
    match code {
        Some(code @ "SignatureDoesNotMatch") => {
            format!("{code}: the secret key does not belong to the key id")
        }
        Some(code @ "InvalidAccessKeyId") => format!("{code}: the server knows no such key id"),
        Some(code) => code.to_owned(),
        // A HEAD's answer has no body to say why.
        None => {
            "HTTP 403 with no details: a wrong key or secret, or the bucket's policy".to_owned()
        }
    }
}

/// What went wrong, in S3's words where it answered with some, else in OpenDAL's message
/// alone (its whole text carries the request's context and every response header).
fn in_words(err: &opendal::Error) -> String {
    s3_words(err).unwrap_or_else(|| err.message().chars().take(200).collect())
}

/// S3's error code and message in an OpenDAL error (`S3Error { code: "AccessDenied", message:
/// "..." }`); none for an answer without a body (a `HEAD`) or a failure before any answer.
fn s3_words(err: &opendal::Error) -> Option<String> {
    let text = err.to_string();
    match (s3_field(&text, "code"), s3_field(&text, "message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (code, _) => code,
    }
}

/// A field of the S3 error body OpenDAL parsed and shows as `S3Error { code: "...", ... }`:
/// the only structured form in which it hands S3's answer on.
fn s3_field(text: &str, name: &str) -> Option<String> {
    text.split_once(&format!("{name}: \""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(value, _)| value.to_owned())
}
