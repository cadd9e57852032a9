//! The operator kit: every channel against a real local HTTP server, the metrics file read by
//! Prometheus's own parser, `run --json`, the bandwidth cap on a real FTP upload.

mod common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::ftp::{FTP_PASSWORD, FtpServer, test_python};
use common::http::{Recorder, silent_server};
use common::{Deployment, INDEX};
use serde_json::Value;

const DISCORD_TOKEN: &str = "SECRET-DISCORD-webhook-token";
const HEALTHCHECK_UUID: &str = "SECRET-hc-uuid-0042";
const WEBHOOK_SECRET: &str = "SECRET-webhook-key";

/// Breaks the storage's index so that the next run fails on line 2.
fn break_index(d: &Deployment) {
    std::fs::write(d.storage.join(INDEX), "1\t2\nbroken line\n").unwrap();
}

fn assert_no_secret(outputs: &[&common::Finished]) {
    for out in outputs {
        for text in [out.stdout(), out.stderr()] {
            for secret in [DISCORD_TOKEN, HEALTHCHECK_UUID, WEBHOOK_SECRET] {
                assert!(!text.contains(secret), "{secret} was printed:\n{text}");
            }
        }
    }
}

#[tokio::test]
async fn discord_waits_out_a_429_then_hears_success_and_failure_in_their_colours() {
    let discord = Recorder::start(vec![(
        StatusCode::TOO_MANY_REQUESTS,
        vec![("content-type", "application/json".into())],
        r#"{"message": "You are being rate limited.", "retry_after": 0.4, "global": false}"#.into(),
    )])
    .await;
    let url = format!("{}/api/webhooks/42/{DISCORD_TOKEN}", discord.url);
    let env = [
        ("DISCORD_WEBHOOK_URL", url.as_str()),
        ("OISEAU_LOG", "debug"),
    ];
    let d = Deployment::new("");
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    d.add_replays(&[1, 2]);
    let done = d.oiseau_async(&["run"], &env).await.expect_code(0);

    let requests = discord.requests();
    assert_eq!(
        requests.len(),
        2,
        "the 429 is retried once: {:?}",
        discord.calls()
    );
    assert_eq!(
        requests[1].path,
        format!("/api/webhooks/42/{DISCORD_TOKEN}")
    );
    let embed = &requests[1].json()["embeds"][0];
    assert_eq!(embed["color"], 0x2e_cc71, "{embed}");
    assert_eq!(
        embed["title"],
        format!("✅ Archived {}", d.archives()[0]),
        "{embed}"
    );
    let fields: Vec<(&str, &str)> = embed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["value"].as_str().unwrap()))
        .collect();
    assert!(fields.contains(&("Replays", "2")), "{fields:?}");
    assert!(fields.contains(&("Archive", "1")), "{fields:?}");
    assert_eq!(
        requests[1].json()["allowed_mentions"]["parse"],
        Value::Array(vec![])
    );

    break_index(&d);
    d.add_replays(&[3]);
    let failed = d.oiseau_async(&["run"], &env).await.expect_code(1);
    let requests = discord.requests();
    assert_eq!(requests.len(), 3);
    let embed = &requests[2].json()["embeds"][0];
    assert_eq!(embed["color"], 0xe7_4c3c, "{embed}");
    assert!(
        embed["description"]
            .as_str()
            .unwrap()
            .contains("c14_index.txt line 2"),
        "{embed}"
    );
    assert_eq!(d.temp_names(), vec!["replay_3.osr"], "nothing deleted");
    assert_no_secret(&[&done, &failed]);
}

#[tokio::test]
async fn the_webhook_gets_the_documented_body_for_the_events_it_asks_for() {
    let hook = Recorder::start(Vec::new()).await;
    let url = format!("{}/hooks/{WEBHOOK_SECRET}", hook.url);
    let env = [("OISEAU_WEBHOOK_URL", url.as_str())];
    let d = Deployment::new("");
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    let quiet = d.oiseau_async(&["run"], &env).await.expect_code(0);
    assert_eq!(
        hook.calls(),
        Vec::<String>::new(),
        "quiet runs are not sent by default"
    );

    let replays = d.add_replays(&[1, 2]);
    let done = d.oiseau_async(&["run"], &env).await.expect_code(0);
    let requests = hook.requests();
    assert_eq!(hook.calls(), vec![format!("POST /hooks/{WEBHOOK_SECRET}")]);
    let body = requests[0].json();
    let archive = &d.archives()[0];
    let documented = [
        "event",
        "host",
        "outcome",
        "waiting_for",
        "exit_code",
        "started_at",
        "duration_seconds",
        "archive_id",
        "archive_name",
        "replays",
        "replay_bytes",
        "archive_bytes",
        "kept",
        "backlog_bytes",
        "threshold",
        "error",
        "detail",
        "waiting_since",
    ];
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = documented.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "every documented key, always");
    assert_eq!(body["event"], "done");
    assert_eq!(body["outcome"], "done");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(body["archive_id"], 1);
    assert_eq!(body["archive_name"], archive.as_str());
    assert_eq!(body["replays"], 2);
    let replay_bytes: usize = replays.values().map(Vec::len).sum();
    assert_eq!(body["replay_bytes"], replay_bytes);
    let archive_bytes = std::fs::metadata(d.storage.join(archive)).unwrap().len();
    assert_eq!(body["archive_bytes"], archive_bytes);
    assert_eq!(body["error"], Value::Null);

    break_index(&d);
    d.add_replays(&[3]);
    let failed = d.oiseau_async(&["run"], &env).await.expect_code(1);
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    let body = requests[1].json();
    assert_eq!(body["event"], "failed");
    assert_eq!(body["exit_code"], 1);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("c14_index.txt line 2"),
        "{body}"
    );

    // Every event, when asked.
    d.write_settings_with_tables("", "[webhook]\nevents = [\"started\", \"nothing_to_do\"]\n");
    std::fs::write(d.storage.join(INDEX), "1\t2\n").unwrap();
    std::fs::remove_file(d.temp.join("replay_3.osr")).unwrap();
    d.oiseau_async(&["run"], &env).await.expect_code(0);
    let events: Vec<Value> = hook.requests()[2..]
        .iter()
        .map(|r| r.json()["event"].clone())
        .collect();
    assert_eq!(events, ["started", "nothing_to_do"]);
    assert_no_secret(&[&quiet, &done, &failed]);
}

#[tokio::test]
async fn the_healthcheck_hears_each_start_success_and_failure() {
    let hc = Recorder::start(Vec::new()).await;
    let url = format!("{}/ping/{HEALTHCHECK_UUID}/", hc.url);
    let env = [("OISEAU_HEALTHCHECK_URL", url.as_str())];
    let ping = format!("/ping/{HEALTHCHECK_UUID}");
    let d = Deployment::new("");
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    let quiet = d.oiseau_async(&["run"], &env).await.expect_code(0);
    d.add_replays(&[1]);
    let done = d.oiseau_async(&["run"], &env).await.expect_code(0);
    break_index(&d);
    d.add_replays(&[2]);
    let failed = d.oiseau_async(&["run"], &env).await.expect_code(1);
    d.write_settings_with_tables("", "[healthcheck]\nexit_codes = true\n");
    d.oiseau_async(&["run"], &env).await.expect_code(1);
    // A dry run changes nothing anywhere: no ping either.
    d.oiseau_async(&["run", "--dry-run"], &env).await;

    assert_eq!(
        hc.calls(),
        [
            format!("GET {ping}/start"),
            format!("GET {ping}"),
            format!("GET {ping}/start"),
            format!("GET {ping}"),
            format!("GET {ping}/start"),
            format!("POST {ping}/fail"),
            format!("GET {ping}/start"),
            format!("POST {ping}/1"),
        ]
    );
    let requests = hc.requests();
    assert_eq!(requests[5].method, Method::POST);
    assert!(
        requests[5].text().contains("c14_index.txt line 2"),
        "{}",
        requests[5].text()
    );
    assert_no_secret(&[&quiet, &done, &failed]);
}

#[tokio::test]
async fn a_hung_endpoint_neither_fails_nor_holds_up_the_run() {
    let hung = silent_server().await;
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!(
            "[telegram]\nchat_id = \"1\"\napi_url = \"{hung}\"\ntimeout = \"1s\"\n\
             [discord]\ntimeout = \"1s\"\n[webhook]\ntimeout = \"1s\"\n\
             [healthcheck]\ntimeout = \"1s\"\n"
        ),
    );
    let discord = format!("{hung}/api/webhooks/1/{DISCORD_TOKEN}");
    let webhook = format!("{hung}/{WEBHOOK_SECRET}");
    let healthcheck = format!("{hung}/{HEALTHCHECK_UUID}");
    let env = [
        ("TELEGRAM_TOKEN", "1:SECRET-webhook-key"),
        ("DISCORD_WEBHOOK_URL", discord.as_str()),
        ("OISEAU_WEBHOOK_URL", webhook.as_str()),
        ("OISEAU_HEALTHCHECK_URL", healthcheck.as_str()),
    ];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    d.add_replays(&[1, 2]);
    // Bounded so that a run held up forever fails the test instead of hanging it.
    let run = tokio::time::timeout(Duration::from_secs(120), d.oiseau_async(&["run"], &env))
        .await
        .expect("the run is not held up by a hung endpoint")
        .expect_code(0);
    assert_eq!(d.temp_names(), Vec::<String>::new());
    assert_eq!(d.archives().len(), 1);
    for channel in ["Telegram", "Discord", "webhook", "healthcheck"] {
        assert!(
            run.stderr().contains(&format!(
                "cannot send the {channel} notification: no answer within 1s"
            )),
            "{channel}: {}",
            run.stderr()
        );
    }
    assert_no_secret(&[&run]);
}

/// Parses the metrics file with Prometheus's Python client, as the OpenMetrics text it is and
/// as the classic text format node_exporter's collector reads; returns `name{labels}` -> value.
fn parsed_metrics(path: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
text = open(sys.argv[1]).read()
values = {}
for family in openmetrics(text):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        values[sample.name + ("{" + labels + "}" if labels else "")] = sample.value
classic_names = {s.name for f in classic(text) for s in f.samples}
assert classic_names == {k.split("{")[0] for k in values}, (classic_names, values)
print(json.dumps(values))
"#;
    let out = std::process::Command::new(test_python())
        .args(["-c", SCRIPT])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the metrics file does not parse (run the suite with scripts/test for the Python tools): {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_metrics_file_parses_and_follows_done_quiet_and_failed_runs() {
    let d = Deployment::new("threshold = \"1 MiB\"\nmetrics_file = \"node-exporter/oiseau.prom\"");
    let metrics_dir = d.root.path().join("node-exporter");
    std::fs::create_dir(&metrics_dir).unwrap();
    let prom = metrics_dir.join("oiseau.prom");
    d.oiseau(&["init"], &[]).expect_code(0);
    let replays = d.add_replays(&[1, 2, 3]);
    d.oiseau(&["run", "--force"], &[]).expect_code(0);
    let done = parsed_metrics(&prom);
    assert_eq!(done["oiseau_last_run_outcome{outcome=\"done\"}"], 1.0);
    assert_eq!(done["oiseau_last_run_outcome{outcome=\"failed\"}"], 0.0);
    assert_eq!(done["oiseau_last_run_exit_code"], 0.0);
    assert_eq!(done["oiseau_last_run_archives"], 1.0);
    assert_eq!(done["oiseau_last_archive_id"], 1.0);
    assert_eq!(done["oiseau_last_archive_replays"], 3.0);
    let replay_bytes: usize = replays.values().map(Vec::len).sum();
    assert_eq!(
        done["oiseau_last_archive_replay_bytes"],
        f64::from(u32::try_from(replay_bytes).unwrap())
    );
    assert_eq!(done["oiseau_backlog_replays"], 0.0);
    assert_eq!(done["oiseau_storage_pending"], 0.0);
    assert!(
        done["oiseau_last_success_timestamp_seconds"]
            >= done["oiseau_last_run_start_timestamp_seconds"]
    );

    let waiting = d.add_replays(&[4]);
    common::set_age(&d.temp.join("replay_4.osr"), Duration::from_secs(3600));
    d.oiseau(&["run"], &[]).expect_code(0);
    let quiet = parsed_metrics(&prom);
    assert_eq!(
        quiet["oiseau_last_run_outcome{outcome=\"nothing_to_do\"}"],
        1.0
    );
    assert_eq!(quiet["oiseau_last_run_archives"], 0.0);
    assert_eq!(
        quiet["oiseau_last_archive_id"], 1.0,
        "the last archive is remembered"
    );
    assert_eq!(quiet["oiseau_backlog_replays"], 1.0);
    assert_eq!(
        quiet["oiseau_backlog_bytes"],
        f64::from(u32::try_from(waiting["replay_4.osr"].len()).unwrap())
    );
    assert!(quiet["oiseau_backlog_oldest_age_seconds"] >= 3600.0);

    break_index(&d);
    d.oiseau(&["run", "--force"], &[]).expect_code(1);
    let failed = parsed_metrics(&prom);
    assert_eq!(failed["oiseau_last_run_outcome{outcome=\"failed\"}"], 1.0);
    assert_eq!(failed["oiseau_last_run_outcome{outcome=\"done\"}"], 0.0);
    assert_eq!(failed["oiseau_last_run_exit_code"], 1.0);
    assert_eq!(
        failed["oiseau_last_success_timestamp_seconds"],
        quiet["oiseau_last_success_timestamp_seconds"],
        "a failure is not a success"
    );
    assert_eq!(
        common::names_in(&metrics_dir),
        ["oiseau.prom"],
        "the file is replaced whole, no temporary file left for the collector"
    );
}

#[test]
fn run_json_prints_one_object_whatever_the_outcome() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    d.add_replays(&[1, 2]);
    let plan = d
        .oiseau(&["run", "--dry-run", "--json"], &[])
        .expect_code(0);
    let plan: Value = serde_json::from_str(&plan.stdout()).unwrap();
    assert_eq!(plan["plan"]["replays"], 2);
    let done = d.oiseau(&["run", "--json"], &[]).expect_code(0);
    let done: Value = serde_json::from_str(&done.stdout()).unwrap();
    assert_eq!(done["outcome"], "done");
    assert_eq!(done["archive_name"], d.archives()[0].as_str());
    let quiet = d.oiseau(&["run", "--json"], &[]).expect_code(0);
    let quiet: Value = serde_json::from_str(&quiet.stdout()).unwrap();
    assert_eq!(quiet["outcome"], "nothing_to_do");
    break_index(&d);
    d.add_replays(&[3]);
    let failed = d.oiseau(&["run", "--json"], &[]).expect_code(1);
    assert!(
        failed.stderr().contains("c14_index.txt line 2"),
        "the log stays on stderr"
    );
    let failed: Value = serde_json::from_str(&failed.stdout()).unwrap();
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["exit_code"], 1);
}

#[tokio::test]
async fn the_bandwidth_cap_holds_an_ftp_upload_back() {
    let server = FtpServer::start();
    let d = Deployment::new("bandwidth = \"4 MiB/s\"\ncompression = 0");
    d.write_settings_with_tables(
        "bandwidth = \"4 MiB/s\"\ncompression = 0",
        &format!(
            "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"{}\"\n",
            server.url("")
        ),
    );
    let env = [("FTP_PASSWORD", FTP_PASSWORD)];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    common::add_sized_replays(&d.temp, 1, 10, 1 << 20);
    let started = Instant::now();
    d.oiseau_async(&["run"], &env).await.expect_code(0);
    // A lower bound only: 10 MiB at 4 MiB/s cannot take less than 2.5 s.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "10 MiB went up in {:?}",
        started.elapsed()
    );
    assert_eq!(d.temp_names(), Vec::<String>::new());
}
