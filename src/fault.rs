//! Crash points for the fault-injection tests: with `OISEAU_CRASH_AT=<step>`, a debug build
//! kills itself with SIGKILL when the run reaches that step, exactly as an OOM kill or a power
//! cut would stop it. Release builds compile this to nothing.

/// Dies here if the tests asked for it.
#[cfg(debug_assertions)]
pub fn point(step: &str) {
    if std::env::var("OISEAU_CRASH_AT").is_ok_and(|wanted| wanted == step) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

#[cfg(not(debug_assertions))]
pub fn point(_step: &str) {}
