//! `tickfill status` and `tickfill chain`: what the store holds, for a person or as JSON.

use chrono::{DateTime, NaiveDate, Utc};
use tickfill::jobs::InstrumentToken;
use tickfill::{
    config::Settings,
    domain::{market::normalise_underlying, window::Window},
    store,
};

use crate::args;

/// The longest span `tickfill quality` reads at once.
const QUALITY_MAX_DAYS: i64 = 400;

#[derive(clap::Args)]
pub struct QualityArgs {
    /// The instrument token.
    #[arg(long, value_parser = InstrumentToken::parse)]
    token: InstrumentToken,
    /// Start (RFC 3339); default the start of the token's wanted window when it is subscribed,
    /// else `BACKFILL_LOOKBACK` before `--to`.
    #[arg(long, value_parser = args::instant)]
    from: Option<DateTime<Utc>>,
    /// End (RFC 3339); default now.
    #[arg(long, value_parser = args::instant)]
    to: Option<DateTime<Utc>>,
    /// One JSON object per day.
    #[arg(long)]
    json: bool,
}

/// One instrument's days, by IST date.
pub async fn run_quality(settings: Settings, a: QualityArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let to = a.to.unwrap_or(now);
    let pool = store::connect(settings.store.database_url.expose(), 2).await?;
    let from = match a.from {
        Some(f) => f,
        None => tickfill::status::wanted_start(&pool, &settings, a.token, to).await?,
    };
    let usage = |msg: String| {
        use clap::CommandFactory;
        crate::Cli::command().error(clap::error::ErrorKind::ValueValidation, msg).exit()
    };
    if from >= to {
        usage(format!("--from {from} is not before --to {to}"));
    }
    if to - from > chrono::Duration::days(QUALITY_MAX_DAYS) {
        usage(format!("--from {from} to --to {to} spans more than {QUALITY_MAX_DAYS} days"));
    }
    let days = tickfill::status::quality(&pool, &settings, a.token, Window::new(from, to), now).await?;
    if a.json {
        say!("{}", serde_json::to_string(&days)?);
        return Ok(());
    }
    say!(
        "{:<10}  {:<8} {:>8} {:>6} {:>8} {:>8} {:>6}  {:>9}  checked (UTC)",
        "day (IST)",
        "state",
        "trading",
        "bars",
        "covered",
        "suspect",
        "empty",
        "revisions"
    );
    for d in &days {
        let f = &d.facts;
        say!(
            "{:<10}  {:<8} {:>7}m {:>6} {:>7}m {:>7}m {:>5}m  {:>9}  {}{}",
            f.date,
            d.state.as_str(),
            f.trading_minutes,
            d.bars,
            f.covered_minutes,
            f.suspect_minutes,
            f.confirmed_empty_minutes,
            f.revisions,
            f.checked_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "-".into()),
            f.adjustment.map(|r| format!("  adjusted ×{r:.4}")).unwrap_or_default(),
        );
    }
    Ok(())
}

/// Per active subscription: newest bar, its age, coverage holes, last outcome.
pub async fn run_status(settings: Settings, json: bool) -> anyhow::Result<()> {
    let pool = store::connect(settings.store.database_url.expose(), 2).await?;
    let rows = tickfill::status::status(&pool, &settings, Utc::now()).await?;
    if json {
        say!("{}", serde_json::to_string(&rows)?);
    } else {
        print_status(&rows);
    }
    Ok(())
}

/// One expiry's chain at a minute (default the latest).
pub async fn run_chain(
    settings: Settings,
    underlying: &str,
    expiry: NaiveDate,
    at: Option<DateTime<Utc>>,
    json: bool,
) -> anyhow::Result<()> {
    let pool = store::connect(settings.store.database_url.expose(), 2).await?;
    let symbol = normalise_underlying(underlying);
    let view = store::chain::view(&pool, &symbol, expiry, at.unwrap_or_else(Utc::now)).await?;
    match (view, json) {
        (None, true) => say!("null"),
        (None, false) => say!("no chain metrics for {symbol} {expiry}"),
        (Some(v), true) => say!("{}", serde_json::to_string(&v)?),
        (Some(v), false) => print_chain(&v),
    }
    Ok(())
}

fn print_status(rows: &[tickfill::status::SubscriptionStatus]) {
    if rows.is_empty() {
        say!("no active subscriptions");
        return;
    }
    say!(
        "{:>10}  {:<22} {:<20} {:>9}  {:>5} {:>8} {:>8}  {:<28} last run",
        "token",
        "symbol",
        "newest bar (UTC)",
        "age",
        "holes",
        "missing",
        "suspect",
        "days"
    );
    for r in rows {
        say!(
            "{:>10}  {:<22} {:<20} {:>9}  {:>5} {:>7}m {:>7}m  {:<28} {}",
            r.instrument_token,
            r.tradingsymbol.as_deref().unwrap_or("?"),
            r.newest_bar.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "-".into()),
            r.newest_bar_age_s.map(|s| format!("{}m{:02}s", s / 60, s % 60)).unwrap_or_else(|| "-".into()),
            r.holes,
            r.missing_minutes,
            r.suspect_minutes,
            r.days.iter().map(|(s, n)| format!("{n} {}", s.as_str())).collect::<Vec<_>>().join(", "),
            r.last_outcome.as_deref().unwrap_or("-"),
        );
    }
}

fn print_chain(v: &store::chain::ChainView) {
    let f = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
    let i = |x: Option<i64>| x.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    say!(
        "{} {}  at {}  underlying {}  PCR(OI) {}  PCR(vol) {}  max pain {}",
        v.symbol,
        v.expiry,
        v.time.format("%Y-%m-%d %H:%M UTC"),
        f(v.underlying_close),
        v.pcr_oi.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
        v.pcr_volume.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into()),
        f(v.max_pain)
    );
    say!(
        "{:>10} {:>8} {:>10} {:>6} | {:>9} | {:>6} {:>10} {:>8} {:>10}",
        "call OI",
        "vol",
        "close",
        "IV",
        "strike",
        "IV",
        "close",
        "vol",
        "put OI"
    );
    for s in &v.strikes {
        let mark = if Some(s.strike) == v.max_pain { "*" } else { " " };
        say!(
            "{:>10} {:>8} {:>10} {:>6} |{mark}{:>8.1} | {:>6} {:>10} {:>8} {:>10}",
            i(s.call_oi),
            i(s.call_volume),
            f(s.call_close),
            f(s.call_iv),
            s.strike,
            f(s.put_iv),
            f(s.put_close),
            i(s.put_volume),
            i(s.put_oi)
        );
    }
    say!("{:>10} total call OI, {} total put OI; * = max pain", v.call_oi, v.put_oi);
}
