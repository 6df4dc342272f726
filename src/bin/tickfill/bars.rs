//! `tickfill bars`: one instrument's bars at a timeframe (the stored minutes or a rollup), for a
//! person (`table`) or a pipe (`csv`, `json`). Rows stream from the database to stdout, so a long
//! window prints in constant memory.

use chrono::{DateTime, SecondsFormat, Utc};
use tickfill::jobs::InstrumentToken;
use tickfill::{
    config::Settings,
    domain::{timeframe::Timeframe, window::Window},
    store::{self, rollups},
};

use crate::args;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(clap::Args)]
pub struct BarsArgs {
    /// The instrument token.
    #[arg(long, value_parser = InstrumentToken::parse, required_unless_present = "symbol")]
    token: Option<InstrumentToken>,
    /// Every instrument of this tradingsymbol instead (NSE:INFY and BSE:INFY are two): each row
    /// then names its instrument (token and exchange).
    #[arg(long, conflicts_with = "token")]
    symbol: Option<String>,
    /// The timeframe: 1m (the stored minutes), 5m, 15m, 1h (from 09:15 IST) or 1d (the IST day).
    #[arg(long, default_value = "1m", value_parser = Timeframe::parse)]
    tf: Timeframe,
    /// The first bucket start to show (RFC 3339); default one day before `--to`.
    #[arg(long, value_parser = args::instant)]
    from: Option<DateTime<Utc>>,
    /// Show buckets that start before this (RFC 3339); default now.
    #[arg(long, value_parser = args::instant)]
    to: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

pub async fn run(settings: Settings, a: BarsArgs) -> anyhow::Result<()> {
    let to = a.to.unwrap_or_else(Utc::now);
    let from = a.from.unwrap_or(to - chrono::Duration::days(1));
    if from >= to {
        use clap::CommandFactory;
        crate::Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, format!("--from {from} is not before --to {to}"))
            .exit()
    }
    let pool = store::connect(settings.store.database_url.expose(), 1).await?;
    // Each instrument to show, with its exchange when rows must name it.
    let shown: Vec<(InstrumentToken, Option<Option<String>>)> = match (&a.token, &a.symbol) {
        (Some(t), _) => vec![(*t, None)],
        (None, Some(sym)) => {
            let found = store::instruments::find_by_tradingsymbol(&pool, sym).await?;
            anyhow::ensure!(!found.is_empty(), "no instrument is named {:?}", sym);
            found.into_iter().map(|(t, e)| (t, Some(e))).collect()
        }
        (None, None) => anyhow::bail!("give --token or --symbol"),
    };
    let mut tables = Vec::new();
    for (token, exchange) in &shown {
        match store::bars::table_of(&pool, *token).await? {
            Some(table) => tables.push((*token, exchange.clone(), table)),
            None if a.token.is_some() => {
                anyhow::bail!("token {token} has no bars in minute_bars, futures_bars or option_bars")
            }
            None => {}
        }
    }
    if tables.is_empty() {
        anyhow::bail!("no instrument named {:?} has bars", a.symbol.as_deref().unwrap_or_default());
    }
    let labelled = a.symbol.is_some();
    let has_oi = tables.iter().any(|(_, _, t)| *t != "minute_bars");
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    // A header or a bar as cells, the time first; table and CSV lay out the same cells.
    let line = |cells: Vec<String>| match a.format {
        Format::Table => {
            let rest: Vec<String> = cells[1..].iter().map(|c| format!("{c:>12}")).collect();
            format!("{:<20}  {}", cells[0], rest.join(" "))
        }
        _ => cells.join(","),
    };
    let mut header: Vec<String> = ["time", "open", "high", "low", "close", "volume"].map(String::from).into();
    if has_oi {
        header.push("oi".into());
    }
    if labelled {
        header.extend(["instrument_token".to_string(), "exchange".to_string()]);
    }
    match a.format {
        Format::Table => say!("{}", line([vec!["time (UTC)".to_string()], header[1..].to_vec()].concat())),
        Format::Csv => say!("{}", line(header)),
        Format::Json => say!("["),
    }
    let mut first = true;
    for (token, exchange, table) in tables {
        let family = rollups::bar_family(table).expect("every bar table has rollups");
        let exchange = exchange.flatten().unwrap_or_default();
        rollups::read_bars(&pool, family, a.tf, token, Window::new(from, to), |b| {
            if let Format::Json = a.format {
                let mut v = serde_json::to_value(&b)?;
                v["time"] = serde_json::Value::String(time(b.time));
                if labelled {
                    v["instrument_token"] = token.get().into();
                    v["exchange"] = exchange.clone().into();
                }
                say!("{}{}", if first { "" } else { "," }, v);
            } else {
                let mut cells =
                    vec![time(b.time), b.open.to_string(), b.high.to_string(), b.low.to_string(), b.close.to_string()];
                cells.push(b.volume.to_string());
                if has_oi {
                    cells.push(b.oi.flatten().map(|v| v.to_string()).unwrap_or_default());
                }
                if labelled {
                    cells.extend([token.to_string(), exchange.clone()]);
                }
                say!("{}", line(cells));
            }
            first = false;
            Ok(())
        })
        .await?;
    }
    if let Format::Json = a.format {
        say!("]");
    }
    Ok(())
}
