//! `tickfill calendar`: the exchanges' sessions as the repository's data has them, extended by
//! an operator's file.

use tickfill::config::Settings;

use crate::helpers::run_cli;

fn days(extra: &[(&str, &str)], exchange: &str, year: &str) -> Vec<serde_json::Value> {
    let (code, out, err) =
        run_cli(&Settings::defaults(), &["calendar", "--exchange", exchange, "--year", year, "--json"], extra);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn day<'a>(all: &'a [serde_json::Value], date: &str) -> &'a serde_json::Value {
    all.iter().find(|d| d["date"] == date).unwrap_or_else(|| panic!("{date} missing"))
}

#[test]
fn the_nse_calendar_has_every_day_with_holidays_weekends_and_special_sessions() {
    let nse = days(&[], "NSE", "2026");
    assert_eq!(nse.len(), 365);
    for closed in ["2026-01-26", "2026-03-03", "2026-10-02", "2026-12-25", "2026-12-05", "2026-12-06"] {
        assert_eq!(day(&nse, closed)["trading"], false, "{closed}");
    }
    for open in ["2026-12-01", "2026-11-30", "2026-01-27"] {
        let d = day(&nse, open);
        assert_eq!(
            (d["trading"].clone(), d["open"].clone(), d["close"].clone()),
            (true.into(), "09:15".into(), "15:30".into())
        );
    }
    assert_eq!(day(&nse, "2026-02-01")["note"], "Union Budget (Sunday session)");
    assert_eq!(day(&nse, "2026-01-26")["note"], "Republic Day");
    let mcx = days(&[], "mcx", "2025");
    assert_eq!(day(&mcx, "2025-03-14")["open"], "17:00", "MCX trades the evening of Holi");
    assert_eq!(day(&mcx, "2025-07-01")["close"], "23:30");
    assert_eq!(day(&mcx, "2025-12-01")["close"], "23:55");
}

#[test]
fn an_operator_file_adds_a_session_and_a_bad_one_stops_with_its_line() {
    let dir = std::env::temp_dir().join(format!("tf-cal-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.txt");
    std::fs::write(&good, "exchange NSE\n2026-11-08 open 18:00-19:00 Muhurat trading\n").unwrap();
    let nse = days(&[("TICKFILL_CALENDAR_FILE", good.to_str().unwrap())], "NSE", "2026");
    let muhurat = day(&nse, "2026-11-08");
    assert_eq!((muhurat["open"].as_str(), muhurat["close"].as_str()), (Some("18:00"), Some("19:00")));
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "exchange NSE\n# fine\n2026-11-08 open 19:00-18:00 backwards\n").unwrap();
    let args = ["calendar", "--exchange", "NSE", "--year", "2026"];
    let (code, _, err) = run_cli(&Settings::defaults(), &args, &[("TICKFILL_CALENDAR_FILE", bad.to_str().unwrap())]);
    assert_eq!(code, 2);
    assert!(
        err.contains("TICKFILL_CALENDAR_FILE") && err.contains("line 3") && err.contains("closes before it opens"),
        "{err}"
    );
    for args in
        [&["calendar", "--exchange", "LSE", "--year", "2026"][..], &["calendar", "--exchange", "NSE", "--year", "1900"]]
    {
        assert_eq!(run_cli(&Settings::defaults(), args, &[]).0, 2, "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under the exchange calendar a weekend is neither stale nor missing: a subscription whose
/// coverage ends at Friday's close is fresh all Saturday and has no hole until Monday's open.
#[tokio::test]
async fn a_weekend_is_neither_stale_nor_a_hole() {
    use chrono::{DateTime, Utc};
    use tickfill::{domain::calendar::TradingCalendar, status, store};
    let db = crate::helpers::ScratchDb::new().await;
    store::migrate(&db.pool, &Default::default()).await.unwrap();
    let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    sqlx::query("INSERT INTO instruments (instrument_token, tradingsymbol, segment, exchange) VALUES (11000000, 'NIFTYOPT', 'NFO-OPT', 'NFO')")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO subscriptions (instrument_token, status, subscribed_at) VALUES (11000000, 'active', $1)")
        .bind(t("2026-11-27T13:30:00+05:30"))
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO coverage VALUES (11000000, $1, $2, $3, 120)")
        .bind(t("2026-11-27T11:30:00+05:30"))
        .bind(t("2026-11-27T15:30:00+05:30"))
        .bind(t("2026-11-27T16:00:00+05:30"))
        .execute(&db.pool)
        .await
        .unwrap();
    // Freshness is the age of the newest bar: Friday's last minute, 15:29.
    sqlx::query("INSERT INTO minute_bars VALUES ('NIFTYOPT', $1, 11000000, 1, 1, 1, 1, 0)")
        .bind(t("2026-11-27T15:29:00+05:30"))
        .execute(&db.pool)
        .await
        .unwrap();
    let mut exchange = Settings::defaults();
    exchange.store.database_url = tickfill::config::Secret::new(db.url.clone());
    let saturday = t("2026-11-28T12:00:00+05:30");
    let monday = t("2026-11-30T09:45:00+05:30");
    let f = status::freshness(&db.pool, &exchange, 600.0, saturday).await.unwrap();
    assert_eq!((f.active, f.oldest_age_s, f.stale), (1, 0.0, 0), "a Saturday is no trading time");
    let f = status::freshness(&db.pool, &exchange, 600.0, monday).await.unwrap();
    assert_eq!((f.oldest_age_s, f.stale), (30.0 * 60.0, 1), "Monday's first 30 minutes count");
    let rows = status::status(&db.pool, &exchange, saturday).await.unwrap();
    assert_eq!((rows[0].holes, rows[0].missing_minutes), (0, 0));
    // Friday from the window's start is proved but not checked; Saturday does not trade.
    let states: Vec<(&str, i64)> = rows[0].days.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    assert_eq!(states, vec![("complete", 1), ("closed", 1)]);
    let rows = status::status(&db.pool, &exchange, monday).await.unwrap();
    // 09:15 to the settle margin (09:43): one hole of 28 trading minutes.
    assert_eq!((rows[0].holes, rows[0].missing_minutes), (1, 28));
    // Under `always` the weekend counts minute by minute.
    let mut always = exchange.clone();
    always.backfill.calendar = TradingCalendar::Always;
    let f = status::freshness(&db.pool, &always, 600.0, saturday).await.unwrap();
    assert_eq!(f.oldest_age_s, 20.5 * 3600.0);
    assert_eq!(status::status(&db.pool, &always, saturday).await.unwrap()[0].missing_minutes, 20 * 60 + 28);
}
