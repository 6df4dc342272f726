//! The domain: pure types and rules, no I/O. Nothing here imports the store, the queue, the
//! ticker client, the worker or the admin API; they all import this.
//!
//! Layout:
//! - `event`: subscription events: parsing a message, the reasons one is refused.
//! - `instrument`: an instrument dump row, its source, the instrument token.
//! - `market`: candles, the bar table an instrument's bars go to, underlying names.
//! - `symbol`: tradingsymbol parsing and the exchanges' expiry rules.
//! - `window`: half-open time windows: minute alignment, holes, chunks.
//! - `chain`: option-chain math: strike rows, PCR, max pain.
//! - `calendar`: exchange sessions and holidays: which minutes trade.
//! - `proof`: what an answer proves: covered, suspect and confirmed-empty minutes.
//! - `days`: the state of an instrument's day, and adjustments.
//! - `timeframe`: chart timeframes and their IST-aligned buckets.
//! - `text`: untrusted text made inert for terminals and log lines.
//! - `filter`: the job filter of the explorer and the bulk actions, and a job as listed.
//! - `session`: Kite sessions: when one ends, the login checksum.

pub mod calendar;
pub mod chain;
pub mod days;
pub mod event;
pub mod filter;
pub mod instrument;
pub mod market;
pub mod proof;
pub mod session;
pub mod symbol;
pub mod text;
pub mod timeframe;
pub mod window;
