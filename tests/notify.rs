//! Telegram notifications against a local stand-in for the Bot API, and secrets in output.

mod common;

use axum::http::StatusCode;
use common::telegram::telegram;
use common::{Deployment, INDEX};

const TOKEN: &str = "123456:TEST-SECRET-TOKEN-do-not-print";

fn deployment_notifying(api_url: &str) -> Deployment {
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        &format!("[telegram]\nchat_id = \"-10042\"\napi_url = \"{api_url}\"\n"),
    );
    d
}

#[tokio::test]
async fn success_and_failure_reach_the_chat_as_escaped_html() {
    let (url, received) = telegram(StatusCode::OK).await;
    let d = deployment_notifying(&url);
    let env = [("TELEGRAM_TOKEN", TOKEN)];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    d.add_replays(&[1, 2]);
    d.oiseau_async(&["run"], &env).await.expect_code(0);
    {
        let messages = received.lock().unwrap();
        assert_eq!(messages.len(), 1);
        let (bot, body) = &messages[0];
        assert_eq!(bot, &format!("bot{TOKEN}"));
        assert_eq!(body["chat_id"], "-10042");
        assert_eq!(body["parse_mode"], "HTML");
        let text = body["text"].as_str().unwrap();
        let archive = &d.archives()[0];
        assert!(
            text.contains(&format!("archived <code>{archive}</code>: 2 replays")),
            "{text}"
        );
    }

    std::fs::write(d.storage.join(INDEX), "1\t2\nbroken line\n").unwrap();
    d.add_replays(&[3]);
    d.oiseau_async(&["run"], &env).await.expect_code(1);
    let messages = received.lock().unwrap();
    assert_eq!(messages.len(), 2);
    let text = messages[1].1["text"].as_str().unwrap();
    assert!(
        text.contains("backup failed, nothing was deleted"),
        "{text}"
    );
    assert!(text.contains("c14_index.txt line 2"), "{text}");
    assert!(
        text.contains("&lt;archive_id&gt;"),
        "the error is HTML-escaped: {text}"
    );
}

#[tokio::test]
async fn a_failed_notification_never_fails_the_run() {
    let (url, received) = telegram(StatusCode::INTERNAL_SERVER_ERROR).await;
    let d = deployment_notifying(&url);
    let env = [("TELEGRAM_TOKEN", TOKEN)];
    d.oiseau_async(&["init"], &env).await.expect_code(0);
    d.add_replays(&[1]);
    let out = d.oiseau_async(&["run"], &env).await.expect_code(0);
    assert_eq!(received.lock().unwrap().len(), 1);
    out.assert_stderr_has("Telegram refused the notification");
    assert!(!out.stderr().contains(TOKEN));
    assert_eq!(d.temp_names(), Vec::<String>::new());
}

#[tokio::test]
async fn the_token_never_appears_in_any_output() {
    // Nothing listens on this port: the HTTP client's error would carry the URL, token and all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let d = deployment_notifying(&url);
    let env = [("TELEGRAM_TOKEN", TOKEN)];
    let mut outputs = Vec::new();
    outputs.push(d.oiseau_async(&["init"], &env).await.expect_code(0));
    d.add_replays(&[1, 2]);
    outputs.push(
        d.oiseau_async(&["run", "--dry-run"], &env)
            .await
            .expect_code(0),
    );
    outputs.push(d.oiseau_async(&["run"], &env).await.expect_code(0));
    outputs.push(d.oiseau_async(&["config"], &env).await.expect_code(0));
    outputs.push(d.oiseau_async(&["status"], &env).await.expect_code(0));
    std::fs::write(d.storage.join(INDEX), "garbage\n").unwrap();
    d.add_replays(&[3]);
    outputs.push(d.oiseau_async(&["run"], &env).await.expect_code(1));
    outputs.push(
        d.oiseau_async(
            &["--log-format", "json", "run"],
            &[("TELEGRAM_TOKEN", TOKEN), ("OISEAU_LOG", "trace")],
        )
        .await
        .expect_code(1),
    );
    assert!(
        outputs[2]
            .stderr()
            .contains("cannot send the Telegram notification")
    );
    assert!(
        outputs[3].stdout().contains("token = \"***\""),
        "{}",
        outputs[3].stdout()
    );
    for out in outputs {
        assert!(
            !out.stdout().contains("TEST-SECRET"),
            "stdout: {}",
            out.stdout()
        );
        assert!(
            !out.stderr().contains("TEST-SECRET"),
            "stderr: {}",
            out.stderr()
        );
    }
}
