//! `oiseau serve`: a small HTTP server a game server falls back to when a replay is no longer
//! in its own folder. `GET /replays/{id}` answers the replay's exact bytes from a local cache,
//! or fetches them with a ranged read of their archive; `GET /healthz` says it is up, with its
//! counters; `GET /` is a page for operators (see [`page`]).
//!
//! Requests for the same replay at once share one storage read; storage reads at once are
//! bounded; a cold archive is asked to be restored once, and answered `503` with `Retry-After`
//! until it is readable.

mod cache;
mod locator;
mod page;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use backends::{PreflightMode, Readiness, Storage};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::sync::Semaphore;

use crate::archive::ranged::{ReadCounter, broken_read, failure_reason};
use crate::archive::replay::{ExpectedReplay, read_replay};
use crate::settings::Settings;
use crate::storage::open_ready;
use cache::Cache;
use locator::{Location, Locator};

/// How long a client is told to wait while a cold archive is restored.
const RETRY_AFTER: Duration = Duration::from_secs(300);
/// How long a client is told to wait after the network broke a read of the storage.
const RETRY_AFTER_BROKEN_READ: Duration = Duration::from_secs(30);
/// How often the storage is asked again whether a cold archive is readable yet.
const WARM_CHECK: Duration = Duration::from_secs(60);
/// The longest id a request may carry: `u64::MAX` has 20 digits.
const MAX_ID_DIGITS: usize = 20;

/// Serves replays until interrupted (Ctrl-C or SIGTERM).
pub async fn serve(settings: &Settings) -> Result<()> {
    // Only looks: a cold storage is woken up by the first request that needs it.
    let storage = open_ready(settings, PreflightMode::Inspect).await?;
    let locator = Locator::load(storage.clone(), settings.work_dir.clone()).await?;
    let cache_dir = settings.serve_cache_dir();
    let server = Arc::new(Server {
        settings: settings.clone(),
        page_status: page::KeptStatus::default(),
        storage,
        locator,
        cache: Cache::open(&cache_dir, settings.serve.cache_size.0),
        reads: Semaphore::new(settings.serve.max_concurrent_reads),
        fetching: std::sync::Mutex::new(HashMap::new()),
        warming: tokio::sync::Mutex::new(HashMap::new()),
        counters: Counters::default(),
    });
    let app = axum::Router::new()
        .route("/", get(page::page))
        .route("/replays/{id}", get(replay))
        .route("/healthz", get(healthz))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind(&settings.serve.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; set serve.listen to a free address:port",
                settings.serve.listen
            )
        })?;
    let address = listener.local_addr()?;
    tracing::info!(
        "serving replays on http://{address}/replays/<id>, and a page at http://{address}/"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("the server stopped")
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match &mut term {
            Some(term) => {
                term.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

struct Server {
    settings: Settings,
    /// The status part of the page, made at most every [`page::STATUS_KEPT`].
    page_status: page::KeptStatus,
    storage: Storage,
    locator: Locator,
    cache: Cache,
    reads: Semaphore,
    /// Replays being fetched: a request for one of them waits for that fetch.
    fetching: std::sync::Mutex<HashMap<u64, Shared<BoxFuture<'static, Answer>>>>,
    /// Cold archives asked to be restored, with when the storage was last asked about them.
    warming: tokio::sync::Mutex<HashMap<String, Instant>>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    cache_hits: AtomicU64,
    storage_reads: AtomicU64,
    storage_bytes: ReadCounter,
    restores_requested: AtomicU64,
}

/// What a fetch came to.
#[derive(Debug, Clone)]
enum Answer {
    Found(Bytes),
    NotFound,
    /// A cold archive is being restored.
    Warming(String),
    /// The network broke the read of the storage: may work on the next try.
    Unavailable(String),
    Failed(String),
}

/// Ids are digits only, and fit in a u64: anything else is refused before any lookup, saying
/// which of the two it breaks.
fn parse_id(text: &str) -> Result<u64, &'static str> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a replay id is digits only\n");
    }
    let too_large = "a replay id is at most 18446744073709551615\n";
    if text.len() > MAX_ID_DIGITS {
        return Err(too_large);
    }
    text.parse().map_err(|_| too_large)
}

async fn replay(State(server): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if let Some(bytes) = server.cache.get(id) {
        server.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
        return replay_response(Bytes::from(bytes));
    }
    match Arc::clone(&server).fetch(id).await {
        Answer::Found(bytes) => replay_response(bytes),
        Answer::NotFound => (
            StatusCode::NOT_FOUND,
            format!("replay {id} was never archived\n"),
        )
            .into_response(),
        Answer::Warming(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, RETRY_AFTER.as_secs().to_string())],
            format!("replay {id} is in cold storage being restored: {why}\n"),
        )
            .into_response(),
        Answer::Unavailable(why) => {
            tracing::warn!("replay {id}: {why}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(
                    header::RETRY_AFTER,
                    RETRY_AFTER_BROKEN_READ.as_secs().to_string(),
                )],
                format!("replay {id}: {why}\n"),
            )
                .into_response()
        }
        Answer::Failed(why) => {
            tracing::warn!("replay {id}: {why}");
            (StatusCode::BAD_GATEWAY, format!("replay {id}: {why}\n")).into_response()
        }
    }
}

fn replay_response(bytes: Bytes) -> Response {
    let etag = format!("\"{}\"", blake3::hash(&bytes).to_hex());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::ETAG,
                HeaderValue::from_str(&etag).expect("hex is a valid header value"),
            ),
        ],
        bytes,
    )
        .into_response()
}

async fn healthz(State(server): State<Arc<Server>>) -> Response {
    let counters = &server.counters;
    let (used, limit) = server.cache.usage();
    axum::Json(serde_json::json!({
        "status": "ok",
        "storage": server.storage.describe(),
        "archives": server.locator.archives().await,
        "cache_hits": counters.cache_hits.load(Ordering::Relaxed),
        "storage_reads": counters.storage_reads.load(Ordering::Relaxed),
        "storage_bytes_read": counters.storage_bytes.bytes(),
        "restores_requested": counters.restores_requested.load(Ordering::Relaxed),
        "cache": {
            "dir": server.cache.dir(),
            "bytes": used,
            "limit": limit,
            "problem": server.cache.problem(),
        },
    }))
    .into_response()
}

impl Server {
    /// Fetches replay `id` into the cache, sharing the fetch with every request for it that
    /// arrives meanwhile.
    async fn fetch(self: Arc<Self>, id: u64) -> Answer {
        let shared = {
            let mut fetching = self
                .fetching
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(running) = fetching.get(&id) {
                running.clone()
            } else {
                let server = Arc::clone(&self);
                let fetch = async move {
                    let answer = server.fetch_once(id).await;
                    server
                        .fetching
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&id);
                    answer
                }
                .boxed()
                .shared();
                fetching.insert(id, fetch.clone());
                fetch
            }
        };
        shared.await
    }

    async fn fetch_once(&self, id: u64) -> Answer {
        // Fetched by a request that finished just before this one started.
        if let Some(bytes) = self.cache.get(id) {
            return Answer::Found(Bytes::from(bytes));
        }
        let location = match self.locator.locate(id).await {
            Ok(Some(location)) => location,
            Ok(None) => return Answer::NotFound,
            Err(e) => return Answer::Failed(format!("{e:#}")),
        };
        if let Some(why) = self.warming_up(&location.archive).await {
            return Answer::Warming(why);
        }
        let Ok(_permit) = self.reads.acquire().await else {
            return Answer::Failed("the server is shutting down".into());
        };
        self.counters.storage_reads.fetch_add(1, Ordering::Relaxed);
        match self.read_replay(id, &location).await {
            Ok(bytes) => {
                self.cache.store(id, &bytes);
                Answer::Found(bytes)
            }
            Err(e) if broken_read(&e).is_some() => Answer::Unavailable(failure_reason(&e)),
            Err(e) => Answer::Failed(format!("{e:#}")),
        }
    }

    /// Why the archive cannot be read yet, when it is cold and not restored: its restore is
    /// requested the first time, and the storage asked again at most every [`WARM_CHECK`].
    async fn warming_up(&self, archive: &str) -> Option<String> {
        let mut warming = self.warming.lock().await;
        if let Some(asked) = warming.get(archive)
            && asked.elapsed() < WARM_CHECK
        {
            return Some(format!("{archive}: restore under way"));
        }
        match self.storage.warm_up(archive).await {
            Ok(Readiness::Ready) => {
                warming.remove(archive);
                None
            }
            Ok(Readiness::Pending(why)) => {
                if warming.insert(archive.to_owned(), Instant::now()).is_none() {
                    self.counters
                        .restores_requested
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!("{why}");
                }
                Some(why)
            }
            Err(e) => Some(format!("cannot prepare {archive} for reading: {e}")),
        }
    }

    /// Reads the replay from the storage (its range, or the archive from its start when the
    /// archive has no ranges) and checks it against its recorded hash. Into memory (replays
    /// are small, and the answer is sent whole): the cache is written afterwards, so that a
    /// cache that cannot be written never fails the answer, nor passes for a damaged archive.
    async fn read_replay(&self, id: u64, location: &Location) -> Result<Bytes> {
        let recorded = ExpectedReplay {
            id,
            size: None,
            hash: location.hash,
            seek: location.seek,
        };
        let counter = &self.counters.storage_bytes;
        let read = read_replay(
            &self.storage,
            &location.archive,
            recorded,
            counter,
            Vec::new(),
        );
        Ok(Bytes::from(read.await?.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_digits_that_fit() {
        assert_eq!(parse_id("42"), Ok(42));
        assert_eq!(parse_id("18446744073709551615"), Ok(u64::MAX));
        for bad in ["", "../etc/passwd", "4a", "-1", "+1", "1.0"] {
            assert_eq!(parse_id(bad), Err("a replay id is digits only\n"), "{bad}");
        }
        for large in ["18446744073709551616", "999999999999999999999999"] {
            assert!(parse_id(large).unwrap_err().contains("at most"), "{large}");
        }
    }
}
