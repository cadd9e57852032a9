//! `oiseau serve` end to end over real HTTP: hits and misses, 404 and 400, the cache's bound,
//! identical requests sharing one storage read, a new archive found, the original tool's
//! archives once indexed, and 503 while a cold archive is restored.

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
    log: std::path::PathBuf,
}

impl Served {
    async fn start(d: &Deployment, port: u16, env: &[(&str, &str)]) -> Served {
        let log = d.root.path().join(format!("serve-{port}.log"));
        let served = Served {
            child: d
                .command(&["serve"], env)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
            log,
            url: format!("http://127.0.0.1:{port}"),
            client: {
                shared::install_tls_provider();
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

    /// What it logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// Asks for replay `id` and checks it answered its exact bytes.
    async fn expect_replay(&self, id: u64, replays: &std::collections::BTreeMap<String, Vec<u8>>) {
        let response = self.get(&format!("/replays/{id}")).await;
        assert_eq!(response.status(), 200, "replay {id}");
        let body = response.bytes().await.unwrap();
        assert_eq!(
            body.as_ref(),
            replays[&format!("replay_{id}.osr")].as_slice()
        );
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
        [
            ".serve.lock",
            "replay_2.osr",
            "replay_4.osr",
            "replay_5.osr"
        ],
        "{cached:?}"
    );
}

/// The original tool's archives, once `oiseau index legacy` has recorded them: a replay is
/// read from its access point (a few MiB of a 100 MB archive), hash checked, late ones found
/// exactly.
#[tokio::test]
async fn serve_answers_replays_of_the_original_tools_archives_once_indexed() {
    use common::seed;
    let (d, port) = serving("", "1 MiB");
    seed::copy_into(&d.storage);
    d.oiseau_async(&["index", "legacy"], &[])
        .await
        .expect_code(0);
    let served = Served::start(&d, port, &[]).await;
    for id in [seed::LATE[0], 600, 5] {
        let response = served.get(&format!("/replays/{id}")).await;
        assert_eq!(response.status(), 200, "replay {id}");
        assert_eq!(response.bytes().await.unwrap().as_ref(), seed::replay(id));
    }
    assert_eq!(served.counter("storage_reads").await, 3);
    let page = served.get("/").await.text().await.unwrap();
    assert_eq!(
        page.matches("format 4 (recorded from the archive)").count(),
        2
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

/// The cache is an optimisation only: a second serve on the same folder, the folder removed,
/// or a file where the folder was never fail a request; replays are then answered from the
/// storage, and the log and /healthz say why.
#[tokio::test]
async fn serve_answers_from_the_storage_when_its_cache_cannot_be_used() {
    let (d, port) = serving("", "10 KiB");
    d.oiseau_async(&["init"], &[]).await.expect_code(0);
    let replays = common::add_sized_replays(&d.temp, 1, 8, 3000);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    let served = Served::start(&d, port, &[]).await;
    served.expect_replay(1, &replays).await;
    assert_eq!(served.health().await["cache"]["problem"], Value::Null);

    // A second serve (another work_dir, the same storage and cache folder) keeps out of it.
    let cache = d.work.join("serve-cache");
    let other = Deployment::new("");
    std::fs::remove_dir_all(&other.storage).ok();
    std::os::unix::fs::symlink(&d.storage, &other.storage).unwrap();
    let other_port = free_port();
    other.write_settings_with_tables(
        "",
        &format!(
            "[serve]\nlisten = \"127.0.0.1:{other_port}\"\ncache_size = \"10 KiB\"\n\
             cache_dir = \"{}\"\n",
            cache.display()
        ),
    );
    let second = Served::start(&other, other_port, &[]).await;
    for id in 2..=8 {
        second.expect_replay(id, &replays).await;
        served.expect_replay(id, &replays).await;
    }
    let problem = second.health().await["cache"]["problem"].clone();
    assert!(
        problem
            .as_str()
            .unwrap()
            .contains("another oiseau serve uses this folder"),
        "{problem}"
    );
    assert!(
        second.log().contains("another oiseau serve"),
        "{}",
        second.log()
    );
    assert_eq!(second.counter("storage_reads").await, 7);
    let held: u64 = common::names_in(&cache)
        .iter()
        .filter(|name| name.ends_with(".osr"))
        .map(|name| std::fs::metadata(cache.join(name)).unwrap().len())
        .sum();
    assert!(held <= 10 * 1024, "{held} bytes over the cache's bound");

    // The folder removed under the first serve: a cached replay is fetched again.
    std::fs::remove_dir_all(&cache).unwrap();
    served.expect_replay(8, &replays).await;
    assert!(
        cache.join("replay_8.osr").exists(),
        "the folder is made again"
    );

    // A file where the folder was: answered from the storage, and said why.
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::write(&cache, b"not a folder").unwrap();
    served.expect_replay(1, &replays).await;
    let problem = served.health().await["cache"]["problem"].clone();
    assert!(
        problem
            .as_str()
            .unwrap()
            .contains("cannot create the cache folder"),
        "{problem}"
    );
    assert!(
        served
            .log()
            .contains("replays are answered from the storage")
    );
    std::fs::remove_file(&cache).unwrap();
    served.expect_replay(2, &replays).await;
    assert_eq!(served.health().await["cache"]["problem"], Value::Null);
}

/// A deployment whose temp folder's name holds markup, with two archives, served on a free
/// port; and the last archive's name.
async fn two_archives_served() -> (Deployment, Served, String) {
    let d = Deployment::new("");
    let port = free_port();
    d.write_settings_with_tables(
        "temp_dir = \"te<i>mp\"",
        &format!("[serve]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let temp = d.root.path().join("te<i>mp");
    std::fs::create_dir_all(&temp).unwrap();
    d.oiseau_async(&["init"], &[]).await.expect_code(0);
    common::add_sized_replays(&temp, 1, 10, 4000);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    common::add_sized_replays(&temp, 11, 2, 4000);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    let last = common::names_in(&d.storage)
        .into_iter()
        .find(|name| name.ends_with("_replays_2.tar.gz"))
        .unwrap();
    let served = Served::start(&d, port, &[]).await;
    (d, served, last)
}

/// `GET /`: the page shows the backup (the archives, a chart, the temp folder), finds replays,
/// shows every value as text (a folder name and an asked id holding markup), and allows
/// nothing but its own stylesheet.
#[tokio::test]
async fn the_page_shows_the_backup_as_text_under_a_strict_policy() {
    let (_d, served, last) = two_archives_served().await;

    let page = served.get("/").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'") && policy.contains("style-src 'sha256-"),
        "{policy}"
    );
    assert!(!policy.contains("unsafe"), "{policy}");
    let body = page.text().await.unwrap();
    assert!(body.contains(&last), "the last archive is listed:\n{body}");
    assert!(body.contains("<svg id=\"chart\""), "{body}");
    assert!(
        body.contains("<dt>Last run</dt><dd><span class=\"ok\">done</span>, started"),
        "the last run is shown:\n{body}"
    );
    assert!(body.contains("te&lt;i&gt;mp"), "{body}");
    assert!(
        !body.contains("te<i>mp"),
        "a folder name is shown as text:\n{body}"
    );
    assert!(!body.contains("<script"), "{body}");

    let found = served.get("/?replay=3").await.text().await.unwrap();
    assert!(
        found.contains("exactly, in the archive's manifest"),
        "{found}"
    );
    assert!(found.contains("href=\"replays/3\""), "{found}");
    let never = served.get("/?replay=99").await.text().await.unwrap();
    assert!(never.contains("Replay 99 was never archived."), "{never}");
    let markup = served
        .get("/?replay=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await
        .text()
        .await
        .unwrap();
    assert!(markup.contains("digits only"), "{markup}");
    assert!(
        markup.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{markup}"
    );
    assert!(
        !markup.contains("<script"),
        "an asked id is shown as text:\n{markup}"
    );
}

/// The page as a browser renders it (Debian's Chromium, headless; scripts/test installs it):
/// the DOM it builds holds the last archive, the chart's bars and the lookup's answer.
#[tokio::test]
async fn the_page_renders_in_a_browser() {
    let (d, served, last) = two_archives_served().await;
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| {
            std::process::Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .expect("no chromium: run the tests with scripts/test, which installs Debian's chromium");
    let profile = d.root.path().join("browser");
    let dom = tokio::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("{}/?replay=3", served.url))
        .output()
        .await
        .unwrap();
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert!(dom.contains(&last), "the last archive is rendered:\n{dom}");
    assert_eq!(
        dom.matches("<rect class=\"bar\"").count(),
        2,
        "a bar per archive:\n{dom}"
    );
    assert!(dom.contains("Download replay_3.osr"), "{dom}");
    assert!(dom.contains("te&lt;i&gt;mp"), "{dom}");
}

/// The page over an FTP server and an S3 server (SeaweedFS): the archive listed and charted,
/// and a replay found exactly.
#[tokio::test]
async fn the_page_shows_the_backup_on_ftp_and_s3() {
    for target in [
        common::target::Target::ftp(),
        common::target::Target::seaweedfs(),
    ] {
        let port = free_port();
        let mut settings = std::fs::read_to_string(&target.d.config).unwrap();
        settings.push_str(&format!("\n[serve]\nlisten = \"127.0.0.1:{port}\"\n"));
        std::fs::write(&target.d.config, settings).unwrap();
        target.init();
        common::add_sized_replays(&target.d.temp, 1, 10, 4000);
        let run = target.run(&[]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let env: Vec<(&str, &str)> = target.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let served = Served::start(&target.d, port, &env).await;
        let page = served.get("/").await.text().await.unwrap();
        assert!(page.contains("_replays_1.tar.gz"), "{page}");
        assert_eq!(page.matches("<rect class=\"bar\"").count(), 1, "{page}");
        let found = served.get("/?replay=3").await.text().await.unwrap();
        assert!(
            found.contains("exactly, in the archive's manifest"),
            "{found}"
        );
    }
}
