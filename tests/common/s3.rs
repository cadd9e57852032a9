//! moto's S3 server (`moto[server]`, provisioned by scripts/test), one per test, on a free
//! loopback port, and plain HTTP requests to it for what a test checks behind oiseau's back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "TESTKEYID";
pub const SECRET_KEY: &str = "TEST-SECRET-s3-key-do-not-print";

pub struct MotoServer {
    pub port: u16,
    child: Child,
}

impl MotoServer {
    pub fn start() -> Self {
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server ({e}): run the tests with scripts/test, which provisions it")
            });
        // werkzeug names the port it took in its first lines, on stderr.
        let (found, lines) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let found = found.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = found.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server stopped at once ({status}): run the tests with scripts/test");
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            let Ok(line) = lines.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            if let Some(port) = line
                .split("http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|port| port.parse().ok())
            {
                break port;
            }
        };
        MotoServer { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto does not check signatures).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, _) = self.request("PUT", &format!("/{bucket}"), "");
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    /// Makes the next restores stay pending for `reads` reads of their state (moto's state
    /// manager), instead of completing at once.
    pub fn keep_restores_pending(&self, reads: u32) {
        let body = format!(
            r#"{{"model_name": "s3::keyrestore", "transition": {{"progression": "manual", "times": {reads}}}}}"#
        );
        let (status, _) = self.request("POST", "/moto-api/state-manager/set-transition", &body);
        assert_eq!(status, 201, "moto's state manager");
    }

    /// Starts a multipart upload of `key` and leaves it incomplete, as a killed run would.
    pub fn start_multipart_upload(&self, bucket: &str, key: &str) {
        let (status, _) = self.request("POST", &format!("/{bucket}/{key}?uploads"), "");
        assert_eq!(status, 200, "starting a multipart upload of {key}");
    }

    /// The keys of the incomplete multipart uploads in `bucket`.
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let body = self.get_body(&format!("/{bucket}?uploads"));
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// Copies every object under `path` (`bucket/prefix`) into `dir`, names relative to the
    /// prefix, so that a test can check the storage as it checks a folder.
    pub fn snapshot(&self, path: &str, dir: &std::path::Path) {
        let (bucket, prefix) = path.split_once('/').unwrap();
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let listing = self.get_body(&format!("/{bucket}?list-type=2&prefix={prefix}/"));
        for key in listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key))
        {
            let name = key.strip_prefix(&format!("{prefix}/")).unwrap();
            let body = self.get_bytes(&format!("/{bucket}/{key}"));
            std::fs::write(dir.join(name), body).unwrap();
        }
    }

    fn get_bytes(&self, path: &str) -> Vec<u8> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, \
             Signature=0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let start = response
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .map_or(response.len(), |at| at + 4);
        response.split_off(start)
    }

    fn get_body(&self, path: &str) -> String {
        String::from_utf8_lossy(&self.get_bytes(path)).into_owned()
    }

    /// The storage class of an object, from a HEAD: STANDARD when none is named.
    pub fn storage_class(&self, bucket: &str, key: &str) -> String {
        let (status, headers) = self.request("HEAD", &format!("/{bucket}/{key}"), "");
        assert_eq!(status, 200, "HEAD {key}");
        headers
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("x-amz-storage-class")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| "STANDARD".to_owned())
    }

    /// One HTTP/1.1 request: the status and the response's head.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let head = response
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, head)
    }

    /// The `[storage]` tables of a deployment on `bucket` with `archive_class`.
    pub fn settings(&self, bucket: &str, archive_class: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"{bucket}\"\nprefix = \"osu\"\n\
             endpoint = \"{}\"\narchive_class = \"{archive_class}\"\ntimeout = \"10s\"\n",
            self.endpoint()
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills a run at each crash point, each on a fresh bucket made by `deployment` (from the
/// bucket's name, with the objects under `osu/`), and checks the storage (copied into a
/// folder by `snapshot` from `bucket/osu`) after the kill and after the next run: nothing
/// lost, everything archived, the lock free.
pub fn killed_at_each_step_the_next_run_completes(
    snapshot: impl Fn(&str, &std::path::Path),
    env: &[(&str, &str)],
    deployment: impl Fn(&str) -> super::Deployment,
) {
    for (round, step) in super::CRASH_STEPS.into_iter().enumerate() {
        let bucket = format!("crash{round}");
        let d = deployment(&bucket);
        d.oiseau(&["init"], env).expect_code(0);
        let replays = super::add_sized_replays(&d.temp, 1, 12, 700 * 1024);
        let mut crash_env = env.to_vec();
        crash_env.push(("OISEAU_CRASH_AT", step));
        let crashed = d.oiseau(&["run"], &crash_env).0;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&crashed.status),
            Some(9),
            "{step}: the run was not killed: {}",
            String::from_utf8_lossy(&crashed.stderr)
        );
        let seen = d.root.path().join("seen");
        snapshot(&format!("{bucket}/osu"), &seen);
        super::assert_nothing_lost(&replays, &d.temp, &seen, false);

        d.oiseau(&["run"], env).expect_code(0);
        snapshot(&format!("{bucket}/osu"), &seen);
        let archived = super::assert_nothing_lost(&replays, &d.temp, &seen, true);
        assert_eq!(archived.len(), replays.len(), "{step}");
        assert!(d.temp_names().is_empty(), "{step}");
        assert_eq!(
            std::fs::read(seen.join("c14_index.txt")).unwrap(),
            b"1\t12\n",
            "{step}"
        );
        assert!(
            !seen.join("oiseau.lock").exists(),
            "{step}: the lock is free"
        );
    }
}

/// `rclone` speaking S3 to the server at `endpoint` (the `:s3:` remote), the test keys in its
/// environment, never on its command line.
pub fn rclone_s3(endpoint: &str) -> Command {
    let mut command = Command::new("rclone");
    command
        .arg("--quiet")
        .env("RCLONE_S3_PROVIDER", "Other")
        .env("RCLONE_S3_ENDPOINT", endpoint)
        .env("RCLONE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_S3_SECRET_ACCESS_KEY", SECRET_KEY);
    command
}

/// Writes `bytes` as `bucket/name` through `rclone`, a [`rclone_s3`] command.
pub fn put_with_rclone(mut rclone: Command, bucket: &str, name: &str, bytes: &[u8]) {
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), bytes).unwrap();
    let status = rclone
        .arg("copyto")
        .arg(local.path())
        .arg(format!(":s3:{bucket}/{name}"))
        .status()
        .unwrap();
    assert!(status.success(), "rclone copyto {name}");
}

/// The credentials, as operators give them: in the environment.
pub fn env() -> [(&'static str, &'static str); 2] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
}
