//! Whether a process of this host is still the one that was recorded. A pid alone says little:
//! a killed run whose parent died stays a zombie until init reaps it, and after a reboot (or
//! enough processes) the same pid belongs to something else. So a holder is recorded with the
//! boot it ran in and its start time, read from Linux's `/proc`, and it is alive only while a
//! running (not zombie) process of that pid, boot and start time exists.

use serde::{Deserialize, Serialize};

/// A process as recorded in a lease: enough to tell it from any later one with its pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The process's start, in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
}

impl ProcessIdentity {
    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        ProcessIdentity {
            pid,
            boot_id: boot_id(),
            start_ticks: proc_stat(pid).map(|stat| stat.start_ticks),
        }
    }

    /// A process known by its pid only (a partial upload's name carries no more).
    pub fn pid_only(pid: u32) -> Self {
        ProcessIdentity {
            pid,
            boot_id: None,
            start_ticks: None,
        }
    }

    /// Whether this process of this host still runs: not after a reboot, not as a zombie, not
    /// when its pid now names a process started at another time. What was not recorded (an
    /// older lease) is not compared.
    pub fn is_alive(&self) -> bool {
        if let (Some(recorded), Some(now)) = (&self.boot_id, boot_id())
            && *recorded != now
        {
            return false;
        }
        match proc_stat(self.pid) {
            Some(stat) => {
                stat.state != 'Z'
                    && stat.state != 'X'
                    && self
                        .start_ticks
                        .is_none_or(|start| start == stat.start_ticks)
            }
            // No /proc entry: gone, unless /proc itself is missing.
            None if std::path::Path::new("/proc/self/stat").exists() => false,
            None => signal_reaches(self.pid),
        }
    }
}

/// What `/proc/<pid>/stat` says of a process.
struct ProcStat {
    state: char,
    start_ticks: u64,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// `pid (comm) state ppid ... starttime ...`: the command name may hold spaces and
/// parentheses, so the fields are counted from its last `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, after_name) = text.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `state` is field 3; `starttime` is field 22.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// Without `/proc`: whether a signal could reach the pid (EPERM: it exists, owned by another
/// user).
fn signal_reaches(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_another_start_or_boot_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.boot_id.is_some() && me.start_ticks.is_some());
        assert!(me.is_alive());
        assert!(ProcessIdentity::pid_only(me.pid).is_alive());
        let reused_pid = ProcessIdentity {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused_pid.is_alive(), "the pid now names a later process");
        let before_reboot = ProcessIdentity {
            boot_id: Some("another-boot".into()),
            ..me.clone()
        };
        assert!(!before_reboot.is_alive());
        assert!(!ProcessIdentity::pid_only(u32::MAX - 1).is_alive());
    }

    #[test]
    fn a_zombie_is_not_alive() {
        // A child that exits and is not waited for stays a zombie.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let zombie = ProcessIdentity::pid_only(pid);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while zombie.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            !zombie.is_alive(),
            "an exited, unreaped child counts as gone"
        );
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "it is still a zombie, not reaped"
        );
        drop(child);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let text = "42 (a (weird) name) Z 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!((stat.state, stat.start_ticks), ('Z', 98765));
    }
}
