//! Replays -> `.tar.gz`, streamed: a file at a time goes from the temp folder through the
//! parallel gzip writer into the spool file, so memory stays flat whatever the batch size.
//! Knows nothing of storage.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::archive::gzip::{BLOCK_SIZE, Level, OnWritten, ParallelGzip, Written};
use crate::formats::digest::{ArchiveDigest, ReplayHash};
use crate::formats::range::ReplayRange;
use crate::temp_folder::Replay;

mod entry;
use entry::{WHOLE_READ_LIMIT, append_read_whole, append_streamed, open_unchanged};

/// Bytes of a replay read at a time.
const READ_BUFFER: usize = 256 * 1024;

impl ReplayRange {
    /// The range of a tar entry spanning `[start, end)` of the uncompressed stream, in the
    /// archive `written` describes (member `k` holds the stream from `k * BLOCK_SIZE`).
    fn of_entry(start: u64, end: u64, written: &Written) -> Option<Self> {
        let first = usize::try_from(start / BLOCK_SIZE).ok()?;
        let last = usize::try_from(end.saturating_sub(1) / BLOCK_SIZE).ok()?;
        let offset = *written.members.get(first)?;
        let stop = written
            .members
            .get(last + 1)
            .copied()
            .unwrap_or(written.bytes);
        Some(ReplayRange {
            offset,
            length: stop.checked_sub(offset)?,
            skip: start - first as u64 * BLOCK_SIZE,
        })
    }
}

/// A replay as it went into an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedReplay {
    pub hash: ReplayHash,
    /// Where it can be read back without the rest of the archive.
    pub range: Option<ReplayRange>,
}

/// What ended up in an archive.
#[derive(Debug)]
pub struct Packed {
    /// One per replay given to [`pack`], in order: `None` when it was left out because it
    /// vanished or changed since the scan (it stays in the temp folder for the next run).
    pub replays: Vec<Option<PackedReplay>>,
    /// Size of the `.tar.gz` in bytes.
    pub size: u64,
    pub digest: ArchiveDigest,
}

/// Writes `replays` as a `.tar.gz` to `out`, which must not exist. `on_written` hears the
/// file's size each time it grows, for an upload that follows it.
///
/// `out` is not fsynced: it is a staging copy. A resumed run trusts it only after checking it
/// against the journal's digest, and each storage makes its own copy durable. (An fsync here
/// also made removing the file after the upload take most of a second on ext4.)
///
/// Entries are named after the file at the tar root with the size and mtime the scan saw, as
/// the original tool's archives are. A replay that vanished, changed, cannot be read or is no
/// longer a regular file is left out with a warning naming it (and stays for the next run);
/// only a failed write of the archive fails the pack, and `out` is then removed.
pub fn pack(
    replays: &[Replay],
    out: &Path,
    level: Level,
    progress: &dyn Fn(u64),
    on_written: OnWritten,
) -> Result<Packed> {
    let file = File::create_new(out)
        .with_context(|| format!("cannot create the spool file {}", out.display()))?;
    let result = file
        .try_clone()
        .context("cannot open the spool file twice")
        .and_then(|out| {
            write_archive(replays, ParallelGzip::new(out, level, on_written), progress)
        });
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    let (entries, written) = result?;
    if entries.iter().all(Option::is_none) {
        let _ = std::fs::remove_file(out);
        bail!("every replay vanished or changed while being packed; nothing was archived");
    }
    let replays = entries
        .into_iter()
        .map(|entry| {
            entry.map(|(hash, start, end)| PackedReplay {
                hash,
                range: ReplayRange::of_entry(start, end, &written),
            })
        })
        .collect();
    Ok(Packed {
        replays,
        size: written.bytes,
        digest: written.digest,
    })
}

/// Per replay, its hash and where its tar entry starts and ends in the uncompressed stream.
type Archive = (Vec<Option<(ReplayHash, u64, u64)>>, Written);

/// Writes the replays into `gzip` as a tar stream.
fn write_archive(
    replays: &[Replay],
    gzip: ParallelGzip,
    progress: &dyn Fn(u64),
) -> Result<Archive> {
    let mut tar = tar::Builder::new(gzip);
    let mut entries = Vec::with_capacity(replays.len());
    let mut read_so_far = 0u64;
    let mut buffer = Vec::new();
    for replay in replays {
        let Some(source) = open_unchanged(replay) else {
            entries.push(None);
            continue;
        };
        let start = tar.get_ref().position();
        let mut on_read = |n| {
            read_so_far += n;
            progress(read_so_far);
        };
        let hash = if replay.size <= WHOLE_READ_LIMIT {
            append_read_whole(tar.get_mut(), source, replay, &mut buffer, &mut on_read)
        } else {
            append_streamed(tar.get_mut(), source, replay, &mut buffer, &mut on_read)
        }
        .with_context(|| format!("cannot pack {}", replay.path.display()))?;
        entries.push(hash.map(|hash| (hash, start, tar.get_ref().position())));
    }
    let gzip = tar.into_inner().context("cannot finish the tar stream")?;
    let written = gzip.finish().context("cannot write the spool file")?;
    Ok((entries, written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_folder::scan;
    use std::io::Read;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn replay_folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    /// `pack` without progress reports.
    fn pack_quietly(replays: &[Replay], out: &Path) -> Result<Packed> {
        pack(replays, out, Level::Auto, &|_| {}, Box::new(|_, _| {}))
    }

    fn unpack(archive: &Path) -> Vec<(String, Vec<u8>, u64)> {
        let gz = flate2::read::MultiGzDecoder::new(File::open(archive).unwrap());
        let mut tar = tar::Archive::new(gz);
        tar.entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let name = entry.path().unwrap().to_string_lossy().into_owned();
                let mtime = entry.header().mtime().unwrap();
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).unwrap();
                (name, bytes, mtime)
            })
            .collect()
    }

    #[test]
    fn archive_holds_the_replays_byte_for_byte_at_the_root() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let dir = replay_folder(&[
            ("replay_1.osr", b"first"),
            ("replay_2.osr", &big),
            ("replay_3.osr", b""),
        ]);
        let scan = scan(dir.path(), Duration::ZERO, SystemTime::now()).unwrap();
        let out = dir.path().join("out.tar.gz");
        let packed = pack_quietly(&scan.replays, &out).unwrap();

        assert!(packed.replays.iter().all(Option::is_some));
        assert_eq!(
            packed.replays[0].map(|r| r.hash),
            Some(ReplayHash(*blake3::hash(b"first").as_bytes()))
        );
        assert_eq!(packed.size, std::fs::metadata(&out).unwrap().len());
        let expected_hash = blake3::hash(&std::fs::read(&out).unwrap()).to_hex();
        assert_eq!(
            packed.digest,
            ArchiveDigest::Blake3(expected_hash.to_string())
        );
        let entries = unpack(&out);
        let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["replay_1.osr", "replay_2.osr", "replay_3.osr"]);
        assert_eq!(entries[1].1, big);
        let mtime = scan.replays[1]
            .mtime
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(entries[1].2, mtime);
    }

    #[test]
    fn each_replay_reads_back_from_its_range_alone() {
        use std::io::Read;
        // Noise, so members stay about a block each; replay 2 spans two members.
        let noise = crate::sample::noise;
        let files: Vec<(String, Vec<u8>)> = [(1, 700_000), (2, 900_000), (3, 10), (4, 300_000)]
            .into_iter()
            .map(|(id, len)| (format!("replay_{id}.osr"), noise(id, len)))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let scan = scan(dir.path(), Duration::ZERO, SystemTime::now()).unwrap();
        let out = dir.path().join("out.tar.gz");
        let packed = pack_quietly(&scan.replays, &out).unwrap();
        let archive = std::fs::read(&out).unwrap();
        for (replay, packed) in scan.replays.iter().zip(&packed.replays) {
            let range = packed.unwrap().range.unwrap();
            let start = usize::try_from(range.offset).unwrap();
            let bytes = &archive[start..start + usize::try_from(range.length).unwrap()];
            let mut stream = flate2::read::MultiGzDecoder::new(bytes);
            std::io::copy(&mut (&mut stream).take(range.skip), &mut std::io::sink()).unwrap();
            let mut tar = tar::Archive::new(stream);
            let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
            assert_eq!(entry.path().unwrap().to_str(), Some(replay.name()));
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let expected = &files.iter().find(|(n, _)| n == replay.name()).unwrap().1;
            assert_eq!(&content, expected);
            assert!(
                range.length <= replay.size + 2 * 1024 * 1024 + 1024,
                "{}: {range:?}",
                replay.name()
            );
        }
        let spanning = packed.replays[1].unwrap().range.unwrap();
        assert!(
            spanning.length > 1 << 20,
            "replay 2 spans two members: {spanning:?}"
        );
    }

    #[test]
    fn vanished_and_changed_replays_are_left_out() {
        let dir = replay_folder(&[
            ("replay_1.osr", b"stays"),
            ("replay_2.osr", b"vanishes"),
            ("replay_3.osr", b"grows"),
        ]);
        let scan = scan(dir.path(), Duration::ZERO, SystemTime::now()).unwrap();
        std::fs::remove_file(dir.path().join("replay_2.osr")).unwrap();
        std::fs::write(dir.path().join("replay_3.osr"), b"grows, and grows").unwrap();
        let out = dir.path().join("out.tar.gz");
        let packed = pack_quietly(&scan.replays, &out).unwrap();
        let kept: Vec<bool> = packed.replays.iter().map(Option::is_some).collect();
        assert_eq!(kept, [true, false, false], "replays 2 and 3 are left out");
        assert_eq!(unpack(&out).len(), 1);
    }

    #[test]
    fn a_replay_that_became_a_fifo_or_a_link_is_left_out_without_waiting() {
        let dir = replay_folder(&[
            ("replay_1.osr", b"stays"),
            ("replay_2.osr", b"becomes a fifo"),
            ("replay_3.osr", b"becomes a link"),
        ]);
        let scan = scan(dir.path(), Duration::ZERO, SystemTime::now()).unwrap();
        let fifo = dir.path().join("replay_2.osr");
        std::fs::remove_file(&fifo).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
        let link = dir.path().join("replay_3.osr");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(dir.path().join("replay_1.osr"), &link).unwrap();
        let out = dir.path().join("out.tar.gz");
        let packed = pack_quietly(&scan.replays, &out).unwrap();
        let kept: Vec<bool> = packed.replays.iter().map(Option::is_some).collect();
        assert_eq!(kept, [true, false, false]);
        assert_eq!(unpack(&out).len(), 1);
    }

    #[test]
    fn an_existing_spool_file_is_never_overwritten() {
        let dir = replay_folder(&[("replay_1.osr", b"x")]);
        let scan = scan(dir.path(), Duration::ZERO, SystemTime::now()).unwrap();
        let out = dir.path().join("out.tar.gz");
        std::fs::write(&out, b"earlier").unwrap();
        assert!(pack_quietly(&scan.replays, &out).is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"earlier");
    }
}
