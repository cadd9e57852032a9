//! What oiseau writes on the storage, as bytes: the object names, the index, the manifests with
//! their ranges, and the digests they record. Nothing here reads a file or speaks to a storage,
//! so every other part builds on it and it builds on nothing of oiseau's.

pub mod access;
pub mod digest;
pub mod index;
pub mod manifest;
pub mod names;
pub mod range;
