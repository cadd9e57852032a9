//! rclone remotes over the test FTP server, defined the two ways operators do: a config file,
//! or an on-the-fly remote with the password in the environment.

use std::io::Write;
use std::process::{Command, Stdio};

use super::ftp::{FTP_PASSWORD, FTP_USER};

/// `rclone obscure` of the test FTP password (read from stdin, never an argument).
pub fn obscured_password() -> String {
    let mut child = Command::new("rclone")
        .args(["obscure", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("rclone is on PATH: run the tests with scripts/test, which provisions it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(FTP_PASSWORD.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An rclone config file defining the remote `testftp:` on the test FTP server.
pub fn ftp_config_file(port: u16) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "[testftp]\ntype = ftp\nhost = 127.0.0.1\nport = {port}\nuser = {FTP_USER}\npass = {}\n",
        obscured_password()
    )
    .unwrap();
    file
}

/// An on-the-fly FTP remote; its password goes in `RCLONE_FTP_PASS`.
pub fn ftp_remote(port: u16, dir: &str) -> String {
    format!(":ftp,host=127.0.0.1,port={port},user={FTP_USER}:{dir}")
}

/// `rclone serve s3` on a free loopback port, serving the folders of a temporary directory as
/// buckets: a real S3 server that checks signatures but ignores `If-None-Match` and `If-Match`,
/// as some S3-compatible services do.
pub struct RcloneS3 {
    pub port: u16,
    pub root: tempfile::TempDir,
    child: std::process::Child,
}

impl RcloneS3 {
    pub fn start(access_key: &str, secret_key: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let port = super::ftp::free_port();
        // The keys go in the environment, never on the command line; quoted, as rclone reads
        // a list flag's variable as CSV.
        let child = Command::new("rclone")
            .args(["serve", "s3", "--addr", &format!("127.0.0.1:{port}")])
            .arg(root.path())
            .env("RCLONE_AUTH_KEY", format!("\"{access_key},{secret_key}\""))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rclone is on PATH: run the tests with scripts/test, which provisions it");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "rclone serve s3 did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        RcloneS3 { port, root, child }
    }

    /// A bucket: a folder of the served directory.
    pub fn bucket(&self, name: &str) -> std::path::PathBuf {
        let dir = self.root.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes an object through the server's S3 API (a file written into its folder behind its
    /// back stays unseen while its listing is cached).
    pub fn put(&self, bucket: &str, name: &str, bytes: &[u8]) {
        let endpoint = format!("http://127.0.0.1:{}", self.port);
        super::s3::put_with_rclone(super::s3::rclone_s3(&endpoint), bucket, name, bytes);
    }

    /// The `[storage]` tables of the s3 backend on `bucket`, its objects at the bucket's root.
    pub fn settings(&self, bucket: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"{bucket}\"\n\
             endpoint = \"http://127.0.0.1:{}\"\ntimeout = \"10s\"\n",
            self.port
        )
    }
}

impl Drop for RcloneS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
