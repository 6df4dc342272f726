//! Logging and traces. Logs: `tracing` to stderr, level from `LOG_LEVEL`, text or JSON from
//! `LOG_FORMAT`. Traces: with the standard OpenTelemetry settings (`OTEL_EXPORTER_OTLP_ENDPOINT`
//! or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` …) every
//! span is also exported over OTLP/HTTP with protobuf; without them no exporter starts and
//! nothing is paid.
//!
//! One trace per event: the bridge's span of an event is carried in its job's envelope as a W3C
//! `traceparent` ([`traceparent`]); each attempt of the job continues it ([`continue_trace`]), and
//! its history requests carry it on to the ticker.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
    Context,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the trace exporter; dropping it sends what is still buffered.
pub struct Traces(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Traces {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Whether the environment asks for traces.
fn traces_wanted() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Installs the global subscriber once (later calls, in tests, are ignored): logs, and traces when
/// the environment asks for them, as `service` unless `OTEL_SERVICE_NAME` names it.
pub fn init(level: &str, format: LogFormat, service: &str) -> Traces {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,apalis=warn,apalis_core=warn,apalis_redis=warn,hyper=warn,reqwest=warn,\
             opentelemetry=warn,opentelemetry_sdk=warn,opentelemetry_otlp=warn"
        ))
    });
    let provider = if traces_wanted() { provider(service) } else { None };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tickfill")));
    let logs = match format {
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => fmt::layer().json().with_writer(std::io::stderr).boxed(),
    };
    let _ = tracing_subscriber::registry().with(filter).with(otel).with(logs).try_init();
    Traces(provider)
}

fn provider(service: &str) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("tickfill: traces are off: the OTLP exporter could not be built ({e})");
            return None;
        }
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(format!("tickfill-{service}"));
    }
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Some(provider)
}

/// The W3C `traceparent` of the current span, if it is being traced.
pub fn traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Writes the trace id of `span` into its `trace_id` field, so that every log line inside it
/// carries it (nothing when it is not traced).
pub fn mark_trace_id(span: &tracing::Span) {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// The context a `traceparent` names (an empty one for none or a malformed one).
fn context_of(traceparent: Option<&str>) -> Context {
    let mut carrier = HashMap::new();
    if let Some(t) = traceparent {
        carrier.insert("traceparent".to_string(), t.to_string());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// Makes `span` (a job's attempt) a child of the trace `traceparent` names (its event), after a
/// `queue.wait` span from `pushed` to now for its time in the queue; then marks its trace id.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>, pushed: Option<std::time::SystemTime>) {
    use opentelemetry::trace::{Span as _, Tracer as _};
    let cx = context_of(traceparent);
    if cx.span().span_context().is_valid() {
        if let Some(start) = pushed {
            let tracer = opentelemetry::global::tracer("tickfill");
            tracer.span_builder("queue.wait").with_start_time(start).start_with_context(&tracer, &cx).end();
        }
        let _ = span.set_parent(cx);
    }
    mark_trace_id(span);
}
