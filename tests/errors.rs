//! Errors that help: a settings value the storage or the system would refuse only later is
//! refused when settings load, with exit 2 and one short line that names the setting and says
//! what it takes, before anything is packed, contacted or deleted.

mod common;

use common::{Deployment, add_sized_replays};

/// Library internals that must never reach an operator.
const INTERNALS: [&str; 5] = ["Unexpected (", "context: {", "headers", "=>", "os error"];

#[test]
fn settings_refused_later_are_refused_when_they_load() {
    let s3 = |table: &str| {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"replays\"\n\
             endpoint = \"http://127.0.0.1:9\"\n{table}\n"
        )
    };
    for (tables, top, names) in [
        (
            s3("archive_class = \"COLD\""),
            "",
            "storage.s3.archive_class",
        ),
        (s3("restore_tier = \"Fast\""), "", "storage.s3.restore_tier"),
        (
            s3("").replace("http://127.0.0.1:9", "minio.example.org:9000"),
            "",
            "storage.s3.endpoint",
        ),
        (
            s3("").replace("http://127.0.0.1:9", "ftp://h:9"),
            "",
            "storage.s3.endpoint",
        ),
        (
            s3("").replace("replays", "My_Bucket"),
            "",
            "storage.s3.bucket",
        ),
        (
            "[serve]\nlisten = \"127.0.0.1\"\n".to_owned(),
            "",
            "serve.listen",
        ),
        (String::new(), "threshold = \"20000000000 GB\"", "too large"),
        (String::new(), "bandwidth = \"-5 MiB/s\"", "negative"),
    ] {
        let d = Deployment::new("");
        d.write_settings_with_tables(top, &tables);
        add_sized_replays(&d.temp, 1, 3, 3000);
        let env = common::s3::env();
        for command in [&["config"][..], &["run"]] {
            let out = d.oiseau(command, &env).expect_code(2);
            let error = out.stderr();
            let line = error.trim();
            assert!(
                line.lines().count() == 1 && line.len() <= 300 && line.contains(names),
                "{command:?} {names}: {error}"
            );
            for internal in INTERNALS {
                assert!(!line.contains(internal), "{names}: {line}");
            }
        }
        assert_eq!(
            d.temp_names().len(),
            3,
            "{names}: nothing packed or deleted"
        );
        assert!(!d.work.join("spool").exists(), "{names}: nothing packed");
    }
}

/// One case of a table: a deployment's storage tables and environment, a command, and what
/// its error must say.
struct Case<'a> {
    what: &'a str,
    tables: String,
    env: &'a [(&'a str, &'a str)],
    command: &'a [&'a str],
    code: i32,
    said: &'a [&'a str],
    /// Advice the error must not give.
    never: &'a [&'a str],
}

/// The line an operator reads: the last line of stderr, where the error is logged, without
/// the log's time and level. Asserts it is short, names `names`, and that no library
/// internals are anywhere on stderr.
fn error_line(out: &common::Finished, names: &str) -> String {
    let stderr = out.stderr();
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    let line = [" ERROR ", " WARN "]
        .iter()
        .find_map(|level| last.split_once(level).map(|(_, message)| message))
        .unwrap_or(last)
        .to_owned();
    assert!(
        line.len() <= 300 && line.contains(names),
        "expected one line of at most 300 characters naming {names:?}, got {} characters: \
         {line}",
        line.len()
    );
    for internal in INTERNALS {
        assert!(!stderr.contains(internal), "{internal:?} in: {stderr}");
    }
    line
}

/// A refusal says what was refused and what to do, once, without the library's account of it,
/// and is never tried again: trying again cannot help (classes 1 and 5).
#[test]
fn refusals_are_said_in_a_line_and_never_retried() {
    let seaweed = common::seaweed::SeaweedServer::start();
    seaweed.create_bucket("replays");
    let read_only = common::ftp::PyFtpServer::start_read_only();
    std::fs::write(read_only.root().join(common::INDEX), b"").unwrap();
    let a_folder = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let wrong_secret = [
        common::s3::env()[0],
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
    ];
    let ftp_password = [("FTP_PASSWORD", common::ftp::FTP_PASSWORD)];
    let cases = [
        Case {
            what: "a local storage under a file",
            tables: String::new(),
            env: &[],
            command: &["run"],
            code: 2,
            said: &["storage.local.path", "is a file"],
            never: &[],
        },
        Case {
            what: "rclone's binary a folder",
            tables: format!(
                "[storage]\nbackend = \"rclone\"\n[storage.rclone]\nremote = \"{}\"\n\
                 binary = \"{}\"\n",
                remote.path().display(),
                a_folder.path().display()
            ),
            env: &[],
            command: &["run"],
            code: 1,
            said: &["storage.rclone.binary", "is a folder"],
            never: &[],
        },
        Case {
            what: "an S3 secret that is wrong",
            tables: seaweed.settings("replays", "osu"),
            env: &wrong_secret,
            command: &["run"],
            code: 1,
            said: &["AWS_SECRET_ACCESS_KEY", "s3://replays/osu/"],
            never: &[],
        },
        Case {
            what: "a read-only FTP user",
            tables: format!(
                "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"{}\"\ntimeout = \"5s\"\n",
                read_only.url("")
            ),
            env: &ftp_password,
            command: &["run"],
            code: 1,
            said: &["refused to write", "let user oiseau write"],
            never: &[],
        },
    ];
    for Case {
        what,
        tables,
        env,
        command,
        code,
        said,
        ..
    } in cases
    {
        let d = Deployment::new("");
        std::fs::write(d.root.path().join("afile"), b"").unwrap();
        d.write_settings_with_tables("", &tables);
        if tables.is_empty() {
            let text = std::fs::read_to_string(&d.config).unwrap();
            std::fs::write(&d.config, text.replace("\"backup\"", "\"afile/sub\"")).unwrap();
        }
        let replays = add_sized_replays(&d.temp, 1, 3, 3000);
        let out = d.oiseau(command, env).expect_code(code);
        let line = error_line(&out, said[0]);
        for words in said {
            assert!(line.contains(words), "{what}: {words:?} not in {line}");
        }
        assert!(
            !out.stderr().contains("trying"),
            "{what}: retried: {}",
            out.stderr()
        );
        assert_eq!(
            d.temp_names().len(),
            replays.len(),
            "{what}: nothing deleted"
        );
    }
}

/// The advice fits the real cause, and a local problem is never blamed on the storage
/// (class 2).
#[tokio::test(flavor = "multi_thread")]
async fn the_advice_fits_the_cause() {
    let moto = common::s3::MotoServer::start();
    let not_s3 = common::http::Recorder::start(
        (0..50)
            .map(|_| (axum::http::StatusCode::OK, Vec::new(), "hello".to_owned()))
            .collect(),
    )
    .await;
    let s3_env = common::s3::env();
    let restored = tempfile::tempdir().unwrap();
    let restored = restored.path().to_str().unwrap();
    let s3_at = |endpoint: &str| {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"replays\"\n\
             endpoint = \"{endpoint}\"\ntimeout = \"5s\"\n"
        )
    };
    let cases = [
        Case {
            what: "a bucket that does not exist",
            tables: s3_at(&moto.endpoint()),
            env: &s3_env,
            command: &["verify"],
            code: 1,
            said: &["bucket replays does not exist"],
            never: &["oiseau init"],
        },
        Case {
            what: "a bucket that does not exist",
            tables: s3_at(&moto.endpoint()),
            env: &s3_env,
            command: &["restore", "1", "--to", restored],
            code: 1,
            said: &["bucket replays does not exist"],
            never: &["oiseau init"],
        },
        Case {
            what: "an endpoint that is no S3 server",
            tables: s3_at(&not_s3.url),
            env: &s3_env,
            command: &["verify"],
            code: 1,
            said: &["cannot be listed"],
            never: &["line 1"],
        },
        Case {
            what: "a storage that lost its index",
            tables: String::new(),
            env: &[],
            command: &["verify"],
            code: 1,
            said: &["run `oiseau index rebuild --write`"],
            never: &["oiseau init"],
        },
    ];
    for case in cases {
        let d = Deployment::new("");
        if case.tables.is_empty() {
            d.oiseau_async(&["init"], &[]).await.expect_code(0);
            add_sized_replays(&d.temp, 1, 3, 3000);
            d.oiseau_async(&["run"], &[]).await.expect_code(0);
            std::fs::remove_file(d.storage.join(common::INDEX)).unwrap();
        } else {
            d.write_settings_with_tables("", &case.tables);
        }
        let out = d
            .oiseau_async(case.command, case.env)
            .await
            .expect_code(case.code);
        let line = error_line(&out, case.said[0]);
        for advice in case.never {
            assert!(!line.contains(advice), "{}: {line}", case.what);
        }
    }

    // Local causes, said as such.
    let d = Deployment::new("");
    d.oiseau_async(&["init"], &[]).await.expect_code(0);
    add_sized_replays(&d.temp, 1, 3, 3000);
    d.oiseau_async(&["run"], &[]).await.expect_code(0);
    let afile = d.root.path().join("afile");
    std::fs::write(&afile, b"").unwrap();
    let out = d
        .oiseau_async(&["restore", "1", "--to", afile.to_str().unwrap()], &[])
        .await
        .expect_code(1);
    let line = error_line(&out, "is a file, not a folder");
    assert!(!line.contains("File exists"), "{line}");

    // A catalog that cannot be kept in work_dir is no damaged manifest.
    std::fs::remove_dir_all(d.work.join("catalog")).ok();
    std::fs::write(d.work.join("catalog"), b"not a folder").unwrap();
    let out = d.oiseau_async(&["verify"], &[]).await.expect_code(0);
    assert!(
        !out.stdout().contains("damaged") && !out.stderr().contains("damaged"),
        "{}{}",
        out.stdout(),
        out.stderr()
    );
    out.assert_stderr_has("cannot keep the catalog");
    let out = d
        .oiseau_async(&["restore", "2", "--to", restored], &[])
        .await
        .expect_code(0);
    out.assert_stdout_has("(hash checked)");

    // Waiting for another host's lock: try later, not "the next run".
    std::fs::write(
        d.storage.join("oiseau.lock"),
        serde_json::json!({
            "host": "another-host", "pid": 1, "token": "7", "taken_at": 1, "expires_at": 2,
        })
        .to_string(),
    )
    .unwrap();
    let out = d
        .oiseau_async(&["index", "rebuild", "--write"], &[])
        .await
        .expect_code(75);
    let line = error_line(&out, "another-host");
    assert!(!line.contains("next run"), "{line}");

    // A settings file that is not UTF-8.
    std::fs::write(&d.config, b"threshold = \"1 KiB\"\n# caf\xe9\n").unwrap();
    let out = d.oiseau_async(&["config"], &[]).await.expect_code(2);
    let line = error_line(&out, "not UTF-8");
    assert!(!line.contains("existing file"), "{line}");
}

/// A command asked for JSON says a refused setting in JSON on stdout too, with the exit code
/// of a settings error (class 4).
#[test]
fn json_readers_are_told_in_json() {
    for (top, names) in [
        ("threshold = \"lots\"", "threshold"),
        ("bandwidth = \"-5 MiB/s\"", "negative"),
    ] {
        let d = Deployment::new(top);
        for command in [&["run", "--json"][..], &["status", "--json"]] {
            let out = d.oiseau(command, &[]).expect_code(2);
            let json: serde_json::Value = serde_json::from_str(out.stdout().trim())
                .unwrap_or_else(|e| panic!("{command:?}: {e}: {:?}", out.stdout()));
            assert_eq!(json["exit_code"], 2, "{command:?}: {json}");
            let error = json["error"].as_str().unwrap();
            assert!(error.contains(names), "{command:?}: {json}");
            if command[0] == "run" {
                assert_eq!(json["outcome"], "failed", "{json}");
            }
        }
    }
    // A storage's settings refused when the run opens it: the same.
    let d = Deployment::new("");
    d.write_settings_with_tables(
        "",
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"replays\"\n\
         endpoint = \"http://127.0.0.1:9\"\n",
    );
    let out = d.oiseau(&["run", "--json"], &[]).expect_code(2);
    let json: serde_json::Value = serde_json::from_str(out.stdout().trim()).unwrap();
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("AWS_ACCESS_KEY_ID"),
        "{json}"
    );
}

/// What a number says is what happened: a sample larger than the archive reports the replays
/// read, and a list of a thousand problems is a line that names ten and counts the rest
/// (class 7).
#[test]
fn numbers_say_what_happened() {
    let d = Deployment::new("");
    d.oiseau(&["init"], &[]).expect_code(0);
    add_sized_replays(&d.temp, 1, 3, 3000);
    d.oiseau(&["run"], &[]).expect_code(0);
    let out = d
        .oiseau(&["verify", "--deep", "--sample", "99999999999"], &[])
        .expect_code(0);
    out.assert_stdout_has(
        "3 replays read from their ranges and hashed, at most 99999999999 per archive",
    );

    let mut index = std::fs::read(d.storage.join(common::INDEX)).unwrap();
    for id in 2..=1001 {
        index.extend_from_slice(format!("{id}\t{}\n", id * 10).as_bytes());
    }
    std::fs::write(d.storage.join(common::INDEX), index).unwrap();
    let out = d.oiseau(&["verify"], &[]).expect_code(1);
    let line = error_line(&out, "1000 of 1001 archives failed verification");
    assert!(line.contains(" and 990 more"), "{line}");
}
