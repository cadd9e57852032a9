//! Cross-cutting concerns as layers around any driver (OpenDAL's layers): each is a
//! [`crate::Driver`] that wraps another, so a driver speaks only its protocol.

/// The methods a layer passes through untouched: what the driver is, what it can do and what
/// state it is in. Expands inside a layer's `impl Driver`, whose wrapped driver is `inner`.
macro_rules! pass_through_description {
    () => {
        fn describe(&self) -> String {
            self.inner.describe()
        }

        fn capabilities(&self) -> crate::Capabilities {
            self.inner.capabilities()
        }
    };
}

mod faults;
mod retry;
pub(crate) mod timeout;

pub use faults::{Fault, Faults};
pub use retry::{Retry, RetryEvent, RetryHook};
pub use timeout::Timeout;
