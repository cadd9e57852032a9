//! A storage as the original tool left it, at realistic size: archives written by Python's
//! `tarfile` the way that tool wrote them (one gzip stream at level 9, replay files at the
//! root), with replays arriving out of order, an index in its format, and no manifest.
//!
//! Made once per build (it is deterministic) under Cargo's temporary folder for tests, and
//! copied into each storage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The small archive: ids 1..=40 but 17 and 23, in shuffled order.
pub const SMALL: &str = "1571000000_replays_1.tar.gz";
/// The big archive, over 100 MB: ids 41..=800, with 17 and 23 arriving late among them. Every
/// fifth replay is text, which deflate compresses with Huffman codes: its blocks end anywhere
/// in a byte, as access points then do (replays proper are LZMA inside, stored as they are).
pub const BIG: &str = "1571600000_replays_2.tar.gz";
/// Replays the index's id ranges place in the small archive, but the big one holds.
pub const LATE: [u64; 2] = [17, 23];

const MAKE: &str = r#"
import gzip, os, random, sys, tarfile

out = sys.argv[1]
src = os.path.join(out, "replays")
store = os.path.join(out, "storage")
os.makedirs(src)
os.makedirs(store)

def replay(replay_id, mean):
    rng = random.Random(replay_id)
    size = rng.randrange(mean // 2, mean * 3 // 2)
    if replay_id % 5 == 0:
        words = [b"osu!", b"replay", b"%d" % replay_id, b"miss", b"300", b"100", b"50", b"combo"]
        data = b" ".join(rng.choice(words) for _ in range(size // 4))[:size]
    else:
        data = rng.randbytes(size)
    path = os.path.join(src, f"replay_{replay_id}.osr")
    with open(path, "wb") as f:
        f.write(data)
    return path

# As fixtures/original/make.py: a gzip stream at level 9 around a tar of TarInfo members.
small = [i for i in range(1, 41) if i not in (17, 23)]
random.Random(1).shuffle(small)
with gzip.GzipFile(os.path.join(store, "1571000000_replays_1.tar.gz"), "wb",
                   mtime=1571000000, compresslevel=9) as gz:
    with tarfile.open(fileobj=gz, mode="w") as tar:
        for i in small:
            path = replay(i, 40_000)
            info = tar.gettarinfo(path, arcname=f"replay_{i}.osr")
            info.mtime = 1570999940
            with open(path, "rb") as f:
                tar.addfile(info, f)

# As the tool archived its temp folder: "w:gz" and add(), whose float times make a pax
# header before each member.
big = list(range(41, 801))
big[300:300] = [17]
big[450:450] = [23]
with tarfile.open(os.path.join(store, "1571600000_replays_2.tar.gz"), "w:gz") as tar:
    for i in big:
        tar.add(replay(i, 175_000), arcname=f"replay_{i}.osr")

with open(os.path.join(store, "c14_index.txt"), "wb") as f:
    f.write(b"1\t40\r\n2\t800\r\n")
"#;

/// The folder holding `storage/` (the seed storage) and `replays/` (every replay's bytes).
fn made() -> &'static Path {
    static MADE: OnceLock<PathBuf> = OnceLock::new();
    MADE.get_or_init(|| {
        let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("seed-v2");
        if home.join("storage/c14_index.txt").exists() {
            return home;
        }
        let staging = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("seed-v2.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).unwrap();
        let script = staging.join("make.py");
        std::fs::write(&script, MAKE).unwrap();
        let python = super::ftp::test_python();
        let status = std::process::Command::new(&python)
            .arg(&script)
            .arg(&staging)
            .status()
            .unwrap();
        assert!(status.success(), "{python} make.py");
        std::fs::remove_file(&script).unwrap();
        // Another test process may have made it meanwhile: the same bytes either way.
        if std::fs::rename(&staging, &home).is_err() {
            std::fs::remove_dir_all(&staging).unwrap();
        }
        home
    })
}

/// Copies the seed storage into the folder `storage`.
pub fn copy_into(storage: &Path) {
    std::fs::create_dir_all(storage).unwrap();
    for name in names() {
        std::fs::copy(made().join("storage").join(&name), storage.join(&name)).unwrap();
    }
}

/// The seed storage's object names.
pub fn names() -> Vec<String> {
    super::names_in(&made().join("storage"))
}

/// The bytes of one of the seed storage's objects.
pub fn object(name: &str) -> Vec<u8> {
    std::fs::read(made().join("storage").join(name)).unwrap()
}

/// The bytes of replay `id`, as archived.
pub fn replay(id: u64) -> Vec<u8> {
    std::fs::read(made().join(format!("replays/replay_{id}.osr"))).unwrap()
}

/// Every seed object's bytes by name: to show they are unchanged.
pub fn objects_in(storage: &Path) -> BTreeMap<String, Vec<u8>> {
    names()
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(storage.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}
