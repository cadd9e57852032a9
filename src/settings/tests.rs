//! The settings as an operator writes them: units, defaults, the environment, paths.

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_text(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, text).unwrap();
    Settings::load(&path, true, env)
}

#[test]
fn sizes_take_the_units_operators_write() {
    assert_eq!(ByteSize::parse("500 MiB"), Ok(ByteSize(500 << 20)));
    assert_eq!(ByteSize::parse("500MB"), Ok(ByteSize(500_000_000)));
    assert_eq!(ByteSize::parse("1.5 GiB"), Ok(ByteSize(3 << 29)));
    assert_eq!(ByteSize::parse("1234"), Ok(ByteSize(1234)));
    assert_eq!(ByteSize::parse("12 B"), Ok(ByteSize(12)));
    assert_eq!(ByteSize::parse(".5 KiB"), Ok(ByteSize(512)));
    assert_eq!(
        ByteSize::parse("0.0001 KB"),
        Ok(ByteSize(0)),
        "rounded to the byte"
    );
    assert!(ByteSize::parse(".").is_err());
    assert_eq!(ByteSize(1536).to_string(), "1.5 KiB");
    assert_eq!(ByteSize((500 << 20) - 1).to_string(), "500.0 MiB");
    assert_eq!(ByteSize(1023).to_string(), "1023 B");
    assert!(
        ByteSize::parse("5 parsecs")
            .unwrap_err()
            .contains("unknown unit")
    );
    assert!(ByteSize::parse("MiB").is_err());
}

#[test]
fn compression_is_auto_or_a_level() {
    assert_eq!(
        load_text("", &no_env).unwrap().compression,
        Compression(Level::Auto)
    );
    let s = load_text("compression = 6", &no_env).unwrap();
    assert_eq!(s.compression, Compression(Level::Fixed(6)));
    for bad in ["compression = 10", "compression = \"fast\""] {
        let err = load_text(bad, &no_env).unwrap_err();
        assert!(format!("{err:#}").contains("compression is"), "{err:#}");
    }
}

#[test]
fn a_bad_size_says_what_is_expected() {
    for (text, expected) in [
        ("threshold = -1", "negative"),
        ("threshold = 1.5", "not a whole number of bytes"),
        ("threshold = true", "whole bytes (2048) or a string"),
        ("threshold = \"99999999999999 GiB\"", "is too large"),
        ("threshold = \"20000000000 GB\"", "is too large"),
        ("bandwidth = \"-5 MiB/s\"", "is negative"),
        ("[serve]\nlisten = \"127.0.0.1\"", "serve.listen"),
        (
            "[storage]\nbackend = \"s3\"\n[storage.s3]\narchive_class = \"COLD\"",
            "not an S3 storage class",
        ),
        (
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"minio.example.org:9000\"",
            "must start with https://",
        ),
        (
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nendpoint = \"ftp://h:9\"",
            "must start with https://",
        ),
        (
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"My_Bucket\"",
            "not an S3 bucket name",
        ),
    ] {
        let err = load_text(text, &no_env).unwrap_err();
        assert!(format!("{err:#}").contains(expected), "{text}: {err:#}");
    }
}

#[test]
fn empty_paths_are_refused() {
    for text in [
        "temp_dir = \"\"",
        "work_dir = \"\"",
        "[storage.local]\npath = \"\"",
    ] {
        let err = load_text(text, &no_env).unwrap_err();
        assert!(format!("{err:#}").contains("empty"), "{text}: {err:#}");
    }
}

#[test]
fn threshold_accepts_an_integer_or_a_string() {
    let s = load_text("threshold = 2048", &no_env).unwrap();
    assert_eq!(s.threshold, ByteSize(2048));
    let s = load_text("threshold = \"2 KiB\"", &no_env).unwrap();
    assert_eq!(s.threshold, ByteSize(2048));
}

#[test]
fn an_unknown_key_is_an_error_that_names_it() {
    let err = load_text("[storage.local]\npth = \"x\"\n", &no_env).unwrap_err();
    assert!(format!("{err:#}").contains("pth"), "{err:#}");
    let err = load_text("tresh = 5\n", &no_env).unwrap_err();
    assert!(format!("{err:#}").contains("tresh"), "{err:#}");
}

#[test]
fn relative_paths_are_taken_from_the_settings_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, "temp_dir = \"incoming\"\ntemp_dir_is_not = 1\n").unwrap();
    assert!(Settings::load(&path, true, &no_env).is_err());
    std::fs::write(
        &path,
        "temp_dir = \"incoming\"\nwork_dir = \"/var/lib/oiseau\"\n",
    )
    .unwrap();
    let s = Settings::load(&path, true, &no_env).unwrap();
    assert_eq!(s.temp_dir, dir.path().join("incoming"));
    assert_eq!(s.work_dir, PathBuf::from("/var/lib/oiseau"));
    let local = backends::local::LocalConfig::from_storage(&s.storage).unwrap();
    assert_eq!(local.path, dir.path().join("backup"));
}

#[test]
fn the_environment_overrides_the_file() {
    let env = |name: &str| match name {
        "TELEGRAM_TOKEN" => Some("from-env".to_owned()),
        "TELEGRAM_CHAT_ID" => Some(String::new()),
        _ => None,
    };
    let s = load_text(
        "[telegram]\ntoken = \"from-file\"\nchat_id = \"42\"\n",
        &env,
    )
    .unwrap();
    assert_eq!(s.telegram.token.expose(), "from-env");
    assert_eq!(
        s.telegram.chat_id, "42",
        "an empty variable counts as unset"
    );
}

#[test]
fn each_backend_reads_its_own_variables_from_the_same_overlay() {
    let env = |name: &str| match name {
        "FTP_PASSWORD" => Some("pw".to_owned()),
        "RCLONE_REMOTE" => Some(String::new()),
        _ => None,
    };
    let s = load_text(
        "[storage]\nbackend = \"ftp\"\n[storage.ftp]\nurl = \"ftp://a@b/c\"\n",
        &env,
    )
    .unwrap();
    let ftp: backends::ftp::FtpConfig = s.storage.table("ftp").unwrap();
    assert_eq!(ftp.password.expose(), "pw");
    let rclone: backends::rclone::RcloneConfig = s.storage.table("rclone").unwrap();
    assert_eq!(rclone.remote, "", "an empty variable counts as unset");
}

#[test]
fn a_missing_file_is_an_error_only_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    assert!(Settings::load(&path, true, &no_env).is_err());
    let s = Settings::load(&path, false, &no_env).unwrap();
    assert_eq!(s.threshold, ByteSize(500 << 20));
}

#[test]
fn the_sample_settings_file_is_valid_and_matches_the_defaults() {
    let sample = include_str!("../../settings.sample.toml");
    let parsed: Settings = toml::from_str(sample).unwrap();
    let defaults = Settings::default();
    assert_eq!(
        toml::to_string(&parsed).unwrap(),
        toml::to_string(&defaults).unwrap()
    );
}

#[test]
fn bandwidth_is_a_rate_or_empty() {
    assert_eq!(load_text("", &no_env).unwrap().bandwidth, Bandwidth(None));
    let s = load_text("bandwidth = \"20 MiB/s\"", &no_env).unwrap();
    assert_eq!(s.bandwidth, Bandwidth(Some(20 << 20)));
    for (bad, expected) in [
        ("bandwidth = \"20 MiB\"", "not a rate"),
        ("bandwidth = \"0 B/s\"", "would stop every upload"),
        ("bandwidth = \"fast/s\"", "unknown unit"),
    ] {
        let err = load_text(bad, &no_env).unwrap_err();
        assert!(format!("{err:#}").contains(expected), "{bad}: {err:#}");
    }
}

#[test]
fn webhook_events_are_checked_and_urls_come_from_the_environment() {
    let err = load_text("[webhook]\nevents = [\"done\", \"finished\"]\n", &no_env).unwrap_err();
    assert!(
        format!("{err:#}").contains("unknown event \"finished\""),
        "{err:#}"
    );
    let env = |name: &str| {
        matches!(
            name,
            "DISCORD_WEBHOOK_URL" | "OISEAU_WEBHOOK_URL" | "OISEAU_HEALTHCHECK_URL"
        )
        .then(|| format!("https://example.com/{name}"))
    };
    let s = load_text("", &env).unwrap();
    assert!(
        s.discord
            .webhook_url
            .expose()
            .ends_with("DISCORD_WEBHOOK_URL")
    );
    assert!(s.webhook.url.expose().ends_with("OISEAU_WEBHOOK_URL"));
    assert!(
        s.healthcheck
            .url
            .expose()
            .ends_with("OISEAU_HEALTHCHECK_URL")
    );
    let printed = s.to_redacted_toml().unwrap();
    assert!(!printed.contains("example.com"), "{printed}");
}

#[test]
fn printed_settings_hide_passwords_written_in_urls() {
    let s = load_text(
        "[telegram]\napi_url = \"https://bot:tg-pw@proxy.example\"\n\
         [storage.ftp]\nurl = \"ftp://backup:ftp-pw@ftp.example/replays\"\n\
         [storage.s3]\nendpoint = \"https://key:s3-pw@s3.example\"\n",
        &no_env,
    )
    .unwrap();
    let printed = s.to_redacted_toml().unwrap();
    for password in ["tg-pw", "ftp-pw", "s3-pw"] {
        assert!(!printed.contains(password), "{printed}");
    }
    assert!(
        printed.contains("ftp://backup:***@ftp.example/replays"),
        "{printed}"
    );
}

#[test]
fn printed_settings_hide_the_token() {
    let s = load_text("[telegram]\ntoken = \"123:SECRET\"\n", &no_env).unwrap();
    let printed = s.to_redacted_toml().unwrap();
    assert!(!printed.contains("SECRET"));
    assert!(printed.contains("token = \"***\""), "{printed}");
}
