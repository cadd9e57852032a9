//! `c14_index.txt`: one line per archive, `<archive_id>\t<max_replay_id>\n`.
//!
//! The format is the original tool's and indexes it wrote must keep working byte for byte, so
//! appending never rewrites what is there. Pure bytes in, bytes out: no I/O here.

use std::fmt;

use crate::formats::names::INDEX_NAME;

/// One archive as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub archive_id: u64,
    /// The largest replay id in that archive.
    pub max_replay_id: u64,
}

/// A parsed index, kept with its original bytes so an append leaves them untouched.
#[derive(Debug, Clone, Default)]
pub struct Index {
    raw: Vec<u8>,
    entries: Vec<IndexEntry>,
}

/// The index cannot be trusted; continuing could reuse an archive id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("{INDEX_NAME} line {line}: {problem}; fix or remove that line on the storage")]
    Malformed { line: usize, problem: String },
}

impl Index {
    /// Parses an index. Blank lines, CRLF endings and a missing final newline are tolerated
    /// (the original tool's files have all three); anything else is an error naming the line.
    pub fn parse(raw: Vec<u8>) -> Result<Self, IndexError> {
        let text = std::str::from_utf8(&raw).map_err(|e| {
            let line = raw[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            IndexError::Malformed {
                line,
                problem: "not valid text".into(),
            }
        })?;
        let mut entries: Vec<IndexEntry> = Vec::new();
        for (number, line) in text.split('\n').enumerate() {
            let line_no = number + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let malformed = |problem: String| IndexError::Malformed {
                line: line_no,
                problem,
            };
            let (archive, max_replay) = line.split_once('\t').ok_or_else(|| {
                malformed(format!(
                    "{line:?} is not `<archive_id><TAB><max_replay_id>`"
                ))
            })?;
            let parse = |field: &str, what: &str| {
                field
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| malformed(format!("{what} {field:?} is not a whole number")))
            };
            let entry = IndexEntry {
                archive_id: parse(archive, "archive id")?,
                max_replay_id: parse(max_replay, "replay id")?,
            };
            if entry.archive_id == u64::MAX {
                return Err(malformed(format!(
                    "archive id {} leaves no id for the next archive",
                    entry.archive_id
                )));
            }
            if let Some(previous) = entries.last()
                && entry.archive_id <= previous.archive_id
            {
                return Err(malformed(format!(
                    "archive id {} does not follow {} (ids must increase)",
                    entry.archive_id, previous.archive_id
                )));
            }
            entries.push(entry);
        }
        Ok(Index { raw, entries })
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    /// The id the next archive gets: the last id + 1, or 1 on an empty index.
    pub fn next_archive_id(&self) -> u64 {
        self.last().map_or(1, |entry| entry.archive_id + 1)
    }

    /// The index bytes with one more line. The old bytes stay exactly as they were; a final
    /// line without a newline gets one first, so the new line stands on its own.
    pub fn appended(&self, entry: IndexEntry) -> Vec<u8> {
        self.appended_all(&[entry])
    }

    /// The index bytes with `entries` added as lines, in order, as [`Index::appended`] does.
    pub fn appended_all(&self, entries: &[IndexEntry]) -> Vec<u8> {
        let mut bytes = self.raw.clone();
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        for entry in entries {
            bytes.extend_from_slice(entry.to_string().as_bytes());
            bytes.push(b'\n');
        }
        bytes
    }
}

impl fmt::Display for IndexEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\t{}", self.archive_id, self.max_replay_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_archive_id_is_refused_since_nothing_could_follow_it() {
        let err = Index::parse(format!("{}\t5\n", u64::MAX).into_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("leaves no id for the next archive"),
            "{err}"
        );
        let index = Index::parse(format!("{}\t5\n", u64::MAX - 1).into_bytes()).unwrap();
        assert_eq!(index.next_archive_id(), u64::MAX);
    }

    fn entry(archive_id: u64, max_replay_id: u64) -> IndexEntry {
        IndexEntry {
            archive_id,
            max_replay_id,
        }
    }

    #[test]
    fn an_empty_index_starts_at_one() {
        let index = Index::parse(Vec::new()).unwrap();
        assert_eq!(index.next_archive_id(), 1);
        assert_eq!(index.appended(entry(1, 77)), b"1\t77\n");
    }

    #[test]
    fn old_index_quirks_are_tolerated_and_kept_byte_for_byte() {
        let raw = b"1\t100\r\n2\t250\r\n\r\n\n3\t400".to_vec();
        let index = Index::parse(raw.clone()).unwrap();
        assert_eq!(
            index.entries(),
            &[entry(1, 100), entry(2, 250), entry(3, 400)]
        );
        assert_eq!(index.next_archive_id(), 4);
        let mut expected = raw;
        expected.extend_from_slice(b"\n4\t500\n");
        assert_eq!(index.appended(entry(4, 500)), expected);
    }

    #[test]
    fn a_malformed_line_is_named() {
        let cases: [(&[u8], usize, &str); 5] = [
            (
                b"1\t10\n2 20\n",
                2,
                "is not `<archive_id><TAB><max_replay_id>`",
            ),
            (b"1\t10\n\nx\t20\n", 3, "archive id \"x\""),
            (b"1\t10\n2\t-3\n", 2, "replay id \"-3\""),
            (b"1\t10\n1\t20\n", 2, "ids must increase"),
            (b"1\t10\n2\t\xff\n", 2, "not valid text"),
        ];
        for (raw, line, problem) in cases {
            let err = Index::parse(raw.to_vec()).unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("{INDEX_NAME} line {line}: ")),
                "{message}"
            );
            assert!(message.contains(problem), "{message}");
        }
    }
}
