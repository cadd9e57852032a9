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
