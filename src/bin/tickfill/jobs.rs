//! `tickfill jobs`: queue figures, dead letters (list, show, retry, purge) and lifting a pause.

use clap::Subcommand;
use tickfill::{
    config::{self, Settings},
    domain::text::inert,
    jobs::JobKind,
    queue,
};

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Per lane: pending, scheduled, running, done, oldest pending age.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Jobs that failed for good.
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
    /// Resume a paused lane or job kind; without either, lift the pause of history requests
    /// (after renewing an expired Kite session).
    Resume {
        #[arg(long, value_parser = lane, conflicts_with = "kind")]
        lane: Option<tickfill::jobs::Lane>,
        #[arg(long)]
        kind: Option<JobKind>,
    },
    /// Pause a lane (its jobs are held where they are picked up) or a job kind (its jobs wait),
    /// fleet-wide, until `tickfill jobs resume`.
    Pause {
        #[arg(long, value_parser = lane, conflicts_with = "kind", required_unless_present = "kind")]
        lane: Option<tickfill::jobs::Lane>,
        #[arg(long)]
        kind: Option<JobKind>,
        /// A lane's running jobs finish; `tickfill jobs stats` says when none is left.
        #[arg(long, requires = "lane")]
        drain: bool,
    },
    /// Push the dead jobs the filter matches again (at most --cap, oldest first).
    Retry(Box<BulkArgs>),
    /// Forget the dead jobs the filter matches.
    Purge(Box<BulkArgs>),
    /// Drop the waiting (pending or scheduled) jobs the filter matches.
    Cancel(Box<BulkArgs>),
    /// Every job, queued or finished, that the filter lets through, newest first.
    List {
        #[command(flatten)]
        filter: Box<FilterArgs>,
        /// Jobs per page (1 … 1000).
        #[arg(long, default_value_t = tickfill::explore::DEFAULT_LIMIT)]
        limit: usize,
        /// The `next` cursor of the page before.
        #[arg(long)]
        cursor: Option<String>,
        /// `{"matched", "jobs", "next"}`, as `GET /api/jobs` answers.
        #[arg(long)]
        json: bool,
    },
}

/// A bulk action's flags: which jobs, and how.
#[derive(clap::Args, Debug)]
pub struct BulkArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Say how many would be acted on, and show some; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Act although the filter narrows nothing (every dead or waiting job).
    #[arg(long)]
    all: bool,
    /// Act on at most this many (the oldest), 1 … 10000.
    #[arg(long, default_value_t = tickfill::explore::DEFAULT_CAP)]
    cap: usize,
    /// The answer as `POST /api/jobs/{action}` gives it.
    #[arg(long)]
    json: bool,
}

/// The job filter, as flags (each checked as the API checks its query parameter).
#[derive(clap::Args, Debug, Default)]
pub struct FilterArgs {
    /// An instrument token.
    #[arg(long, value_parser = |v: &str| checked("token", v))]
    token: Option<String>,
    /// A tradingsymbol, or an underlying (every contract of it).
    #[arg(long, value_parser = |v: &str| checked("symbol", v))]
    symbol: Option<String>,
    /// subscribed, unsubscribed, backfill, sweep or chain_metrics.
    #[arg(long, value_parser = |v: &str| checked("kind", v))]
    kind: Option<String>,
    /// urgent or bulk.
    #[arg(long, value_parser = |v: &str| checked("lane", v))]
    lane: Option<String>,
    /// pending, scheduled, running, dead or finished.
    #[arg(long, value_parser = |v: &str| checked("state", v))]
    state: Option<String>,
    /// Text the job's error holds (case-insensitive).
    #[arg(long, value_parser = |v: &str| checked("error", v))]
    error: Option<String>,
    /// Made (queued) or finished (runs) at or after this instant (RFC 3339).
    #[arg(long, value_parser = |v: &str| checked("from", v))]
    from: Option<String>,
    /// … and before this one.
    #[arg(long, value_parser = |v: &str| checked("to", v))]
    to: Option<String>,
    /// At least this many attempts.
    #[arg(long, value_parser = |v: &str| checked("min_attempts", v))]
    min_attempts: Option<String>,
}

/// One filter flag, checked as the API checks its query parameter (a bad one exits 2).
fn checked(name: &str, value: &str) -> Result<String, String> {
    tickfill::domain::filter::JobFilter::from_pairs([(name, value)], &[]).map_err(|e| e.reason)?;
    Ok(value.to_string())
}

impl FilterArgs {
    pub fn filter(&self) -> anyhow::Result<tickfill::domain::filter::JobFilter> {
        let pairs = [
            ("token", &self.token),
            ("symbol", &self.symbol),
            ("kind", &self.kind),
            ("lane", &self.lane),
            ("state", &self.state),
            ("error", &self.error),
            ("from", &self.from),
            ("to", &self.to),
            ("min_attempts", &self.min_attempts),
        ];
        let given = pairs.iter().filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)));
        Ok(tickfill::domain::filter::JobFilter::from_pairs(given, &[])?)
    }
}

#[derive(Subcommand)]
pub enum DeadCommand {
    /// id, kind, token, attempts, error, failed at.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One dead job in full (payload and metadata), as JSON.
    Show { id: String },
    /// Push dead jobs again as new jobs.
    Retry {
        /// The job to retry.
        id: Option<String>,
        #[arg(long, conflicts_with_all = ["id", "kind"])]
        all: bool,
        /// Every dead job of this kind (subscribed, backfill, sweep, …).
        #[arg(long, conflicts_with = "id")]
        kind: Option<JobKind>,
    },
    /// Forget dead jobs.
    Purge {
        /// Those that failed longer ago than this (90s, 5m, 2h, 7d).
        #[arg(long, value_parser = tickfill::config::parse_duration, conflicts_with = "all")]
        older_than: Option<std::time::Duration>,
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(settings: Settings, command: JobsCommand) -> anyhow::Result<()> {
    let mut conn = queue::connect(&settings.redis).await?;
    let ns = settings.queue.name.clone();
    match command {
        JobsCommand::Retry(a) => run_bulk(&settings, &mut conn, tickfill::explore::Action::Retry, &a).await?,
        JobsCommand::Purge(a) => run_bulk(&settings, &mut conn, tickfill::explore::Action::Purge, &a).await?,
        JobsCommand::Cancel(a) => run_bulk(&settings, &mut conn, tickfill::explore::Action::Cancel, &a).await?,
        JobsCommand::List { filter, limit, cursor, json } => {
            let filter = filter.filter()?;
            anyhow::ensure!(
                (1..=tickfill::explore::MAX_LIMIT).contains(&limit),
                "--limit must be 1 … {}",
                tickfill::explore::MAX_LIMIT
            );
            let pool = tickfill::store::connect(settings.store.database_url.expose(), 2).await?;
            let page = tickfill::explore::list(&mut conn, &ns, Some(&pool), &filter, limit, cursor.as_deref()).await?;
            if json {
                say!("{}", serde_json::to_string(&page)?);
            } else {
                say!("{} matched", page.matched);
                for j in &page.jobs {
                    say!(
                        "{}  {:<9} {:<6} {:<13} {:>10}  attempts {}  {}  {}",
                        j.id,
                        j.state,
                        j.lane.map(|l| l.as_str()).unwrap_or("-"),
                        inert(&j.kind, 40),
                        j.token.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        j.attempts,
                        j.at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                        inert(j.error.as_deref().or(j.outcome.as_deref()).unwrap_or_default(), 300)
                    );
                }
                if let Some(next) = &page.next {
                    say!("more: --cursor {next}");
                }
            }
        }
        JobsCommand::Pause { lane, kind, drain } => {
            let target = match (lane, kind) {
                (Some(l), _) => queue::controls::Target::Lane(l),
                (None, Some(k)) => queue::controls::Target::Kind(k),
                (None, None) => anyhow::bail!("say which: --lane L or --kind K"),
            };
            let what = describe(target);
            let changed = queue::controls::pause(&mut conn, &ns, target, "cli", drain).await?;
            record_control(&settings, target, if drain { "drain" } else { "pause" }, changed).await;
            if changed {
                say!("{what} {}", if drain { "draining" } else { "paused" });
            } else {
                say!("{what} was paused already");
            }
        }
        JobsCommand::Resume { lane: Some(l), .. } => {
            resume_target(&settings, &mut conn, &ns, queue::controls::Target::Lane(l)).await?
        }
        JobsCommand::Resume { kind: Some(k), .. } => {
            resume_target(&settings, &mut conn, &ns, queue::controls::Target::Kind(k)).await?
        }
        JobsCommand::Resume { .. } => {
            if queue::lift_halt(&mut conn, &ns).await? {
                say!("history requests resumed");
            } else {
                say!("history requests were not paused");
            }
        }
        JobsCommand::Stats { json } => {
            let stats = queue::stats::stats(&mut conn, &ns).await?;
            if json {
                say!("{}", serde_json::to_string(&stats)?);
            } else {
                if let Some(p) = &queue::requests_halted(&mut conn, &ns).await? {
                    say!(
                        "PAUSED: {} (since {}); renew the session, then run `tickfill jobs resume`\n",
                        p["reason"].as_str().unwrap_or("?"),
                        p["since"].as_str().unwrap_or("?")
                    );
                }
                say!(
                    "{:<7} {:>8} {:>9} {:>8} {:>8} {:>6}  oldest pending",
                    "lane",
                    "pending",
                    "scheduled",
                    "running",
                    "done",
                    "dead"
                );
                for s in &stats {
                    let age = s.oldest_pending_age_s.map(|a| format!("{a:.1}s")).unwrap_or_else(|| "-".into());
                    let paused = match &s.paused {
                        Some(p) if p.drain => format!("  DRAINING since {} ({} running)", p.since, s.running),
                        Some(p) => format!("  PAUSED since {}", p.since),
                        None => String::new(),
                    };
                    say!(
                        "{:<7} {:>8} {:>9} {:>8} {:>8} {:>6}  {age}{paused}",
                        s.lane,
                        s.pending,
                        s.scheduled,
                        s.running,
                        s.done,
                        s.dead
                    );
                }
                if let Some(first) = stats.first().filter(|s| !s.paused_kinds.is_empty()) {
                    say!("paused kinds: {}", first.paused_kinds.join(", "));
                }
            }
        }
        JobsCommand::Dead { command: DeadCommand::List { json } } => {
            let list = queue::dead::list(&mut conn, &ns).await?;
            if json {
                say!("{}", serde_json::to_string(&list)?);
            } else if list.is_empty() {
                say!("no dead jobs");
            } else {
                for d in list {
                    say!(
                        "{}  {:<6} {:<13} {:>10}  attempts {}  {}  {}",
                        d.id,
                        d.lane,
                        inert(&d.kind, 40),
                        d.token.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                        d.attempts,
                        d.failed_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
                        // What a ticker said, shown, never obeyed by the terminal.
                        inert(d.error.as_deref().unwrap_or_default(), 500)
                    );
                }
            }
        }
        JobsCommand::Dead { command: DeadCommand::Show { id } } => {
            match queue::dead::show(&mut conn, &ns, &id).await? {
                Some(d) => say!("{}", serde_json::to_string_pretty(&d)?),
                None => anyhow::bail!("no dead job {id}"),
            }
        }
        JobsCommand::Dead { command: DeadCommand::Retry { id, all, kind } } => {
            let list = queue::dead::list(&mut conn, &ns).await?;
            let chosen: Vec<queue::dead::DeadJob> = match (id, all, kind) {
                (Some(id), _, _) => {
                    let one: Vec<_> = list.into_iter().filter(|d| d.id == id).collect();
                    anyhow::ensure!(!one.is_empty(), "no dead job {id}");
                    one
                }
                (None, true, _) => list,
                (None, false, Some(k)) => list.into_iter().filter(|d| d.kind == k.as_str()).collect(),
                (None, false, None) => anyhow::bail!("say which: an ID, --all or --kind K"),
            };
            let mut producer = queue::Producer::new(conn.clone(), &settings);
            let report = queue::dead::retry(&mut conn, &mut producer, &ns, &chosen).await;
            for r in &report.retried {
                eprintln!("retried {} as {}", r.id, r.new_id);
            }
            for f in &report.failed {
                eprintln!("not retried {}: {}", f.id, inert(&f.error, 500));
            }
            if !report.taken.is_empty() {
                eprintln!("{} dead job(s) were taken by another retry or purge first", report.taken.len());
            }
            let ids: Vec<&str> = chosen.iter().map(|d| d.id.as_str()).collect();
            crate::audit::record(
                &settings,
                "dead.retry",
                serde_json::json!({"ids": ids}),
                Some(chosen.len() as i64),
                Some(report.retried.len() as i64),
                report.failed.is_empty(),
            )
            .await;
            say!("retried {} dead job(s)", report.retried.len());
            anyhow::ensure!(report.failed.is_empty(), "{} dead job(s) could not be retried", report.failed.len());
        }
        JobsCommand::Dead { command: DeadCommand::Purge { older_than, all } } => {
            anyhow::ensure!(all || older_than.is_some(), "say which: --older-than DUR or --all");
            let before =
                older_than.map(|d| config::ago(chrono::Utc::now(), d)).transpose().map_err(anyhow::Error::msg)?;
            let n = queue::dead::purge(&mut conn, &ns, before).await?;
            let target = serde_json::json!({"older_than": older_than.map(|d| humantime::format_duration(d).to_string()), "all": all});
            crate::audit::record(&settings, "dead.purge", target, None, Some(n as i64), true).await;
            say!("purged {n} dead job(s)");
        }
    }
    Ok(())
}

/// `tickfill jobs retry|purge|cancel`: a bulk action on the jobs a filter matches.
async fn run_bulk(
    settings: &Settings,
    conn: &mut tickfill::queue::RedisConn,
    action: tickfill::explore::Action,
    a: &BulkArgs,
) -> anyhow::Result<()> {
    let filter = a.filter.filter()?;
    let pool = tickfill::store::connect(settings.store.database_url.expose(), 2).await?;
    let mut producer = queue::Producer::new(conn.clone(), settings);
    let answer = tickfill::explore::bulk(
        conn,
        &settings.queue.name,
        Some(&pool),
        &mut producer,
        action,
        &filter,
        a.all,
        a.cap,
        a.dry_run,
    )
    .await?;
    if !a.dry_run {
        let failed = answer.failed.as_ref().map_or(0, Vec::len);
        let target = serde_json::json!({"filter": filter, "all": a.all, "cap": a.cap});
        let (matched, acted) = (Some(answer.matched as i64), answer.acted.map(|n| n as i64));
        crate::audit::record(settings, &format!("jobs.{}", action.as_str()), target, matched, acted, failed == 0).await;
    }
    if a.json {
        say!("{}", serde_json::to_string(&answer)?);
    } else if a.dry_run {
        say!(
            "would {} {} of {} matched job(s) (cap {}); nothing changed",
            action.as_str(),
            answer.would_act.unwrap_or(0),
            answer.matched,
            answer.cap
        );
        for j in answer.sample.iter().flatten() {
            say!(
                "  {}  {:<9} {:<13} {}",
                j.id,
                j.state,
                inert(&j.kind, 40),
                j.token.map(|t| t.to_string()).unwrap_or_default()
            );
        }
    } else {
        for f in answer.failed.iter().flatten() {
            eprintln!("not done {}: {}", f.id, inert(&f.error, 300));
        }
        say!(
            "{}: {} of {} matched job(s); {} taken by others first; {} left beyond the cap",
            action.as_str(),
            answer.acted.unwrap_or(0),
            answer.matched,
            answer.taken_by_others.unwrap_or(0),
            answer.remaining
        );
        let failed = answer.failed.as_ref().map_or(0, Vec::len);
        anyhow::ensure!(failed == 0, "{failed} job(s) could not be acted on");
    }
    Ok(())
}

/// `--lane`: urgent or bulk.
fn lane(s: &str) -> Result<tickfill::jobs::Lane, String> {
    tickfill::jobs::Lane::parse(s).ok_or_else(|| "urgent or bulk".into())
}

/// Records a pause, drain or resume in the audit, named as the API's route names it.
async fn record_control(settings: &Settings, target: queue::controls::Target, action: &str, changed: bool) {
    let name = format!("{}.{action}", path_of(target));
    crate::audit::record(settings, &name, serde_json::json!({}), None, Some(changed as i64), true).await;
}

/// The target as the API's path names it: `lanes.bulk`, `kinds.sweep`, `sweeps`.
pub fn path_of(target: queue::controls::Target) -> String {
    match target {
        queue::controls::Target::Lane(l) => format!("lanes.{}", l.as_str()),
        queue::controls::Target::Kind(k) => format!("kinds.{}", k.as_str()),
        queue::controls::Target::Sweeps => "sweeps".into(),
    }
}

fn describe(target: queue::controls::Target) -> String {
    match target {
        queue::controls::Target::Lane(l) => format!("the {} lane", l.as_str()),
        queue::controls::Target::Kind(k) => format!("jobs of kind {}", k.as_str()),
        queue::controls::Target::Sweeps => "sweeps".into(),
    }
}

async fn resume_target(
    settings: &Settings,
    conn: &mut tickfill::queue::RedisConn,
    ns: &str,
    target: queue::controls::Target,
) -> anyhow::Result<()> {
    let what = describe(target);
    let changed = queue::controls::resume(conn, ns, target).await?;
    record_control(settings, target, "resume", changed).await;
    if changed {
        say!("{what} resumed");
    } else {
        say!("{what} was not paused");
    }
    Ok(())
}
