//! The TLS crypto provider of every HTTPS and FTPS connection: rustls with *ring*.
//!
//! *ring* builds in a fraction of the time of aws-lc (a large C library), which made up most
//! of a first build; rustls needs the provider installed once per process before the first
//! client or TLS configuration is made, which [`install_provider`] does.

use std::sync::Once;

/// Installs *ring* as the process's rustls provider; later calls do nothing.
pub fn install_provider() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only when a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
