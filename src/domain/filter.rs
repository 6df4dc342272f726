//! The job filter: one language for the API's query parameters, the CLI's flags and the page's
//! URL. `token`, `symbol`, `kind`, `lane`, `state`, `error`, `from`, `to`, `min_attempts`; each
//! given at most once, every one of them narrowing. An unknown name, a repeated one or a bad
//! value is refused naming it: a misspelt filter must never widen a bulk action to everything.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tickfill_jobs::{InstrumentToken, JobKind, Lane};

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Due and waiting for a worker.
    Pending,
    /// Waiting for its time (a delayed push, a retry).
    Scheduled,
    /// In a worker's hands.
    Running,
    /// Failed for good.
    Dead,
    /// Finished: a run row in `backfill_runs` (stored, covered, skipped, done, disabled).
    Finished,
}

impl JobState {
    pub const ALL: [JobState; 5] =
        [JobState::Pending, JobState::Scheduled, JobState::Running, JobState::Dead, JobState::Finished];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Dead => "dead",
            JobState::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the queue (Redis) holds jobs in this state; else the store does.
    pub fn queued(self) -> bool {
        self != JobState::Finished
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The names a filter takes.
pub const FILTER_KEYS: [&str; 9] = ["token", "symbol", "kind", "lane", "state", "error", "from", "to", "min_attempts"];

/// The longest `error` or `symbol` text a filter takes.
const MAX_TEXT: usize = 200;

/// Which jobs an action or a listing is about. Empty: every job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<InstrumentToken>,
    /// A tradingsymbol, or an underlying's name (every contract of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<Lane>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<JobState>,
    /// Text the job's error holds (case-insensitive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the job was made (queued jobs) or finished (runs): `[from, to)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_attempts: Option<u32>,
}

/// A filter that could not be read: which name, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {name}: {reason}")]
pub struct FilterError {
    pub name: String,
    pub reason: String,
}

fn bad(name: &str, reason: impl Into<String>) -> FilterError {
    FilterError { name: crate::domain::text::inert(name, 40), reason: reason.into() }
}

impl JobFilter {
    /// Reads a filter from name/value pairs (query parameters, CLI flags). Names outside
    /// [`FILTER_KEYS`] are left to the caller when `others` holds them, refused otherwise.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        others: &[&str],
    ) -> Result<JobFilter, FilterError> {
        let mut f = JobFilter::default();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in pairs {
            if others.contains(&name) {
                continue;
            }
            if seen.contains(&name) {
                return Err(bad(name, "given twice"));
            }
            seen.push(name);
            let value = value.trim();
            if value.is_empty() {
                return Err(bad(name, "empty"));
            }
            let text = |v: &str| {
                if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) {
                    Err(bad(name, format!("at most {MAX_TEXT} characters, no control characters")))
                } else {
                    Ok(v.to_string())
                }
            };
            let instant = |v: &str| {
                DateTime::parse_from_rfc3339(v).map(|t| t.with_timezone(&Utc)).map_err(|_| {
                    bad(name, format!("{:?} is not an RFC 3339 instant", crate::domain::text::inert(v, 40)))
                })
            };
            match name {
                "token" => {
                    f.token = Some(
                        InstrumentToken::parse(value)
                            .map_err(|_| bad(name, "an instrument token is a whole number 1 … 4294967295"))?,
                    )
                }
                "symbol" => f.symbol = Some(text(value)?.to_ascii_uppercase()),
                "kind" => {
                    f.kind =
                        Some(JobKind::parse(value).ok_or_else(|| {
                            bad(name, format!("one of {}", JobKind::ALL.map(JobKind::as_str).join(", ")))
                        })?)
                }
                "lane" => f.lane = Some(Lane::parse(value).ok_or_else(|| bad(name, "urgent or bulk"))?),
                "state" => {
                    f.state = Some(JobState::parse(value).ok_or_else(|| {
                        bad(name, format!("one of {}", JobState::ALL.map(JobState::as_str).join(", ")))
                    })?)
                }
                "error" => f.error = Some(text(value)?),
                "from" => f.from = Some(instant(value)?),
                "to" => f.to = Some(instant(value)?),
                "min_attempts" => {
                    f.min_attempts = Some(
                        value
                            .parse::<u32>()
                            .ok()
                            .filter(|n| *n <= 1000)
                            .ok_or_else(|| bad(name, "a whole number 0 … 1000"))?,
                    )
                }
                other => {
                    return Err(bad(other, format!("unknown; a filter takes {}", FILTER_KEYS.join(", "))));
                }
            }
        }
        if let (Some(from), Some(to)) = (f.from, f.to) {
            if to <= from {
                return Err(bad("to", "must be after from"));
            }
        }
        Ok(f)
    }

    /// Whether the filter narrows anything.
    pub fn is_empty(&self) -> bool {
        *self == JobFilter::default()
    }

    /// Whether it may hold jobs in `state`.
    pub fn wants_state(&self, state: JobState) -> bool {
        self.state.is_none_or(|s| s == state)
    }

    /// Whether a job (as listed) passes everything but `symbol`, which the caller resolves to
    /// tokens (`tokens`: `None` when the filter names no symbol).
    pub fn matches(&self, job: &JobRow, tokens: Option<&[InstrumentToken]>) -> bool {
        self.wants_state(job.state)
            && self.token.is_none_or(|t| job.token == Some(t))
            && tokens.is_none_or(|ts| job.token.is_some_and(|t| ts.contains(&t)))
            && self.kind.is_none_or(|k| job.kind == k.as_str())
            && self.lane.is_none_or(|l| job.lane == Some(l))
            && self.min_attempts.is_none_or(|n| job.attempts >= n)
            && self.from.is_none_or(|from| job.at.is_some_and(|at| at >= from))
            && self.to.is_none_or(|to| job.at.is_some_and(|at| at < to))
            && self.error.as_deref().is_none_or(|e| {
                job.error.as_deref().is_some_and(|text| text.to_lowercase().contains(&e.to_lowercase()))
            })
    }

    /// The filter as query parameters (the page's URL, the CLI's request), in [`FILTER_KEYS`]
    /// order.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let z = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        if let Some(t) = self.token {
            out.push(("token", t.to_string()));
        }
        if let Some(s) = &self.symbol {
            out.push(("symbol", s.clone()));
        }
        if let Some(k) = self.kind {
            out.push(("kind", k.as_str().to_string()));
        }
        if let Some(l) = self.lane {
            out.push(("lane", l.as_str().to_string()));
        }
        if let Some(s) = self.state {
            out.push(("state", s.as_str().to_string()));
        }
        if let Some(e) = &self.error {
            out.push(("error", e.clone()));
        }
        if let Some(t) = self.from {
            out.push(("from", z(t)));
        }
        if let Some(t) = self.to {
            out.push(("to", z(t)));
        }
        if let Some(n) = self.min_attempts {
            out.push(("min_attempts", n.to_string()));
        }
        out
    }
}

/// One job as the explorer lists it: queued (Redis) or finished (a run row).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// The task id (queued) or the job's first id (a run).
    pub id: String,
    pub state: JobState,
    /// `None` for a finished run (the store does not keep the lane).
    pub lane: Option<Lane>,
    pub kind: String,
    pub token: Option<InstrumentToken>,
    pub attempts: u32,
    pub error: Option<String>,
    /// When it was made (queued) or finished (a run).
    pub at: Option<DateTime<Utc>>,
    /// A finished run's outcome (`stored`, `covered`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// A running job's worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(q: &[(&str, &str)]) -> Result<JobFilter, FilterError> {
        JobFilter::from_pairs(q.iter().copied(), &["limit", "cursor"])
    }

    #[test]
    fn every_name_reads_and_writes_back_the_same() {
        let f = read(&[
            ("token", "256265"),
            ("symbol", "nifty"),
            ("kind", "backfill"),
            ("lane", "bulk"),
            ("state", "dead"),
            ("error", "unknown instrument"),
            ("from", "2026-12-01T00:00:00Z"),
            ("to", "2026-12-02T00:00:00+05:30"),
            ("min_attempts", "2"),
            ("limit", "10"),
        ])
        .unwrap();
        assert_eq!(f.symbol.as_deref(), Some("NIFTY"));
        let pairs: Vec<(String, String)> = f.to_pairs().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let again = read(&pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>()).unwrap();
        assert_eq!(again, f);
        assert!(read(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_bad_filter_is_refused_naming_it_never_widened() {
        for (q, name) in [
            (vec![("tokn", "1")], "tokn"),
            (vec![("token", "1"), ("token", "2")], "token"),
            (vec![("token", "0")], "token"),
            (vec![("token", "-5")], "token"),
            (vec![("token", "4294967296")], "token"),
            (vec![("kind", "Backfill")], "kind"),
            (vec![("lane", "fast")], "lane"),
            (vec![("state", "done")], "state"),
            (vec![("from", "yesterday")], "from"),
            (vec![("from", "2026-12-02T00:00:00Z"), ("to", "2026-12-01T00:00:00Z")], "to"),
            (vec![("min_attempts", "1e3")], "min_attempts"),
            (vec![("error", "")], "error"),
            (vec![("error", "a\u{1b}[2Jb")], "error"),
        ] {
            assert_eq!(read(&q).unwrap_err().name, name, "{q:?}");
        }
        assert!(read(&[("error", &"x".repeat(201))]).is_err());
    }

    #[test]
    fn a_row_matches_only_what_every_name_allows() {
        let row = JobRow {
            id: "01J".into(),
            state: JobState::Dead,
            lane: Some(Lane::Urgent),
            kind: "subscribed".into(),
            token: Some(crate::domain::instrument::tok(99901)),
            attempts: 1,
            error: Some("unknown instrument 99901: not in instruments".into()),
            at: DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z").ok().map(|t| t.with_timezone(&Utc)),
            outcome: None,
            worker: None,
        };
        let yes = |q: &[(&str, &str)]| read(q).unwrap().matches(&row, None);
        assert!(yes(&[]));
        assert!(yes(&[("token", "99901"), ("state", "dead"), ("lane", "urgent"), ("error", "UNKNOWN instr")]));
        assert!(yes(&[("from", "2026-12-06T10:00:00Z"), ("to", "2026-12-06T10:00:01Z"), ("kind", "subscribed")]));
        assert!(!yes(&[("token", "99902")]));
        assert!(!yes(&[("state", "pending")]));
        assert!(!yes(&[("min_attempts", "2")]));
        assert!(!yes(&[("to", "2026-12-06T10:00:00Z")]));
        assert!(!yes(&[("error", "timeout")]));
        let f = read(&[("symbol", "ACC99901")]).unwrap();
        let tok = crate::domain::instrument::tok;
        assert!(f.matches(&row, Some(&[tok(99901)])) && !f.matches(&row, Some(&[tok(1)])));
    }
}
