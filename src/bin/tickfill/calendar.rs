//! `tickfill calendar --exchange X --year Y [--json]`: an exchange's sessions, day by day.

use chrono::{Datelike, NaiveDate};
use serde_json::json;
use tickfill::{
    config::Settings,
    domain::calendar::{Day, Exchange},
};

#[derive(clap::Args)]
pub struct CalendarArgs {
    /// NSE, BSE or MCX.
    #[arg(long, value_parser = exchange)]
    exchange: Exchange,
    #[arg(long, value_parser = clap::value_parser!(i32).range(1970..=2199))]
    year: i32,
    /// One JSON object per day of the year: date, trading, open, close (IST), note.
    #[arg(long)]
    json: bool,
}

fn exchange(s: &str) -> Result<Exchange, String> {
    Exchange::parse(s).ok_or_else(|| format!("{s:?} is not an exchange with a calendar (NSE, BSE or MCX)"))
}

pub fn run(settings: &Settings, a: CalendarArgs) -> anyhow::Result<()> {
    let first = NaiveDate::from_ymd_opt(a.year, 1, 1).expect("a valid year");
    let days: Vec<Day> = first
        .iter_days()
        .take_while(|d| d.year() == a.year)
        .map(|d| settings.backfill.calendars.day(a.exchange, d))
        .collect();
    if !settings.backfill.calendars.has_data(a.exchange, a.year) {
        eprintln!(
            "tickfill: no holidays known for {} {}: every weekday is shown as a regular session (TICKFILL_CALENDAR_FILE adds them)",
            a.exchange.as_str(),
            a.year
        );
    }
    let hm = |t: chrono::NaiveTime| t.format("%H:%M").to_string();
    if a.json {
        let out: Vec<_> = days
            .iter()
            .map(|d| {
                json!({
                    "date": d.date.to_string(),
                    "trading": !d.sessions.is_empty(),
                    "open": d.sessions.first().map(|s| hm(s.open)),
                    "close": d.sessions.last().map(|s| hm(s.close)),
                    "note": d.note,
                })
            })
            .collect();
        say!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let trading = days.iter().filter(|d| !d.sessions.is_empty()).count();
    say!("{} {}: {trading} trading days (times IST)", a.exchange.as_str(), a.year);
    for d in &days {
        let sessions: Vec<String> = d.sessions.iter().map(|s| format!("{}-{}", hm(s.open), hm(s.close))).collect();
        let what = if sessions.is_empty() { "closed".to_string() } else { sessions.join(",") };
        say!("{} {} {:<24} {}", d.date, d.date.format("%a"), what, d.note.as_deref().unwrap_or(""));
    }
    Ok(())
}
