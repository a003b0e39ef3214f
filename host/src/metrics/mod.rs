//! Operator metrics: one Prometheus registry per server instance.
//!
//! [`Metrics`] owns the registry and every metric family the server records into. It is built
//! once by the composition root and handed (as `Arc<Metrics>`) to the parts that count: the
//! listeners, the plugin runtime, the delivery agents, the kv stores. Parts that already keep
//! their own state (the queue, the circuit breakers, the instance pool) are read at scrape time
//! through [`Metrics::gauge_probe`], so they need no metrics code of their own.
//!
//! Why prometheus-client rather than `metrics`: a registry is a value, not a process-global
//! recorder, so two servers in one test process never see each other's counts.
//!
//! - [`http`]: the operator HTTP listener (`/metrics`, `/healthz`, `/readyz`).

pub mod http;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry, Unit};
use std::sync::RwLock;
use std::time::Duration;

/// Declares label sets (the keys of the metric families), one line each: a struct of `pub`
/// fields with the derives a `Family` key needs.
macro_rules! label_sets {
    ($($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ty),+ })+) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            pub struct $name {
                $(pub $field: $ty,)+
            }
        )+
    };
}

label_sets! {
    ListenerLabels { listener: String }
    /// `reason`: `limit_total`, `limit_per_ip`, `proxy_untrusted`, `proxy_malformed`.
    ReasonLabels { listener: String, reason: &'static str }
    /// `outcome`: `queued`, `rejected`, `discarded`, `no_recipients`, `spool_error`.
    OutcomeLabels { outcome: &'static str }
    /// `class`: `2xx`, `3xx`, `4xx`, `5xx`.
    ClassLabels { class: &'static str }
    HookLabels { plugin: String, hook: &'static str }
    /// `outcome`: `delivered`, `deferred`, `failed` (per recipient); `kind`: `maildir`, `lmtp`,
    /// `relay`, `mx`.
    DeliveryLabels { outcome: &'static str, kind: &'static str }
    KindLabels { kind: &'static str }
    /// `type`: the record type asked for (`a`, `mx`, `txt`, `ptr`, ...); `outcome`: `ok`,
    /// `nxdomain`, `error`.
    DnsLabels { r#type: &'static str, outcome: &'static str }
    /// `version`: `TLSv1.3`, `TLSv1.2`, or `failed`.
    TlsLabels { version: String }
    /// `backend`: `memory`, `embedded`, `redis`; `op`: `get`, `put`, `increment`, `delete`;
    /// `outcome`: `ok`, `error`.
    KvLabels { backend: &'static str, op: &'static str, outcome: &'static str }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric family the server records into, and the registry that exposes them.
pub struct Metrics {
    pub connections: Family<ListenerLabels, Counter>,
    pub connections_active: Gauge,
    pub connections_refused: Family<ReasonLabels, Counter>,
    pub transactions: Family<OutcomeLabels, Counter>,
    pub replies: Family<ClassLabels, Counter>,
    pub message_size: Histogram,
    pub messages_accepted: Counter,
    pub hook_calls: Family<HookLabels, Counter>,
    pub hook_failures: Family<HookLabels, Counter>,
    pub hook_duration: HistogramFamily<HookLabels>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub delivery_duration: HistogramFamily<KindLabels>,
    pub dns_lookups: Family<DnsLabels, Counter>,
    pub tls_handshakes: Family<TlsLabels, Counter>,
    pub kv_operations: Family<KvLabels, Counter>,
    registry: RwLock<Registry>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            connections: Family::default(),
            connections_active: Gauge::default(),
            connections_refused: Family::default(),
            transactions: Family::default(),
            replies: Family::default(),
            // 1 KiB .. 64 MiB
            message_size: Histogram::new(exponential_buckets(1024.0, 4.0, 9)),
            messages_accepted: Counter::default(),
            hook_calls: Family::default(),
            hook_failures: Family::default(),
            hook_duration: Family::new_with_constructor(latency_histogram),
            deliveries: Family::default(),
            delivery_duration: Family::new_with_constructor(latency_histogram),
            dns_lookups: Family::default(),
            tls_handshakes: Family::default(),
            kv_operations: Family::default(),
            registry: RwLock::new(Registry::default()),
        };
        // Known label sets start at 0, so every family shows from the first scrape (and rates
        // work from the first event).
        let _ = m.tls_handshakes.get_or_create(&TlsLabels {
            version: "failed".into(),
        });
        for r#type in ["a", "aaaa", "mx", "txt", "ptr"] {
            let _ = m.dns_lookups.get_or_create(&DnsLabels {
                r#type,
                outcome: "error",
            });
        }
        // Counters get their `_total` suffix from the encoder.
        #[rustfmt::skip]
        let families: [(&str, &str, Option<Unit>, AnyMetric); 15] = [
            ("mailwit_connections", "Connections accepted, per listener", None, any(&m.connections)),
            ("mailwit_connections_active", "Connections open now", None, any(&m.connections_active)),
            ("mailwit_connections_refused", "Connections refused before the greeting, by reason", None, any(&m.connections_refused)),
            ("mailwit_transactions", "Mail transactions that reached the end of data, by outcome", None, any(&m.transactions)),
            ("mailwit_smtp_replies", "SMTP replies sent, by code class", None, any(&m.replies)),
            ("mailwit_message_size", "Size of accepted messages (Received header included)", Some(Unit::Bytes), any(&m.message_size)),
            ("mailwit_messages_accepted", "Messages accepted with 250 (durable in the spool)", None, any(&m.messages_accepted)),
            ("mailwit_plugin_hook_calls", "Hook calls into plugins, per plugin and hook", None, any(&m.hook_calls)),
            ("mailwit_plugin_hook_failures", "Hook calls that failed (trap, limit, bad output, open breaker)", None, any(&m.hook_failures)),
            ("mailwit_plugin_hook_duration", "Time of a hook call into a plugin, instantiation included", Some(Unit::Seconds), any(&m.hook_duration)),
            ("mailwit_deliveries", "Recipients delivered, deferred or failed, by destination kind", None, any(&m.deliveries)),
            ("mailwit_delivery_duration", "Time of one delivery attempt to one destination", Some(Unit::Seconds), any(&m.delivery_duration)),
            ("mailwit_dns_lookups", "DNS lookups made for plugins, by record type and outcome", None, any(&m.dns_lookups)),
            ("mailwit_tls_handshakes", "Inbound TLS handshakes, by protocol version (or failed)", None, any(&m.tls_handshakes)),
            ("mailwit_kv_operations", "Plugin kv operations, by backend, operation and outcome", None, any(&m.kv_operations)),
        ];
        {
            let mut r = m.registry.write().unwrap();
            for (name, help, unit, metric) in families {
                match unit {
                    Some(unit) => r.register_with_unit(name, help, unit, metric),
                    None => r.register(name, help, metric),
                }
            }
        }
        m
    }

    /// Registers a gauge family whose values are read at scrape time: `read` returns
    /// (label value, gauge value) pairs for the label `label` (an empty label name gives one
    /// unlabelled gauge from the first pair).
    pub fn gauge_probe(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        read: impl Fn() -> Vec<(String, i64)> + Send + Sync + 'static,
    ) {
        let probe = GaugeProbe {
            name,
            help,
            label,
            read: Box::new(read),
        };
        self.registry
            .write()
            .unwrap()
            .register_collector(Box::new(probe));
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Counts one SMTP reply by its code class.
    pub fn reply(&self, code: u16) {
        let class = match code / 100 {
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        self.replies.get_or_create(&ClassLabels { class }).inc();
    }

    /// Counts the final line of every reply in a batch of server output (`NNN text\r\n`; the
    /// lines of a multi-line reply but its last have `NNN-`).
    pub fn replies_in(&self, output: &[u8]) {
        for line in output.split(|&b| b == b'\n') {
            if line.len() >= 4
                && line[3] == b' '
                && let Ok(code) = std::str::from_utf8(&line[..3]).unwrap_or("").parse::<u16>()
            {
                self.reply(code);
            }
        }
    }

    pub fn transaction(&self, outcome: &'static str) {
        self.transactions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A hook call's duration and whether it failed.
    pub fn hook_call(&self, plugin: &str, hook: &'static str, elapsed: Duration, failed: bool) {
        let labels = HookLabels {
            plugin: plugin.to_string(),
            hook,
        };
        self.hook_calls.get_or_create(&labels).inc();
        let failures = self.hook_failures.get_or_create(&labels);
        if failed {
            failures.inc();
        }
        self.hook_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Creates a listener's refusal counters at 0.
    pub fn listener_started(&self, listener: &str) {
        for reason in [
            "limit_total",
            "limit_per_ip",
            "proxy_untrusted",
            "proxy_malformed",
        ] {
            let _ = self.connections_refused.get_or_create(&ReasonLabels {
                listener: listener.to_string(),
                reason,
            });
        }
    }

    /// Creates a kv backend's error counters at 0.
    pub fn kv_started(&self, backend: &'static str) {
        for op in ["get", "put", "increment", "delete"] {
            let _ = self.kv_operations.get_or_create(&KvLabels {
                backend,
                op,
                outcome: "error",
            });
        }
    }

    pub fn kv(&self, backend: &'static str, op: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.kv_operations
            .get_or_create(&KvLabels {
                backend,
                op,
                outcome,
            })
            .inc();
    }
}

/// A clone of any metric family, boxed so that families of different types fit one table.
#[derive(Debug)]
struct AnyMetric(Box<dyn Metric>);

fn any(metric: &(impl Metric + Clone)) -> AnyMetric {
    AnyMetric(Box::new(metric.clone()))
}

impl EncodeMetric for AnyMetric {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A gauge family read from somewhere else at scrape time.
struct GaugeProbe {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    read: Box<dyn Fn() -> Vec<(String, i64)> + Send + Sync>,
}

impl std::fmt::Debug for GaugeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GaugeProbe({})", self.name)
    }
}

impl Collector for GaugeProbe {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let values = (self.read)();
        let mut family =
            encoder.encode_descriptor(self.name, self.help, None, MetricType::Gauge)?;
        if self.label.is_empty() {
            let value = values.first().map_or(0, |(_, v)| *v);
            return ConstGauge::new(value).encode(family);
        }
        for (label_value, value) in values {
            let labels = [(self.label, label_value)];
            let encoder = family.encode_family(&labels)?;
            ConstGauge::new(value).encode(encoder)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_use_prometheus_names() {
        let m = Metrics::new();
        m.messages_accepted.inc();
        m.replies_in(b"250-mail.example.test\r\n250-PIPELINING\r\n250 SIZE 10\r\n354 go\r\n");
        m.gauge_probe("mailwit_queue_recipients", "Queued", "state", || {
            vec![("deferred".into(), 3)]
        });
        let text = m.encode();
        assert!(
            text.contains("mailwit_messages_accepted_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mailwit_smtp_replies_total{class=\"2xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mailwit_smtp_replies_total{class=\"3xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("mailwit_queue_recipients{state=\"deferred\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE mailwit_message_size_bytes histogram"),
            "{text}"
        );
    }
}
