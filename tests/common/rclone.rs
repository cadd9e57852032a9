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
