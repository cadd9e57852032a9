//! This machine's name, as leases, partial uploads and notifications say it.

/// This machine's name: letters, digits, `-` and `.`, anything else as `_`.
pub fn host_name() -> String {
    let uname = rustix::system::uname();
    let name: String = uname
        .nodename()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "unknown-host".to_owned()
    } else {
        name
    }
}
