//! `[healthcheck]`: the dead man's switch of healthchecks.io and its self-hosted clones.
//!
//! `<url>/start` when a run begins, `<url>` when it ends well, `<url>/fail` (or
//! `<url>/<exit code>`) with the one-line error when it fails. A wait for the storage is a
//! success until it has lasted longer than `pending_grace`: a cold storage takes hours to
//! wake up, and days of it mean something is wrong.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use shared::Secret;

use super::{Endpoint, base_url};
use crate::report::events::{Event, Finished, LOCK_WAIT_GRACE, Outcome, Reporter, WaitCause, unix};
use crate::settings::HealthcheckSettings;

#[derive(Debug)]
pub struct Healthcheck {
    endpoint: Endpoint,
    url: Secret,
    pending_grace: Duration,
    exit_codes: bool,
}

/// The ping a finished run sends.
#[derive(Debug, PartialEq, Eq)]
enum Ping {
    Success,
    /// The path after the URL (`fail` or an exit code), and the body.
    Failure(String, String),
}

impl Healthcheck {
    /// On when the URL is set.
    pub fn new(settings: &HealthcheckSettings) -> Option<Self> {
        (!settings.url.is_empty()).then(|| Healthcheck {
            endpoint: Endpoint::new("healthcheck", settings.timeout),
            url: base_url(&settings.url),
            pending_grace: settings.pending_grace,
            exit_codes: settings.exit_codes,
        })
    }

    fn ping(&self, finished: &Finished, now: SystemTime) -> Ping {
        let failure = |body: String| {
            let path = if self.exit_codes {
                finished.exit_code.max(1).to_string()
            } else {
                "fail".to_owned()
            };
            Ping::Failure(path, body)
        };
        match &finished.outcome {
            Outcome::Done(_)
            | Outcome::NothingToDo { .. }
            | Outcome::Waiting {
                cause: WaitCause::AnotherRun,
                ..
            } => Ping::Success,
            Outcome::Waiting { cause, reason } => {
                let (since, grace) = if *cause == WaitCause::StorageLock {
                    (finished.record.lock_waiting_since, LOCK_WAIT_GRACE)
                } else {
                    (finished.record.waiting_since, self.pending_grace)
                };
                let waited =
                    Duration::from_secs(unix(now).saturating_sub(since.unwrap_or(unix(now))));
                if waited <= grace {
                    return Ping::Success;
                }
                let waited = humantime::format_duration(waited);
                failure(if *cause == WaitCause::StorageLock {
                    format!("no archive for {waited}: the storage lock stays held: {reason}")
                } else {
                    format!(
                        "waiting for the storage for {waited} (more than healthcheck.pending_grace): {reason}"
                    )
                })
            }
            Outcome::Failed { error } => failure(error.clone()),
        }
    }
}

#[async_trait]
impl Reporter for Healthcheck {
    async fn report(&self, event: &Event) {
        let base = self.url.expose();
        let hint = "check healthcheck.url (OISEAU_HEALTHCHECK_URL)";
        match event {
            Event::Started => {
                let url = format!("{base}/start");
                self.endpoint.send(|client| client.get(&url), hint).await;
            }
            Event::Finished(finished) => match self.ping(finished, SystemTime::now()) {
                Ping::Success => {
                    self.endpoint.send(|client| client.get(base), hint).await;
                }
                Ping::Failure(path, body) => {
                    let url = format!("{base}/{path}");
                    self.endpoint
                        .send(|client| client.post(&url).body(body.clone()), hint)
                        .await;
                }
            },
            Event::Resumed { .. }
            | Event::ArchivesWarmingUp { .. }
            | Event::StorageNotice { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::events::RunRecord;
    use std::time::UNIX_EPOCH;

    fn healthcheck(exit_codes: bool) -> Healthcheck {
        Healthcheck::new(&HealthcheckSettings {
            url: Secret::new("http://hc.example/ping/abc/"),
            exit_codes,
            ..HealthcheckSettings::default()
        })
        .unwrap()
    }

    fn finished(outcome: Outcome, exit_code: u8, waiting_since: Option<u64>) -> Finished {
        Finished {
            outcome,
            exit_code,
            started_at: UNIX_EPOCH,
            duration: Duration::ZERO,
            record: RunRecord {
                waiting_since,
                ..RunRecord::default()
            },
        }
    }

    #[test]
    fn a_wait_for_the_storage_fails_only_past_the_grace() {
        let check = healthcheck(false);
        assert_eq!(check.url.expose(), "http://hc.example/ping/abc");
        let now = UNIX_EPOCH + Duration::from_secs(10 * 24 * 3600);
        let waiting = |since| {
            finished(
                Outcome::Waiting {
                    cause: WaitCause::Storage,
                    reason: "unarchive under way".into(),
                },
                75,
                Some(since),
            )
        };
        let an_hour_ago = unix(now) - 3600;
        assert_eq!(check.ping(&waiting(an_hour_ago), now), Ping::Success);
        let three_days_ago = unix(now) - 3 * 24 * 3600;
        let Ping::Failure(path, body) = check.ping(&waiting(three_days_ago), now) else {
            panic!("three days of waiting is a failure");
        };
        assert_eq!(path, "fail");
        assert!(
            body.starts_with("waiting for the storage for 3days"),
            "{body}"
        );
        assert!(body.ends_with("unarchive under way"), "{body}");
        assert_eq!(
            healthcheck(true).ping(&waiting(three_days_ago), now),
            Ping::Failure("75".into(), body)
        );
    }

    #[test]
    fn a_storage_lock_that_stays_held_fails_past_six_hours() {
        let check = healthcheck(false);
        let now = UNIX_EPOCH + Duration::from_secs(10 * 24 * 3600);
        let held_since = |since| Finished {
            record: RunRecord {
                lock_waiting_since: Some(since),
                ..RunRecord::default()
            },
            ..finished(
                Outcome::Waiting {
                    cause: WaitCause::StorageLock,
                    reason: "oiseau.lock.d is on the storage without the lease".into(),
                },
                75,
                None,
            )
        };
        assert_eq!(
            check.ping(&held_since(unix(now) - 3600), now),
            Ping::Success
        );
        let Ping::Failure(path, body) = check.ping(&held_since(unix(now) - 7 * 3600), now) else {
            panic!("seven hours of a held lock is a failure");
        };
        assert_eq!(path, "fail");
        assert!(
            body.starts_with("no archive for 7h: the storage lock stays held: oiseau.lock.d"),
            "{body}"
        );
    }

    #[test]
    fn a_failure_carries_its_error_and_its_exit_code_when_asked() {
        let failed = finished(
            Outcome::Failed {
                error: "index line 2".into(),
            },
            1,
            None,
        );
        let now = SystemTime::now();
        assert_eq!(
            healthcheck(false).ping(&failed, now),
            Ping::Failure("fail".into(), "index line 2".into())
        );
        assert_eq!(
            healthcheck(true).ping(&failed, now),
            Ping::Failure("1".into(), "index line 2".into())
        );
    }
}
