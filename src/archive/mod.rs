//! Archives made and read back: replays packed into a `.tar.gz` of independent gzip members,
//! one replay read from its archive's range and checked against its recorded hash, and the
//! access points that let the original tool's single-stream archives be read the same way.

pub mod access;
pub mod contents;
pub mod gzip;
pub mod pack;
pub mod ranged;
pub mod replay;
