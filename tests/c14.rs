//! The C14 backend against a stand-in for the online.net API (answers kept in fixtures/c14),
//! with a real FTP server as the bucket.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::ftp::{FTP_PASSWORD, FtpServer};
use common::telegram::telegram;
use common::{Deployment, INDEX, archive_members};
use serde_json::Value;

const API_KEY: &str = "online-TEST-SECRET-api-key";
const ARCHIVE: &str = "/api/v1/storage/c14/safe/safe-1/archive/sync-2";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fixtures/c14/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// What the stand-in answers and what it was asked.
struct Api {
    archives: String,
    /// `None`: no bucket open (404); otherwise the bucket JSON.
    bucket: Option<String>,
    user_status: StatusCode,
    archives_status: StatusCode,
    unarchive_status: StatusCode,
    delete_status: StatusCode,
    requests: Vec<(Method, String)>,
    unarchive_bodies: Vec<Value>,
}

impl Api {
    fn new() -> Self {
        Api {
            archives: fixture("archives.json"),
            bucket: None,
            user_status: StatusCode::OK,
            archives_status: StatusCode::OK,
            unarchive_status: StatusCode::ACCEPTED,
            delete_status: StatusCode::ACCEPTED,
            requests: Vec::new(),
            unarchive_bodies: Vec::new(),
        }
    }

    fn answer(&mut self, method: Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        self.requests.push((method.clone(), path.to_owned()));
        if headers.get("authorization").and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {API_KEY}"))
        {
            return (StatusCode::UNAUTHORIZED, fixture("error_401.json")).into_response();
        }
        let error = |status: StatusCode| {
            let file = match status.as_u16() {
                401 => "error_401.json",
                409 => "error_409.json",
                _ => "error_500.json",
            };
            (status, fixture(file)).into_response()
        };
        match (method, path) {
            (Method::GET, "/api/v1/user") if self.user_status == StatusCode::OK => {
                fixture("user.json").into_response()
            }
            (Method::GET, "/api/v1/user") => error(self.user_status),
            (Method::GET, "/api/v1/storage/c14/archive")
                if self.archives_status == StatusCode::OK =>
            {
                self.archives.clone().into_response()
            }
            (Method::GET, "/api/v1/storage/c14/archive") => error(self.archives_status),
            (Method::GET, p) if p.ends_with("/bucket") => match &self.bucket {
                Some(bucket) => bucket.clone().into_response(),
                None => (StatusCode::NOT_FOUND, fixture("error_404_bucket.json")).into_response(),
            },
            (Method::GET, p) if p.ends_with("/location") => {
                fixture("locations.json").into_response()
            }
            (Method::POST, p) if p.ends_with("/unarchive") => {
                self.unarchive_bodies
                    .push(serde_json::from_slice(body).unwrap());
                if self.unarchive_status.is_success() {
                    (self.unarchive_status, "").into_response()
                } else {
                    error(self.unarchive_status)
                }
            }
            (Method::DELETE, _) if self.delete_status.is_success() => {
                StatusCode::NO_CONTENT.into_response()
            }
            (Method::DELETE, _) => error(self.delete_status),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    fn count(&self, method: Method) -> usize {
        self.requests.iter().filter(|(m, _)| *m == method).count()
    }
}

type Shared = Arc<Mutex<Api>>;

async fn serve(api: Api) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(api));
    let app = Router::new()
        .fallback(
            |State(api): State<Shared>,
             method: Method,
             uri: Uri,
             headers: HeaderMap,
             body: Bytes| async move {
                api.lock()
                    .unwrap()
                    .answer(method, uri.path(), &headers, &body)
            },
        )
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

/// A deployment on the C14 backend, notifying a Telegram stand-in.
fn deployment(api_url: &str, telegram_url: &str, extra: &str) -> Deployment {
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!(
            "[storage]\nbackend = \"c14\"\n[storage.ftp]\ntimeout = \"10s\"\n[storage.c14]\napi_url = \"{api_url}\"\n{extra}\n\
             [telegram]\ntoken = \"1:tg\"\nchat_id = \"7\"\napi_url = \"{telegram_url}\"\n"
        ),
    );
    d
}

const ENV: [(&str, &str); 1] = [("ONLINE_API_KEY", API_KEY)];

fn assert_no_secret(out: &common::Finished) {
    for text in [out.stdout(), out.stderr()] {
        assert!(
            !text.contains("TEST-SECRET"),
            "a secret was printed:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_closed_bucket_starts_an_unarchive_and_exits_75() {
    let (api_url, api) = serve(Api::new()).await;
    let (tg_url, messages) = telegram(StatusCode::OK).await;
    let d = deployment(&api_url, &tg_url, "");
    d.add_replays(&[1, 2]);

    let out = d.oiseau_async(&["run"], &ENV).await.expect_code(75);
    assert_no_secret(&out);
    out.assert_stderr_has("unarchive started");
    {
        let api = api.lock().unwrap();
        assert_eq!(api.unarchive_bodies.len(), 1);
        let body = &api.unarchive_bodies[0];
        assert_eq!(body["location_id"], "location-dc2", "the first location");
        assert!(
            body["protocols"]
                .as_array()
                .unwrap()
                .contains(&Value::from("ftp"))
        );
        assert_eq!(body["rearchive"], true);
        assert!(
            api.requests
                .contains(&(Method::POST, format!("{ARCHIVE}/unarchive")))
        );
    }
    assert_eq!(d.temp_names(), ["replay_1.osr", "replay_2.osr"]);
    let texts: Vec<String> = messages
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["text"].to_string())
        .collect();
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("unarchive started"), "{texts:?}");

    // The next run finds the request pending (409): still waiting, no harm done.
    api.lock().unwrap().unarchive_status = StatusCode::CONFLICT;
    let out = d.oiseau_async(&["run"], &ENV).await.expect_code(75);
    out.assert_stderr_has("still waiting");
    assert!(
        messages.lock().unwrap()[1].1["text"]
            .to_string()
            .contains("still waiting")
    );
    assert_eq!(d.temp_names(), ["replay_1.osr", "replay_2.osr"]);
}

#[tokio::test]
async fn a_busy_archive_waits_without_asking_again() {
    let mut state = Api::new();
    state.archives = fixture("archives_busy.json");
    let (api_url, api) = serve(state).await;
    let d = deployment(&api_url, "http://127.0.0.1:9", "");
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &ENV).await.expect_code(75);
    out.assert_stderr_has("is busy");
    assert_eq!(api.lock().unwrap().count(Method::POST), 0);
    assert_eq!(d.temp_names(), ["replay_1.osr"]);
}

#[tokio::test]
async fn an_open_bucket_receives_the_backup_over_ftp() {
    let server = FtpServer::start();
    let mut state = Api::new();
    state.bucket = Some(fixture("bucket.json").replace("FTP_PORT", &server.port.to_string()));
    let (api_url, api) = serve(state).await;
    let (tg_url, messages) = telegram(StatusCode::OK).await;
    let d = deployment(&api_url, &tg_url, "");
    std::fs::write(server.root.join(INDEX), "1\t10\n").unwrap();
    let replays = d.add_replays(&[11, 12, 13]);

    let out = d
        .oiseau_async(
            &["run"],
            &[("ONLINE_API_KEY", API_KEY), ("OISEAU_LOG", "trace")],
        )
        .await
        .expect_code(0);
    assert_no_secret(&out);
    assert_eq!(
        std::fs::read(server.root.join(INDEX)).unwrap(),
        b"1\t10\n2\t13\n"
    );
    let archive = common::names_in(&server.root)
        .into_iter()
        .find(|n| n.ends_with("_replays_2.tar.gz"))
        .expect("the archive is on the bucket");
    assert_eq!(archive_members(&server.root.join(&archive)), replays);
    assert_eq!(d.temp_names(), Vec::<String>::new());
    assert_eq!(api.lock().unwrap().count(Method::POST), 0);
    let status = d.oiseau_async(&["status"], &ENV).await.expect_code(0);
    assert!(
        status
            .stdout()
            .contains("bucket open until 2019-10-09T18:18:31+00:00"),
        "{}",
        status.stdout()
    );
    let text = messages.lock().unwrap()[0].1["text"].to_string();
    assert!(text.contains(&archive), "{text}");
    assert!(!text.contains(FTP_PASSWORD));
}

#[tokio::test]
async fn nothing_to_do_means_no_api_call() {
    let (api_url, api) = serve(Api::new()).await;
    let d = deployment(&api_url, "http://127.0.0.1:9", "");
    d.write_settings_with_tables(
        "threshold = \"1 GiB\"",
        &format!("[storage]\nbackend = \"c14\"\n[storage.c14]\napi_url = \"{api_url}\"\n"),
    );
    d.add_replays(&[1]);
    d.oiseau_async(&["run"], &ENV).await.expect_code(0);
    assert!(api.lock().unwrap().requests.is_empty());
}

#[tokio::test]
async fn a_dry_run_never_starts_an_unarchive() {
    let (api_url, api) = serve(Api::new()).await;
    let d = deployment(&api_url, "http://127.0.0.1:9", "");
    d.add_replays(&[1]);
    let out = d
        .oiseau_async(&["run", "--dry-run"], &ENV)
        .await
        .expect_code(75);
    out.assert_stderr_has("closed");
    assert_eq!(api.lock().unwrap().count(Method::POST), 0);
    let out = d.oiseau_async(&["status"], &ENV).await.expect_code(75);
    out.assert_stderr_has("closed");
    assert_eq!(api.lock().unwrap().count(Method::POST), 0);
}

/// Errors: each exits 1 with a one-line message naming the cause, and deletes nothing.
#[tokio::test]
async fn api_failures_are_named_and_delete_nothing() {
    type Setup = fn(&mut Api);
    let cases: [(&str, Setup, &[&str]); 6] = [
        (
            "key rejected",
            |a| a.user_status = StatusCode::UNAUTHORIZED,
            &["HTTP 401", "Invalid or expired token", "ONLINE_API_KEY"],
        ),
        (
            "server error",
            |a| a.archives_status = StatusCode::INTERNAL_SERVER_ERROR,
            &["HTTP 500", "Internal server error"],
        ),
        (
            "garbage",
            |a| a.archives = "<html>maintenance</html>".into(),
            &["unexpected answer"],
        ),
        (
            "no such archive",
            |a| a.archives = fixture("archives.json").replace("\"sync\"", "\"other\""),
            &["no C14 archive named \"sync\"", "website, other"],
        ),
        (
            "no ftp credentials",
            |a| a.bucket = Some(fixture("bucket_without_ftp.json")),
            &["no FTP credentials"],
        ),
        (
            "unarchive refused",
            |a| a.unarchive_status = StatusCode::INTERNAL_SERVER_ERROR,
            &["unarchive", "HTTP 500"],
        ),
    ];
    for (case, setup, expected) in cases {
        let mut state = Api::new();
        setup(&mut state);
        let (api_url, _api) = serve(state).await;
        let d = deployment(&api_url, "http://127.0.0.1:9", "");
        d.add_replays(&[1]);
        let out = d.oiseau_async(&["run"], &ENV).await;
        assert_eq!(out.code(), 1, "{case}: {}", out.stderr());
        let errors: Vec<&str> = out
            .0
            .stderr
            .split(|&b| b == b'\n')
            .filter_map(|l| std::str::from_utf8(l).ok())
            .filter(|l| l.contains("ERROR"))
            .collect();
        assert_eq!(errors.len(), 1, "{case}: {errors:?}");
        for needle in expected {
            assert!(
                errors[0].contains(needle),
                "{case}: {needle:?} not in {}",
                errors[0]
            );
        }
        assert_no_secret(&out);
        assert_eq!(d.temp_names(), ["replay_1.osr"], "{case}");
    }
}

#[tokio::test]
async fn outdated_archives_are_reported_and_deleted_only_when_asked() {
    let server = FtpServer::start();
    std::fs::write(server.root.join(INDEX), "").unwrap();
    let bucket = fixture("bucket.json").replace("FTP_PORT", &server.port.to_string());
    for delete_outdated in [false, true] {
        let mut state = Api::new();
        state.archives = fixture("archives_outdated.json");
        state.bucket = Some(bucket.clone());
        state.delete_status = StatusCode::CONFLICT; // a delete already pending is fine
        let (api_url, api) = serve(state).await;
        let (telegram_url, chat) = telegram(StatusCode::OK).await;
        let d = deployment(
            &api_url,
            &telegram_url,
            &format!("delete_outdated = {delete_outdated}"),
        );
        d.add_replays(&[1]);
        let out = d.oiseau_async(&["run"], &ENV).await.expect_code(0);
        let stderr = out.stderr();
        assert!(stderr.contains("outdated C14 archive \"Sync\""), "{stderr}");
        assert!(stderr.contains("outdated C14 archive \"sync\""), "{stderr}");
        // The chat hears of each outdated archive once, not at every run.
        d.add_replays(&[2]);
        d.oiseau_async(&["run"], &ENV).await.expect_code(0);
        let told: Vec<String> = chat
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body["text"].as_str().unwrap().to_owned())
            .filter(|text| text.starts_with("⚠️ <b>oiseau</b>: outdated C14 archive"))
            .collect();
        assert_eq!(told.len(), 2, "{told:?}");
        let api = api.lock().unwrap();
        // The newest archive, whatever the case of its name, is the one written to.
        assert!(api.requests.contains(&(
            Method::GET,
            "/api/v1/storage/c14/safe/safe-1/archive/sync-3/bucket".into()
        )));
        let deletes: Vec<&String> = api
            .requests
            .iter()
            .filter(|(m, _)| *m == Method::DELETE)
            .map(|(_, p)| p)
            .collect();
        if delete_outdated {
            // Two outdated archives, asked to be deleted at each of the two runs (the
            // stand-in keeps them listed, as C14 does while a delete is pending).
            assert_eq!(deletes.len(), 4, "{deletes:?}");
            assert!(deletes.iter().all(|p| !p.ends_with("sync-3")));
        } else {
            assert!(deletes.is_empty(), "{deletes:?}");
        }
    }
}
