//! Traces: a bridge and a worker, as processes with the standard OpenTelemetry settings, export
//! their spans over OTLP/HTTP (protobuf) to a receiver running inside the test. One subscription
//! event is one trace from the bridge to the commit, and the simulator saw the same trace id in
//! the history request's `traceparent`; a retried job's attempts are all in its event's trace.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

use crate::helpers::{
    spawn_broken_ticker, spawn_process, spawn_process_logging_to, wait_until, AppOptions, ChildGuard, TestApp,
};

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Got {
    trace: String,
    id: String,
    parent: String,
    name: String,
    service: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An OTLP/HTTP receiver on loopback: `POST /v1/traces` with a protobuf body. Its address and
/// what it received.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>) {
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let Ok(req) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let mut spans = keep.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            spans.push(Got {
                                trace: hex(&s.trace_id),
                                id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                name: s.name,
                                service: service.clone(),
                            });
                        }
                    }
                }
                (axum::http::StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// A bridge and a worker exporting to `endpoint` (every 100 ms); the worker logs to `log`.
fn traced_processes(app: &TestApp, endpoint: &str, log: &std::path::Path) -> (ChildGuard, ChildGuard) {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("TICKFILL_RETRY_BASE", "1s"),
        ("ADMIN_LISTEN", "127.0.0.1:0"),
        ("LOG_FORMAT", "json"),
    ];
    (spawn_process(app, "bridge", &env), spawn_process_logging_to(app, "worker", log, &env))
}

fn log_file() -> std::path::PathBuf {
    let id = uuid::Uuid::new_v4().simple().to_string();
    std::env::temp_dir().join(format!("tickfill-it-traces-{}.log", &id[..10]))
}

/// The spans of one trace, by id.
fn trace_of(spans: &[Got], trace: &str) -> HashMap<String, Got> {
    spans.iter().filter(|s| s.trace == trace).map(|s| (s.id.clone(), s.clone())).collect()
}

/// Whether `span` has `ancestor` above it in `trace`.
fn descends(trace: &HashMap<String, Got>, span: &Got, ancestor: &str) -> bool {
    let mut at = span.parent.clone();
    while let Some(p) = trace.get(&at) {
        if p.id == ancestor {
            return true;
        }
        at = p.parent.clone();
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_from_the_bridge_to_the_commit_and_the_ticker_saw_it() {
    let (endpoint, got) = receiver().await;
    let app = TestApp::spawn_with(AppOptions { start_bridge: false, start_worker: false, ..Default::default() }).await;
    let log = log_file();
    let _procs = traced_processes(&app, &endpoint, &log);
    app.wait_bridges(30, 1).await;
    assert_eq!(app.subscribe_via_sim(256265).await, 201);
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE reason = 'subscribe' AND outcome = 'stored'", 1).await;

    let want = ["bridge.event", "queue.wait", "job", "budget.wait", "ticker.history", "ticker.parse", "store.write"];
    let mut trace = HashMap::new();
    wait_until(30, "the event's spans to be exported", || {
        let spans = got.lock().unwrap().clone();
        trace = spans
            .iter()
            .find(|s| s.name == "bridge.event")
            .map(|root| trace_of(&spans, &root.trace))
            .unwrap_or_default();
        let names: Vec<&str> = trace.values().map(|s| s.name.as_str()).collect();
        let ok = want.iter().all(|w| names.contains(w));
        async move { ok }
    })
    .await;
    let by_name = |n: &str| trace.values().find(|s| s.name == n).unwrap().clone();
    let mut tree: Vec<String> = trace
        .values()
        .map(|s| {
            format!("{} {} <- {} ({})", s.id, s.name, trace.get(&s.parent).map_or("-", |p| p.name.as_str()), s.service)
        })
        .collect();
    tree.sort();
    eprintln!("the event's trace:\n{}", tree.join("\n"));
    let (root, job) = (by_name("bridge.event"), by_name("job"));
    assert!(root.parent.is_empty() || root.parent == "0000000000000000", "the event starts its trace: {root:?}");
    assert!(root.service.contains("tickfill-bridge"), "{root:?}");
    assert!(job.service.contains("tickfill-worker"), "{job:?}");
    assert_eq!(job.parent, root.id, "the attempt is a child of the bridge's event");
    assert_eq!(by_name("queue.wait").parent, root.id, "the queue wait is a child of the event");
    for n in ["budget.wait", "ticker.history", "store.write"] {
        assert!(descends(&trace, &by_name(n), &job.id), "{n} is not under the attempt");
    }
    assert!(descends(&trace, &by_name("ticker.parse"), &by_name("ticker.history").id));
    // Every exported span of the event is in this one trace.
    let all = got.lock().unwrap().clone();
    assert_eq!(all.iter().filter(|s| s.name == "bridge.event").count(), 1, "one event, one trace");
    // The simulator saw the trace in the history request's traceparent.
    let stats = app.sim_stats().await;
    let seen: Vec<String> =
        stats["traceparents"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let history = by_name("ticker.history");
    assert!(
        seen.iter()
            .any(|tp| tp.split('-').nth(1) == Some(root.trace.as_str())
                && tp.split('-').nth(2) == Some(history.id.as_str())),
        "the ticker got no traceparent of trace {} (span {}): {seen:?}",
        root.trace,
        history.id
    );
    // The worker's log lines of the job carry the trace id.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let committed = text.lines().find(|l| l.contains("backfill committed")).unwrap_or("");
    assert!(committed.contains(&format!("\"trace_id\":\"{}\"", root.trace)), "{committed}");
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_failed_then_succeeded_shows_both_attempts_in_its_events_trace() {
    let (endpoint, got) = receiver().await;
    let broken = spawn_broken_ticker().await;
    let app = TestApp::spawn_with(AppOptions {
        ticker_url: Some(broken),
        start_bridge: false,
        start_worker: false,
        ..Default::default()
    })
    .await;
    let log = log_file();
    let _procs = traced_processes(&app, &endpoint, &log);
    app.wait_bridges(30, 1).await;
    app.publish(r#"{"event_type":"subscription_created","instrument_token":1007,"metadata":{"tradingsymbol":"FLAKY","segment":"NSE"},"timestamp":1}"#)
        .await;
    app.wait_count(30, "SELECT count(*) FROM backfill_runs WHERE instrument_token = 1007 AND outcome = 'stored'", 1)
        .await;
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM backfill_runs WHERE instrument_token = 1007")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(attempts >= 2, "the job did not fail first");
    wait_until(30, "every attempt's span in the event's trace", || {
        let spans = got.lock().unwrap().clone();
        let ok = spans.iter().find(|s| s.name == "bridge.event").is_some_and(|root| {
            let jobs = spans.iter().filter(|s| s.trace == root.trace && s.name == "job" && s.parent == root.id).count();
            jobs == attempts as usize
        });
        async move { ok }
    })
    .await;
    let _ = std::fs::remove_file(&log);
}
