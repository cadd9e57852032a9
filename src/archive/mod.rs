//! Archives made and read back: replays packed into a `.tar.gz` of independent gzip members,
//! and one replay read from its archive's range and checked against its recorded hash.

pub mod gzip;
pub mod pack;
pub mod ranged;
pub mod replay;
