/// What a driver can do, declared once as plain data (OpenDAL's `Capability`): callers and the
/// shared commit path ask before they rely on a feature, instead of trying it and parsing the
/// failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // a set of independent flags is what this is
pub struct Capabilities {
    /// `put` with [`crate::Put::if_absent`] creates the object in one atomic step, or
    /// fails with [`crate::ErrorKind::AlreadyExists`]: no partial object is ever visible under
    /// the name, and no other writer's object is replaced.
    pub atomic_create: bool,
    /// A plain `put` replaces an existing object in one step: a reader sees the old or the new
    /// bytes, never a partial or missing object (restic's `HasAtomicReplace`).
    pub atomic_replace: bool,
    /// `put` honours [`crate::Put::if_match`]: the object is replaced only if it is still the
    /// version read earlier, checked by the storage itself (S3's `If-Match`).
    pub replace_if_match: bool,
    /// `rename` moves an object to another name on the server, replacing the target.
    pub rename: bool,
    /// `read` of a part of an object costs about that part, not the whole object.
    pub ranged_read: bool,
    /// The storage keeps a hash of each object that `check_hash` compares with a local file.
    pub server_side_hash: bool,
    /// `put` honours [`crate::Placement::Archive`] with a cold storage class.
    pub storage_classes: bool,
    /// The storage may have to be woken up before use ([`crate::Readiness::Pending`]).
    pub needs_warm_up: bool,
}
