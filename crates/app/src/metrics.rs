//! The process's Prometheus recorder and what `/metrics` reads at each scrape.
//!
//! Counters and histograms are recorded through the `metrics` facade where things happen:
//! requests, rate-limit rejections and sign-ins in the HTTP adapter, the hash pool's queue
//! and wait in the crypto adapter, deliveries in the worker here. The outbox backlog and
//! the database pool are states, read from the store when scraped.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use pwreset_adapter_http::metrics::MetricsSource;
use pwreset_adapter_sql::SqlStore;
use pwreset_domain::ports::OutboxStore;

/// Latency buckets in seconds: 1 ms to 10 s, tighter where requests live.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's recorder, installed once (several applications in one process, as in
/// tests, share it), with its upkeep thread.
fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("the buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder was installed first; /metrics shows only what this one records");
            }
            let upkeep = handle.clone();
            // Folds recorded histogram samples into their buckets, so memory stays flat
            // between scrapes.
            let spawned = std::thread::Builder::new()
                .name("pwreset-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                        upkeep.run_upkeep();
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            handle
        })
        .clone()
}

/// Makes sure the recorder is installed before anything records.
pub fn install() {
    let _ = handle();
}

/// `/metrics` of one application: the recorder's text plus the store's gauges.
#[derive(Debug)]
pub struct Scrape {
    handle: PrometheusHandle,
    store: SqlStore,
}

impl Scrape {
    pub fn source(store: SqlStore) -> Arc<dyn MetricsSource> {
        Arc::new(Self {
            handle: handle(),
            store,
        })
    }
}

#[async_trait::async_trait]
impl MetricsSource for Scrape {
    #[allow(
        clippy::cast_precision_loss,
        reason = "gauge values: counts and ages past 2^52 do not occur"
    )]
    async fn render(&self) -> String {
        let pool = self.store.pool_stats();
        metrics::gauge!("pwreset_db_pool_connections", "state" => "in_use")
            .set(f64::from(pool.connections.saturating_sub(pool.idle)));
        metrics::gauge!("pwreset_db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!("pwreset_db_pool_waiting").set(f64::from(pool.waiting));
        match OutboxStore::backlog(&self.store).await {
            Ok(backlog) => {
                let age = backlog.oldest.map_or(0.0, |oldest| {
                    (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
                });
                metrics::gauge!("pwreset_outbox_pending").set(backlog.pending as f64);
                metrics::gauge!("pwreset_outbox_oldest_pending_age_seconds").set(age);
                metrics::gauge!("pwreset_outbox_backlog_readable").set(1.0);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the outbox backlog");
                metrics::gauge!("pwreset_outbox_backlog_readable").set(0.0);
            }
        }
        self.handle.render()
    }
}

/// Counts one outbox pass's results by outcome.
pub fn record_deliveries(delivered: usize, retrying: usize, dead: usize) {
    for (outcome, n) in [
        ("delivered", delivered),
        ("retrying", retrying),
        ("dead", dead),
    ] {
        metrics::counter!("pwreset_deliveries_total", "outcome" => outcome)
            .increment(u64::try_from(n).unwrap_or(u64::MAX));
    }
}
