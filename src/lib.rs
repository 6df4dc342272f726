//! tickfill keeps a market-data store complete: subscription events become durable jobs, and a
//! pool of workers fetches the missing 1-minute history and upserts it into PostgreSQL.
//!
//! Layout:
//! - `admin`: the admin HTTP API (health, readiness, queue figures, dead letters).
//! - `config`: typed settings from the environment.
//! - `telemetry`: logging.
//! - `metrics`: the Prometheus registry.
//! - `shutdown`: the stop signal every loop obeys.
//! - `queue`: apalis-redis storages, pushing jobs, counters and the scripts apalis needs beside it.
//! - `dead`: dead letters (list, show, retry, purge) and queue figures.
//! - `bridge`: Redis pub/sub events → jobs.
//! - `worker`: the apalis worker pool and its retry policy; one file per job type beside it.
//! - `sweep`: gap planning and reconciliation with the ticker's subscription list.
//! - `scheduler`: pushes sweep jobs on `SWEEP_INTERVAL`.
//! - `ticker`: the history API client.
//! - `budget`: the fleet-wide rate budget of the history API, urgent lane first.
//! - `market`: candles, instrument classification, underlying names, tradingsymbol parsing.
//! - `chain`: option-chain strike distribution, PCR and max pain.
//! - `windows`: minute alignment, holes, chunks.
//! - `store`: PostgreSQL: migrations and one function per statement.
//! - `load`: the instrument-dump loader.
//! - `ops`: operator commands (hand backfills, status).
//! - `sim`: the ticker-service simulator.
//! - `dev`: the one-command local stack.
//! - `bench`: measurements.

pub mod admin;
pub mod bench;
pub mod bridge;
pub mod config;
pub mod dev;
pub mod domain;
pub mod load;
pub mod manual;
pub mod metrics;
pub mod queue;
pub mod scheduler;
pub mod shutdown;
pub mod sim;
pub mod status;
pub mod store;
pub mod sweep;
pub mod telemetry;
pub mod ticker;
pub mod worker;

pub use tickfill_jobs as jobs;
