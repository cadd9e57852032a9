//! One replay's tar entry: the file opened only if it is still what the scan saw, read whole
//! (most replays) or streamed (large ones), hashed on the way; a replay that changes, ends
//! early or cannot be read is left out without failing the archive.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::time::UNIX_EPOCH;

use crate::formats::digest::ReplayHash;
use crate::temp_folder::Replay;

use super::READ_BUFFER;

/// Replays up to this size are read whole before their entry is written, so that one that
/// shrinks or changes while it is read is left out cleanly. Replays are rarely above 1 MiB.
pub(super) const WHOLE_READ_LIMIT: u64 = 8 << 20;

/// Opens a replay if it is still the file the scan saw (size, modification time to the
/// nanosecond, inode), without blocking: a FIFO or a device put under its name since the scan
/// would stall the run forever, and a symbolic link would archive another file. Anything else
/// is left out with a warning naming it, and stays for the next run.
pub(super) fn open_unchanged(replay: &Replay) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file = match rustix::fs::open(&replay.path, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => {
            tracing::warn!(replay = %replay.name(), "vanished since the scan; left out");
            return None;
        }
        Err(e) => {
            // One replay that cannot be opened must not hold back the others.
            tracing::warn!(
                replay = %replay.name(),
                "cannot read it ({e}); left out: fix its permissions or move it out of the temp folder"
            );
            return None;
        }
    };
    match file.metadata() {
        Ok(meta) if !meta.is_file() => {
            tracing::warn!(
                replay = %replay.name(),
                "is no longer a regular file; left out: move it out of the temp folder"
            );
            None
        }
        Ok(meta) if is_as_scanned(&meta, replay) => Some(file),
        Ok(_) => {
            tracing::warn!(replay = %replay.name(), "changed since the scan; left for the next run");
            None
        }
        Err(e) => {
            tracing::warn!(replay = %replay.name(), "cannot read its metadata ({e}); left out");
            None
        }
    }
}

/// Whether an open replay is still exactly the file the scan saw.
fn is_as_scanned(meta: &std::fs::Metadata, replay: &Replay) -> bool {
    meta.len() == replay.size
        && meta.modified().ok() == Some(replay.mtime)
        && meta.ino() == replay.inode
}

/// The tar header of a replay, named after the file at the tar root with the size and mtime
/// the scan saw (before 1970: 0).
fn header_of(replay: &Replay) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(replay.name())?;
    header.set_size(replay.size);
    header.set_mode(0o644);
    header.set_mtime(
        replay
            .mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

/// Reads the whole replay into `buffer`, then writes its entry: the header, its bytes and zero
/// padding to the next 512-byte boundary. A replay that ends early, cannot be read, or changed
/// while it was read is left out (`None`) with nothing written; only a failed write is an
/// error.
pub(super) fn append_read_whole(
    out: &mut impl Write,
    mut source: File,
    replay: &Replay,
    buffer: &mut Vec<u8>,
    on_read: &mut dyn FnMut(u64),
) -> io::Result<Option<ReplayHash>> {
    let size = usize::try_from(replay.size).unwrap_or(usize::MAX);
    buffer.resize(size, 0);
    let read = read_fully(&mut source, buffer);
    let unchanged = source
        .metadata()
        .is_ok_and(|meta| is_as_scanned(&meta, replay));
    match read {
        Ok(n) if n == size && unchanged => {}
        Ok(n) if n < size => {
            tracing::warn!(replay = %replay.name(), "shrank while being packed; left for the next run");
            return Ok(None);
        }
        Ok(_) => {
            tracing::warn!(replay = %replay.name(), "changed while being packed; left for the next run");
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(replay = %replay.name(), "cannot read it ({e}); left out");
            return Ok(None);
        }
    }
    on_read(replay.size);
    out.write_all(header_of(replay)?.as_bytes())?;
    out.write_all(buffer)?;
    write_padding(out, replay.size)?;
    Ok(Some(ReplayHash(*blake3::hash(buffer).as_bytes())))
}

/// Writes a large replay's entry as it is read, a [`READ_BUFFER`] at a time, hashing the bytes
/// on the way. Its header is out before the end is read, so a replay that ends early or cannot
/// be read is completed with zeros (the tar stream stays whole) and left out (`None`): its
/// entry is not in the manifest, and the file stays for the next run.
pub(super) fn append_streamed(
    out: &mut impl Write,
    mut source: File,
    replay: &Replay,
    buffer: &mut Vec<u8>,
    on_read: &mut dyn FnMut(u64),
) -> io::Result<Option<ReplayHash>> {
    buffer.resize(READ_BUFFER, 0);
    out.write_all(header_of(replay)?.as_bytes())?;
    let mut hasher = blake3::Hasher::new();
    let mut remaining = replay.size;
    let mut complete = true;
    while remaining > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = match read_fully(&mut source, &mut buffer[..want]) {
            Ok(n) if n == want => n,
            outcome => {
                let why = outcome.map_or_else(|e| e.to_string(), |_| "it shrank".to_owned());
                tracing::warn!(replay = %replay.name(), "cannot read it whole while packing ({why}); left for the next run");
                complete = false;
                buffer.fill(0);
                want
            }
        };
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
        remaining -= n as u64;
        on_read(n as u64);
    }
    write_padding(out, replay.size)?;
    let unchanged = source
        .metadata()
        .is_ok_and(|meta| is_as_scanned(&meta, replay));
    Ok((complete && unchanged).then(|| ReplayHash(*hasher.finalize().as_bytes())))
}

/// Reads until `buffer` is full or the file ends; returns the bytes read.
fn read_fully(source: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match source.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Zeros to the next 512-byte boundary after an entry of `size` bytes.
fn write_padding(out: &mut impl Write, size: u64) -> io::Result<()> {
    let padding = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..padding as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_folder::scan;
    use std::time::{Duration, SystemTime};

    #[test]
    fn a_replay_that_shrinks_while_it_is_read_is_left_out_and_nothing_of_it_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("replay_1.osr"), [5u8; 5000]).unwrap();
        let scan = scan(dir.path(), Duration::ZERO, SystemTime::now()).unwrap();
        let replay = &scan.replays[0];
        let source = open_unchanged(replay).expect("unchanged so far");
        std::fs::File::options()
            .write(true)
            .open(&replay.path)
            .unwrap()
            .set_len(100)
            .unwrap();
        let mut out = Vec::new();
        let hash = append_read_whole(&mut out, source, replay, &mut Vec::new(), &mut |_| {});
        assert_eq!(hash.unwrap(), None);
        assert!(out.is_empty(), "no entry written");

        let source = std::fs::File::open(&replay.path).unwrap();
        let streamed = Replay {
            size: 5000,
            ..replay.clone()
        };
        let hash = append_streamed(&mut out, source, &streamed, &mut Vec::new(), &mut |_| {});
        assert_eq!(
            hash.unwrap(),
            None,
            "a streamed entry is completed, and left out"
        );
        assert_eq!(out.len(), 512 + 5120, "the tar stream stays whole");
    }
}
