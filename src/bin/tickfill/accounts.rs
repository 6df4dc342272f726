//! `tickfill accounts`: every account with its limit, recent grants, waiting requests, session
//! and breaker; `tickfill kite login` and `tickfill kite session set`: a Kite session for an
//! account without restarting anything.

use std::io::Read;

use tickfill::{accounts, config::Settings, config::TickerApi, queue, ticker::TickerClient};

#[derive(clap::Subcommand)]
pub enum KiteCommand {
    /// Print the URL that logs an account in to Kite. Kite then redirects the browser to the app's
    /// redirect URL, which must be `http://ADMIN_HOST:PORT/kite/callback/ACCOUNT` of any running
    /// tickfill process: that stores the session.
    Login {
        #[arg(long)]
        account: String,
    },
    /// Kite sessions set by hand.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
}

#[derive(clap::Subcommand)]
pub enum SessionCommand {
    /// Read an access token from stdin, check it with Kite and store it as the account's session.
    Set {
        #[arg(long)]
        account: String,
    },
}

/// The longest line read from stdin for a token.
const STDIN_CAP: u64 = 4096;

pub async fn run_accounts(settings: Settings, json: bool) -> anyhow::Result<()> {
    let mut conn = queue::connect(&settings.redis).await?;
    let report = accounts::report(&settings, &mut conn).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!("{:<20} {:>8} {:>10} {:>8}  {:<48} breaker", "account", "limit/s", "grants/min", "waiting", "session");
    for a in &report {
        let session = match &a.session {
            queue::accounts::SessionState::Valid { expires_in_s, user, .. } => {
                format!(
                    "valid, expires in {}",
                    humantime::format_duration(std::time::Duration::from_secs(*expires_in_s as u64))
                ) + &if user.is_empty() { String::new() } else { format!(" ({user})") }
            }
            queue::accounts::SessionState::Expired { reason, at } => format!("expired {at}: {reason}"),
            queue::accounts::SessionState::Missing => format!("missing: tickfill kite login --account {}", a.account),
            other => other.label().to_string(),
        };
        let breaker = match a.breaker.open_for_s {
            Some(s) => format!("open {s:.0} s more (level {})", a.breaker.level),
            None => "closed".into(),
        };
        let limit = if a.limit == 0 { "none".to_string() } else { a.limit.to_string() };
        let name = if a.default && a.account != tickfill::config::DEFAULT_ACCOUNT {
            format!("{} (default)", a.account)
        } else {
            a.account.clone()
        };
        println!("{name:<20} {limit:>8} {:>10} {:>8}  {session:<48} {breaker}", a.grants_last_minute, a.waiting);
    }
    Ok(())
}

pub async fn run_kite(settings: Settings, command: KiteCommand) -> anyhow::Result<()> {
    anyhow::ensure!(settings.ticker.api == TickerApi::Kite, "Kite sessions are for TICKER_API=kite");
    match command {
        KiteCommand::Login { account } => {
            let url = accounts::login_url(&settings, &account)?;
            println!("{url}");
            eprintln!(
                "Open it and log in; Kite redirects to the app's redirect URL, which must be \
                 http://<admin host:port>/kite/callback/{account} of a running tickfill process."
            );
            Ok(())
        }
        KiteCommand::Session { command: SessionCommand::Set { account } } => {
            let mut text = String::new();
            std::io::stdin().take(STDIN_CAP).read_to_string(&mut text)?;
            let token = text.lines().next().unwrap_or("").trim();
            anyhow::ensure!(!token.is_empty(), "no access token on stdin");
            let token = tickfill::config::Secret::new(token);
            let mut conn = queue::connect(&settings.redis).await?;
            let kite = TickerClient::new(&settings)?;
            let user = accounts::set_session(&settings, &mut conn, &kite, &account, &token).await?;
            println!(
                "session of account {account} stored (user {}); every worker uses it at its next request",
                user.user_id
            );
            Ok(())
        }
    }
}
