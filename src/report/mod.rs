//! Telling operators: the run's typed events and the channels that hear them (chats, webhooks,
//! health checks, metrics), the log, progress bars, and standard output for people and scripts.

#[macro_use]
pub mod output;

pub mod events;
pub mod logging;
pub mod metrics;
pub mod notify;
pub(crate) mod progress;
