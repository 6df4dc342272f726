//! What every job handler takes and returns: its [`JobMeta`] and, when it does not complete,
//! a [`JobError`] that says what should happen next.

use chrono::{DateTime, Utc};

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again later.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Give up: to the dead set with this reason.
    #[error("{0}")]
    GiveUp(String),
    /// A dependency cannot be reached: try the same attempt again later, spending none.
    #[error("{0:#}")]
    PutOff(anyhow::Error),
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::Retry(anyhow::Error::new(e).context("database error"))
    }
}

/// Everything one job run knows about itself.
pub(crate) struct JobMeta {
    /// The first attempt's id: every attempt of a job updates one `backfill_runs` row.
    pub(crate) id: String,
    /// This attempt's number, from 1.
    pub(crate) attempt: usize,
    /// No further attempt follows a transient failure of this one.
    pub(crate) last_attempt: bool,
    pub(crate) started_at: DateTime<Utc>,
}
