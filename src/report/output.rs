//! Standard output, for people and for scripts. A reader that stops reading (`oiseau locate 5 |
//! head -1`, a closed terminal) must neither make a command panic nor stop it halfway: a
//! restore goes on, and its exit code still tells how it went. So what cannot be written is
//! dropped.

use std::fmt;
use std::fmt::Write as _;
use std::io::Write;

/// `println!` that never panics: see the module's doc.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::report::output::line(format_args!($($arg)*))
    };
}

/// Writes one line to standard output, or nothing if it cannot be written.
pub fn line(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

/// Writes bytes to standard output as they are, or nothing if they cannot be written.
pub fn raw(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}

/// How many items of a list a one-line message names; the rest are counted.
pub const LIST_CAP: usize = 10;

/// The first [`LIST_CAP`] items joined by `separator`, then how many more there are: a line
/// stays a line when a storage of years has thousands of them.
pub fn capped<T: fmt::Display>(items: impl IntoIterator<Item = T>, separator: &str) -> String {
    let mut text = String::new();
    let mut more = 0usize;
    for (n, item) in items.into_iter().enumerate() {
        if n < LIST_CAP {
            if n > 0 {
                text.push_str(separator);
            }
            let _ = write!(text, "{item}");
        } else {
            more += 1;
        }
    }
    if more > 0 {
        let _ = write!(text, " and {more} more");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_names_its_first_items_and_counts_the_rest() {
        assert_eq!(capped([1, 2, 3], ", "), "1, 2, 3");
        assert_eq!(capped(Vec::<u32>::new(), ", "), "");
        assert_eq!(
            capped(1..=1_000_000, "; "),
            "1; 2; 3; 4; 5; 6; 7; 8; 9; 10 and 999990 more"
        );
    }
}
