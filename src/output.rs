//! Standard output, for people and for scripts. A reader that stops reading (`oiseau locate 5 |
//! head -1`, a closed terminal) must neither make a command panic nor stop it halfway: a
//! restore goes on, and its exit code still tells how it went. So what cannot be written is
//! dropped.

use std::fmt;
use std::io::Write;

/// `println!` that never panics: see the module's doc.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
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
