//! `/metrics`: Prometheus (OpenMetrics) text, counted from the journal at
//! each scrape, so the numbers survive restarts and agree across services.

use super::Service;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn counter_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

/// The metrics text, or why the journal could not be read.
pub fn render(svc: &Service) -> Result<String, String> {
    let stats = svc.journal().stats().map_err(|e| e.to_string())?;
    let mut registry = Registry::default();
    let runs = counter_family(
        &mut registry,
        "flowc_runs",
        "Runs that ended, by skill and status",
    );
    for (skill, status, n) in &stats.runs {
        runs.get_or_create(&labels(&[("skill", skill), ("status", status)]))
            .inc_by(*n);
    }
    let active: Gauge = Gauge::default();
    active.set(svc.active.load(Ordering::SeqCst) as i64);
    registry.register(
        "flowc_runs_active",
        "Run processes this service drives now",
        active,
    );
    let open = Family::<Labels, Gauge>::default();
    registry.register(
        "flowc_runs_open",
        "Runs that have not ended, by status",
        open.clone(),
    );
    for (status, n) in &stats.open_runs {
        open.get_or_create(&labels(&[("status", status)]))
            .set(*n as i64);
    }
    let steps = counter_family(
        &mut registry,
        "flowc_steps",
        "Step instances that settled, by kind and status",
    );
    for (kind, status, n) in &stats.steps {
        steps
            .get_or_create(&labels(&[("kind", kind), ("status", status)]))
            .inc_by(*n);
    }
    let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.005, 4.0, 10))
    });
    registry.register(
        "flowc_step_duration_seconds",
        "How long step instances ran, by kind",
        durations.clone(),
    );
    for (kind, secs) in &stats.step_seconds {
        durations
            .get_or_create(&labels(&[("kind", kind)]))
            .observe(*secs);
    }
    let fires = counter_family(
        &mut registry,
        "flowc_trigger_fires",
        "Trigger fires by trigger and outcome",
    );
    for (trigger, outcome, n) in &stats.fires {
        fires
            .get_or_create(&labels(&[("trigger", trigger), ("outcome", outcome)]))
            .inc_by(*n);
    }
    let missed = counter_family(
        &mut registry,
        "flowc_schedule_missed",
        "Cron slots missed while no service ran that started no run",
    );
    for (trigger, n) in &stats.missed {
        missed
            .get_or_create(&labels(&[("trigger", trigger)]))
            .inc_by(*n);
    }
    let pending: Gauge = Gauge::default();
    pending.set(stats.approvals_pending as i64);
    registry.register(
        "flowc_approvals_pending",
        "Approvals waiting for a person",
        pending,
    );
    let notices: Family<Labels, Gauge> = Family::default();
    registry.register(
        "flowc_notifications",
        "Notifications in the outbox by status (pending, delivered, failed)",
        notices.clone(),
    );
    for (status, n) in &stats.notifications {
        notices
            .get_or_create(&labels(&[("status", status)]))
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    let tokens = counter_family(
        &mut registry,
        "flowc_llm_tokens",
        "LLM tokens by model and direction",
    );
    let cost = Family::<Labels, Counter<f64, AtomicU64>>::default();
    registry.register(
        "flowc_llm_cost_usd",
        "LLM cost in USD by model",
        cost.clone(),
    );
    for (model, input, output, usd) in &stats.llm {
        tokens
            .get_or_create(&labels(&[("model", model), ("direction", "in")]))
            .inc_by(*input);
        tokens
            .get_or_create(&labels(&[("model", model), ("direction", "out")]))
            .inc_by(*output);
        cost.get_or_create(&labels(&[("model", model)]))
            .inc_by(*usd);
    }
    let mut text = String::new();
    encode(&mut text, &registry).map_err(|e| e.to_string())?;
    Ok(text)
}
