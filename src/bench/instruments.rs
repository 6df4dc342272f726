//! `tickfill bench instruments`: reloading a Kite instrument dump over an existing table, against
//! a raw `COPY` of the same file in the same run, and the loader's peak memory.
//!
//! The dump is generated into a file: `rows` instruments across NSE, BSE, NFO-FUT and NFO-OPT. It
//! is loaded once into a scratch database, then a second dump of the same instruments with every
//! `last_price` changed (as the next day's dump would have) is loaded over it by a real
//! `tickfill instruments load FILE` process: every row is an update, the heavy case. `max_rss_mb`
//! is that process's largest resident set (`VmHWM`, sampled until it exits). The baseline is
//! `COPY … FROM STDIN (FORMAT csv, HEADER)` of the same file, streamed from disk, into an empty
//! scratch table with the same primary key.
//!
//! With `--full`, a third dump (every price changed again, 0.1 % of the instruments gone) is then
//! loaded with `tickfill instruments load --full`: the same updates plus retiring what the dump no
//! longer lists. `full_ms` beside `load_ms` is what `--full` costs over a plain reload.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use serde_json::json;
use sqlx::PgPool;

use super::procs;
use crate::{config::Settings, load, store};

/// A Kite-format dump of `rows` instruments; `day` changes every `last_price`.
pub fn generate_dump(rows: usize, day: u32) -> Vec<u8> {
    generate_dump_without(rows, day, 0)
}

/// [`generate_dump`], leaving out every `gone_every`th instrument (none with 0).
pub fn generate_dump_without(rows: usize, day: u32, gone_every: usize) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 110);
    out.push_str(
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\r\n",
    );
    for i in (0..rows).filter(|i| gone_every == 0 || i % gone_every != gone_every - 1) {
        let token = 30_000_000 + i as u32;
        let exchange_token = token >> 8;
        let price = 100.0 + (i % 5000) as f64 * 0.05 + day as f64;
        let _ = match i % 4 {
            0 => writeln!(out, "{token},{exchange_token},EQ{i:06},COMPANY {i},{price:.2},,0.0,0.05,1,EQ,NSE,NSE\r"),
            1 => writeln!(out, "{token},{exchange_token},BQ{i:06},COMPANY {i},{price:.2},,0.0,0.01,1,EQ,BSE,BSE\r"),
            2 => writeln!(
                out,
                "{token},{exchange_token},UND{:04}26JANFUT,UND{:04},{price:.2},2026-01-27,0.0,0.05,50,FUT,NFO-FUT,NFO\r",
                i % 2000,
                i % 2000
            ),
            _ => writeln!(
                out,
                "{token},{exchange_token},UND{:04}26JAN{}CE,UND{:04},{price:.2},2026-01-27,{}.0,0.05,50,CE,NFO-OPT,NFO\r",
                i % 2000,
                1000 + (i / 4) % 400 * 5,
                i % 2000,
                1000 + (i / 4) % 400 * 5
            ),
        };
    }
    out.into_bytes()
}

pub async fn run(base: Settings, rows: usize, full: bool) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(rows > 0, "--rows must be at least 1");
    let id = format!("bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let db_url = store::create_database(base.store.database_url.expose(), &id).await?;
    let pool = store::connect(&db_url, 2).await?;
    let result = run_in(&pool, &db_url, rows, full).await;
    pool.close().await;
    if let Err(e) = store::drop_database(base.store.database_url.expose(), &id).await {
        tracing::warn!(error = %e, "failed to drop the scratch database");
    }
    result
}

async fn run_in(pool: &PgPool, db_url: &str, rows: usize, full: bool) -> anyhow::Result<serde_json::Value> {
    store::migrate(pool, &Default::default()).await?;
    let dir = std::env::temp_dir().join(format!("tickfill-bench-dump-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(pool, db_url, rows, full, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Loads `file` with a real `tickfill instruments load` process (`args` after `load`); its wall
/// time, largest resident set and what it printed.
async fn load_process(db_url: &str, args: &[&str], file: &std::path::Path) -> anyhow::Result<(f64, f64, String)> {
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["instruments", "load"])
        .args(args)
        .arg(file)
        .env("DATABASE_URL", db_url)
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut max_rss_mb: f64 = 0.0;
    while child.try_wait()?.is_none() {
        max_rss_mb = max_rss_mb.max(procs::memory_mb(child.id(), "VmHWM").unwrap_or(0.0));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "the load failed: {said} {}", String::from_utf8_lossy(&out.stderr));
    Ok((took, max_rss_mb, said))
}

async fn measure(
    pool: &PgPool,
    db_url: &str,
    rows: usize,
    full: bool,
    dir: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let first = dir.join("day0.csv");
    let next = dir.join("day1.csv");
    std::fs::write(&first, generate_dump(rows, 0))?;
    std::fs::write(&next, generate_dump(rows, 1))?;
    let initial = load::load_from(pool, tokio::fs::File::open(&first).await?, None, |_| {}).await?;
    anyhow::ensure!(initial.inserted as usize == rows, "the first load inserted {} of {rows}", initial.inserted);
    sqlx::query("VACUUM ANALYZE instruments").execute(pool).await?;

    let (load_s, max_rss_mb, said) = load_process(db_url, &[], &next).await?;
    let want = format!("{rows} rows read: 0 inserted, {rows} updated, 0 unchanged, 0 rejected");
    anyhow::ensure!(said.contains(&want), "the reload did not update every row: {said}");

    sqlx::query(
        "CREATE TABLE copy_scratch (instrument_token bigint PRIMARY KEY, exchange_token bigint,
             tradingsymbol text NOT NULL, name text, last_price double precision, expiry date,
             strike double precision, tick_size double precision, lot_size integer,
             instrument_type text, segment text, exchange text)",
    )
    .execute(pool)
    .await?;
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut copy = conn.copy_in_raw("COPY copy_scratch FROM STDIN (FORMAT csv, HEADER true)").await?;
    copy.read_from(tokio::fs::File::open(&next).await?).await?;
    let copied = copy.finish().await?;
    let copy_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(copied as usize == rows, "COPY wrote {copied} of {rows} rows");

    // The --full reload: every price changed again, and one instrument in a thousand gone.
    let full_ms = if full {
        let third = dir.join("day2.csv");
        std::fs::write(&third, generate_dump_without(rows, 2, 1000))?;
        sqlx::query("VACUUM ANALYZE instruments").execute(pool).await?;
        let (full_s, _, said) = load_process(db_url, &["--full"], &third).await?;
        let gone = rows / 1000;
        let want = format!("--full: {gone} instrument(s) of the dump's segments no longer listed, now inactive");
        anyhow::ensure!(said.contains(&want), "the --full reload did not retire {gone}: {said}");
        Some((full_s * 1000.0).round())
    } else {
        None
    };

    let rows_per_s = rows as f64 / load_s;
    let copy_rows_per_s = rows as f64 / copy_s;
    Ok(json!({
        "rows": rows,
        "rows_per_s": rows_per_s.round(),
        "copy_rows_per_s": copy_rows_per_s.round(),
        "ratio": (rows_per_s / copy_rows_per_s * 100.0).round() / 100.0,
        "load_ms": (load_s * 1000.0).round(),
        "full_ms": full_ms,
        "full_vs_load": full_ms.map(|f| (f / (load_s * 1000.0) * 100.0).round() / 100.0),
        "copy_ms": (copy_s * 1000.0).round(),
        "updated": rows,
        "max_rss_mb": (max_rss_mb * 10.0).round() / 10.0,
        "file_mb": (std::fs::metadata(&next)?.len() as f64 / 1048576.0 * 10.0).round() / 10.0,
    }))
}
