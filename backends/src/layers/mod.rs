//! Cross-cutting concerns as layers around any driver (OpenDAL's layers): each is a
//! [`crate::Driver`] that wraps another, so a driver speaks only its protocol.

mod faults;
mod retry;
mod timeout;

pub use faults::{Fault, Faults};
pub use retry::{Retry, RetryEvent, RetryHook};
pub use timeout::Timeout;
