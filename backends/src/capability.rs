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
    /// The storage keeps a hash of each object that `check_hash` compares with a local file.
    pub server_side_hash: bool,
    /// An object may have to be woken up before it is read ([`crate::Driver::warm_up`]);
    /// without it, [`crate::Storage::warm_up`] answers ready at once.
    pub needs_warm_up: bool,
    /// [`crate::Driver::create_lock`] takes a lock in one exclusive step (an atomic create,
    /// FTP's `MKD`). Without it, the lock is taken by writing the lease and reading it back.
    pub exclusive_lock: bool,
    /// `atomic_create` and `replace_if_match` are what the protocol promises, but some servers
    /// speaking it ignore the conditions (`rclone serve s3`, several S3-compatible services):
    /// [`crate::Storage::probe_conditions`] must check them before they are relied on.
    pub conditions_need_probe: bool,
}

/// What a probe found a storage's conditional writes really do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConditionsProbed {
    /// A second create of the same name with `If-None-Match: *` was refused.
    pub create_if_absent: bool,
    /// A replace with `If-Match` of a version the object does not have was refused.
    pub replace_if_match: bool,
}

impl Capabilities {
    /// These capabilities, keeping of the conditional ones only what the probe verified.
    #[must_use]
    pub fn as_probed(self, probed: ConditionsProbed) -> Self {
        let atomic_create = self.atomic_create && probed.create_if_absent;
        Capabilities {
            atomic_create,
            replace_if_match: self.replace_if_match && probed.replace_if_match,
            exclusive_lock: self.exclusive_lock && atomic_create,
            conditions_need_probe: false,
            ..self
        }
    }
}
