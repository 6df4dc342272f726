//! Integration tests: real Redis, real PostgreSQL, the simulator on loopback. Each test has its own
//! database, queue namespace and channel prefix (see `helpers`).

mod browser;
mod helpers;

mod accounts;
mod admin;
mod bad_input;
mod calendar;
mod chain;
mod completeness;
mod config;
mod console;
mod days;
mod dead_letters;
mod dedupe;
mod dependencies;
mod event_order;
mod explorer;
mod failover;
mod instruments;
mod kite;
mod migrations;
mod observability;
mod operator_input;
mod orphans;
mod ratelimit;
mod retention;
mod retries;
mod rollups;
mod rows;
mod shutdown;
mod sim;
mod subscribe;
mod sweeps;
mod traces;
