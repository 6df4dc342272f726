//! tickfill keeps a market-data store complete: subscription events become durable jobs, and a
//! pool of workers fetches the missing 1-minute history and upserts it into PostgreSQL.
//!
//! Layout (arrows run one way: everything may import `domain`; `domain` imports nothing below):
//! - `domain/`: pure types and rules: instruments and tokens, events, candles and bar tables,
//!   tradingsymbols, windows, option-chain math.
//! - `config/`: typed settings from the environment, one section per file; `telemetry`: logs and
//!   traces; `metrics`: the Prometheus registry; `shutdown`: the stop signal every loop obeys, and
//!   reconnect delays; `redis_conn`: the Redis connection that follows the primary.
//! - `store/`: PostgreSQL: migrations and every SQL statement of the product, one function each.
//! - `queue/`: everything Redis holds for a deployment: key names, storages and the producer,
//!   housekeeping, figures, dead letters, cancelling, the Lua scripts.
//! - `ticker/`: the history API clients (ticker service, Kite) and the accounts' fleet-wide rate
//!   budgets, which route each request to an account that can serve it.
//! - `accounts`: the accounts as operators see them, and Kite sessions set without a restart.
//! - `bridge`: Redis pub/sub events → jobs.
//! - `worker/`: the apalis worker pool, one attempt and its retry policy, one file per job kind.
//! - `sweep`: gap planning and reconciliation; `scheduler`: sweep jobs on `SWEEP_INTERVAL`.
//! - `load`: the instrument-dump loader; `manual`: hand backfills; `status`: per-subscription
//!   status.
//! - `explore`: the job explorer: queued jobs and finished runs under one filter, counted and paged.
//! - `admin/`: the admin HTTP API and operator page.
//! - `sim/`: the ticker-service simulator (an outside system: it shares no code with `ticker`).
//! - `dev`: the one-command local stack; `bench/`: measurements.
//!
//! The binary (`src/bin/tickfill/`) only parses the command line and dispatches to these.
//!
//! Layers, each importing only its own and those above it in this list (checked by
//! `layout_tests`): `domain`; `config`, `metrics`, `telemetry`, `shutdown`, `redis_conn`;
//! `store`, `queue`, `ticker`; `accounts`, `bridge`, `explore`, `load`, `manual`, `scheduler`,
//! `sim`, `status`, `sweep`; `worker`, `admin`; `dev`, `bench`.

pub mod accounts;
pub mod admin;
pub mod bench;
pub mod bridge;
pub mod config;
pub mod dev;
pub mod domain;
pub mod explore;
pub mod load;
pub mod manual;
pub mod metrics;
pub mod queue;
pub mod redis_conn;
pub mod scheduler;
pub mod shutdown;
pub mod sim;
pub mod status;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod ticker;
pub mod worker;

#[cfg(test)]
mod layout_tests;

pub use tickfill_jobs as jobs;
