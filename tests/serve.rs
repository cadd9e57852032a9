//! `oiseau serve` end to end over real HTTP: hits and misses, 404 and 400, the cache's bound,
//! identical requests sharing one storage read, a new archive found, and 503 while a cold
//! archive is restored.

mod common;

use std::time::Duration;

use common::Deployment;
use common::ftp::free_port;
use common::s3::MotoServer;
use serde_json::Value;

/// A running `oiseau serve`, stopped when dropped.
struct Served {
    child: std::process::Child,
    url: String,
    client: reqwest::Client,
}

impl Served {
    async fn start(d: &Deployment, port: u16, env: &[(&str, &str)]) -> Served {
        let served = Served {
            child: d.spawn(&["serve"], env),
            url: format!("http://127.0.0.1:{port}"),
            client: {
                backends::install_tls_provider();
                reqwest::Client::new()
            },
        };
        for _ in 0..400 {
            if served
                .client
                .get(format!("{}/healthz", served.url))
                .send()
                .await
                .is_ok()
            {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oiseau serve did not start");
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    async fn health(&self) -> Value {
        self.get("/healthz").await.json().await.unwrap()
    }

    async fn counter(&self, name: &str) -> u64 {
        self.health().await[name].as_u64().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deployment whose settings have `tables` and a `[serve]` table on a free port.
fn serving(tables: &str, cache_size: &str) -> (Deployment, u16) {
    let d = Deployment::new("");
    let port = free_port();
    d.write_settings_with_tables(
        "",
        &format!(
            "{tables}\n[serve]\nlisten = \"127.0.0.1:{port}\"\ncache_size = \"{cache_size}\"\n"
        ),
    );
    (d, port)
}

#[tokio::test]
async fn serve_answers_hits_misses_bad_ids_and_new_archives() {
    let (d, port) = serving("", "12 KiB");
    d.oiseau_async(&["init"], &[]).await.expect_code(0);
    let replays = common::add_sized_replays(&d.temp, 1, 10, 4000);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    let served = Served::start(&d, port, &[]).await;

    let first = served.get("/replays/3").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "application/octet-stream");
    assert_eq!(first.headers()["content-length"], "4000");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let body = first.bytes().await.unwrap();
    assert_eq!(body.as_ref(), replays["replay_3.osr"].as_slice());
    assert_eq!(etag, format!("\"{}\"", blake3::hash(&body).to_hex()));
    let head = served
        .client
        .head(format!("{}/replays/3", served.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "4000");
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(served.get("/replays/3").await.bytes().await.unwrap(), body);
    assert_eq!(
        served.counter("storage_reads").await,
        1,
        "later requests hit the cache"
    );
    assert_eq!(served.counter("cache_hits").await, 2);

    // A new archive is found once the index grows.
    let late = common::add_sized_replays(&d.temp, 11, 2, 4000);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    let new = served.get("/replays/12").await;
    assert_eq!(new.status(), 200);
    assert_eq!(
        new.bytes().await.unwrap().as_ref(),
        late["replay_12.osr"].as_slice()
    );

    let reads = served.counter("storage_reads").await;
    assert_eq!(served.get("/replays/999").await.status(), 404);
    for bad in [
        "/replays/abc",
        "/replays/..%2F..%2Fetc%2Fpasswd",
        "/replays/-1",
        "/replays/99999999999999999999999",
        "/replays/1.0",
    ] {
        assert_eq!(served.get(bad).await.status(), 400, "{bad}");
    }
    assert_eq!(
        served.counter("storage_reads").await,
        reads,
        "no storage read for them"
    );

    // Identical requests at once: one storage read.
    let requests = (0..8).map(|_| served.get("/replays/7"));
    for response in futures_util::future::join_all(requests).await {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            replays["replay_7.osr"].as_slice()
        );
    }
    assert_eq!(served.counter("storage_reads").await, reads + 1);

    // The cache holds 12 KiB: three replays of 4000 bytes; the least recently used go.
    for id in [1, 2, 4, 5] {
        assert_eq!(served.get(&format!("/replays/{id}")).await.status(), 200);
    }
    let cache = d.work.join("serve-cache");
    let cached = common::names_in(&cache);
    assert_eq!(
        cached,
        ["replay_2.osr", "replay_4.osr", "replay_5.osr"],
        "{cached:?}"
    );
}

#[tokio::test]
async fn serve_answers_503_while_a_cold_archive_is_restored_and_asks_once() {
    let moto = MotoServer::start();
    moto.create_bucket("cold");
    let env = common::s3::env();
    let (d, port) = serving(&moto.settings("cold", "GLACIER"), "1 MiB");
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    common::add_sized_replays(&d.temp, 1, 3, 4000);
    d.oiseau_async(&["run"], &env).await.expect_code(0);
    moto.keep_restores_pending(10);
    let served = Served::start(&d, port, &env).await;
    for _ in 0..3 {
        let response = served.get("/replays/2").await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "300");
    }
    assert_eq!(served.counter("restores_requested").await, 1);
    assert_eq!(served.counter("storage_reads").await, 0);
}
