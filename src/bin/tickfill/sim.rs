//! `tickfill sim`: the ticker-service simulator.

use std::net::SocketAddr;

use anyhow::Context;
use tickfill::{config::Settings, shutdown::Shutdown, sim};

use crate::args::fraction;

#[derive(clap::Args)]
pub struct SimArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Add N synthetic instruments to the universe.
    #[arg(long, default_value_t = 0)]
    universe: usize,
    #[arg(long, value_enum, default_value = "always")]
    calendar: sim::Calendar,
    /// Fraction of history requests answered 502.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    error_rate: f64,
    /// Fraction of history requests answered 429 with Retry-After: 1.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    throttle_rate: f64,
    /// Added latency, MIN..MAX or one value, in ms.
    #[arg(long, value_parser = sim::parse_latency)]
    latency_ms: Option<(u64, u64)>,
    /// Answer 429 to history requests above N per second (per account with --accounts).
    #[arg(long)]
    max_rps: Option<u32>,
    /// Serve as several accounts (comma-separated names), each held to --max-rps on its own;
    /// account NAME's Kite app has the key kite_NAME and the secret secret_NAME.
    #[arg(long, value_parser = account_list)]
    accounts: Option<AccountList>,
    /// Every Kite session of the accounts ends at this instant (RFC 3339).
    #[arg(long, value_parser = crate::args::instant)]
    session_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Kite's route answers a throttle as a 200 carrying Kite's error envelope.
    #[arg(long)]
    kite_throttle_200: bool,
    /// The only access token Kite's route accepts (others get 403 TokenException).
    #[arg(long)]
    kite_access_token: Option<String>,
    /// Answer every history request with a 200 of N MiB, streamed without a length.
    #[arg(long, value_name = "N", default_value_t = 0)]
    oversize_mib: u64,
    /// The seed every lie below is drawn from.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of history answers that end early by a random number of minutes.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    truncate_rate: f64,
    /// Fraction of history answers missing a run of up to 30 minutes inside.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    hole_rate: f64,
    /// The newest N minutes appear only N minutes later.
    #[arg(long, value_name = "N", default_value_t = 0)]
    lag_minutes: u32,
    /// That share of the option contracts has no-trade minutes, never served.
    #[arg(long, default_value_t = 0.0, value_parser = fraction)]
    illiquid_share: f64,
    /// History of TOKEN before DATE (IST) is served with prices multiplied by RATIO (repeatable).
    #[arg(long, value_name = "TOKEN:DATE:RATIO", value_parser = sim::lies::parse_adjustment)]
    adjust: Vec<sim::lies::Adjustment>,
}

/// Serves the simulator on `--listen` until SIGTERM or SIGINT.
pub async fn run(settings: Settings, a: SimArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let opts = sim::SimOptions {
        universe: a.universe,
        calendar: a.calendar,
        error_rate: a.error_rate,
        throttle_rate: a.throttle_rate,
        latency_ms: a.latency_ms.unwrap_or((0, 0)),
        max_rps: a.max_rps,
        kite_access_token: a.kite_access_token,
        oversize_mib: a.oversize_mib,
        lies: sim::lies::Lies {
            seed: a.seed,
            truncate_rate: a.truncate_rate,
            hole_rate: a.hole_rate,
            lag_minutes: a.lag_minutes,
            illiquid_share: a.illiquid_share,
            adjust: a.adjust,
        },
        accounts: a.accounts.map(|l| l.0).unwrap_or_default(),
        session_expires_at: a.session_expires_at,
        kite_throttle_200: a.kite_throttle_200,
        redis: Some(settings.redis.clone()),
        channel_prefix: settings.events.channel_prefix.clone(),
    };
    let listener =
        tokio::net::TcpListener::bind(a.listen).await.with_context(|| format!("failed to bind {}", a.listen))?;
    sim::serve(listener, opts, shutdown).await
}

/// The names of `--accounts`.
#[derive(Debug, Clone)]
struct AccountList(Vec<String>);

/// `a,b,c`: names of 1-64 of `A-Z a-z 0-9 _ -`, each once.
fn account_list(s: &str) -> Result<AccountList, String> {
    let mut names: Vec<String> = Vec::new();
    for n in s.split(',').map(str::trim) {
        if n.is_empty() || n.len() > 64 || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("{n:?} is not an account name (1-64 of A-Z a-z 0-9 _ -)"));
        }
        if names.iter().any(|x| x == n) {
            return Err(format!("{n:?} is listed twice"));
        }
        names.push(n.to_string());
    }
    Ok(AccountList(names))
}
