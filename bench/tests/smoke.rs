//! The seconds-long smoke run of the benchmark harness against a real Postfix smtp-sink on a
//! free loopback port: the load generator's counts must match what the server accepted, and
//! the comparison must produce its table, JSON and chart. No timing is asserted.

use std::time::Duration;

use mailwit_bench::loadgen::{self, LoadSpec};
use mailwit_bench::scenario::Sizing;
use mailwit_bench::targets::{self, Capacity, Paths, Target};
use mailwit_bench::{Comparison, bench_dir};

fn paths(work: &tempfile::TempDir) -> Paths {
    Paths::from_bench_dir(bench_dir(), work.path().join("work"))
}

fn require_smtp_sink() {
    assert!(
        ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
            .iter()
            .any(|p| std::path::Path::new(p).exists()),
        "smtp-sink is missing: install Debian's postfix package (bench/run.sh and .ci/run do)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_counts_match_smtp_sink_acceptances() {
    require_smtp_sink();
    let work = tempfile::tempdir().unwrap();
    let paths = paths(&work);
    let running = tokio::task::spawn_blocking(move || {
        targets::start(
            &Target::SmtpSink,
            &paths,
            Capacity {
                max_connections: 16,
            },
        )
    })
    .await
    .unwrap()
    .expect("smtp-sink starts");

    for (connections, per_connection, size, pipelining) in [
        (1, 30, 10 * 1024, true),
        (4, 25, 10 * 1024, true),
        (3, 10, 100 * 1024, false),
    ] {
        let mut spec = LoadSpec::new(running.addr);
        spec.connections = connections;
        spec.messages_per_connection = per_connection;
        spec.message_size = size;
        spec.pipelining = pipelining;
        spec.time_limit = Duration::from_secs(120);
        let result = loadgen::run(&spec).await.expect("load runs");
        let expected = (connections * per_connection) as u64;
        assert_eq!(result.attempted, expected, "{result:?}");
        assert_eq!(
            result.accepted, expected,
            "messages sent == accepted: {result:?}"
        );
        assert_eq!(result.rejected, 0);
        assert_eq!(result.connection_errors, 0, "{:?}", result.error_samples);
        assert_eq!(
            result.pipelined, pipelining,
            "smtp-sink advertises PIPELINING"
        );
        assert!(result.bytes_sent >= expected * size as u64);
        assert!(result.p50_ms <= result.p99_ms && result.p99_ms <= result.max_ms);
    }
    tokio::task::spawn_blocking(move || targets::stop(running))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_comparison_writes_table_json_and_chart() {
    require_smtp_sink();
    let work = tempfile::tempdir().unwrap();
    let sizing = Sizing {
        messages: 60,
        connections: 3,
        idle_connections: 40,
        time_limit: Duration::from_secs(60),
        sustained_messages: 90,
        sustained_time: Duration::from_secs(60),
    };
    let comparison = Comparison {
        targets: vec![
            Target::SmtpSink,
            Target::Mailwit {
                label: "mailwit-missing".into(),
                config: "mailwit-plugins.toml".into(),
            },
        ],
        sizing,
        paths: Paths {
            mailwit_bin: work.path().join("no-such-mailwit"),
            ..paths(&work)
        },
        conditions: "smoke test".into(),
        progress: false,
        only: Vec::new(),
    };
    let report = comparison.run().await;

    let sink: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| m.target == "smtp-sink")
        .collect();
    assert_eq!(
        sink.len(),
        comparison.scenarios().len(),
        "one row per scenario"
    );
    for m in &sink {
        match m.scenario.as_str() {
            "STARTTLS 10KiB x 3" => assert_eq!(m.status, "not supported", "smtp-sink has no TLS"),
            "idle x 40" => {
                assert_eq!(m.status, "ok", "{:?}", m.note);
                let idle = m.idle.as_ref().unwrap();
                assert_eq!(idle.held, 40);
                assert!(idle.rss_after_bytes > 0);
            }
            _ => {
                assert_eq!(m.status, "ok", "{}: {:?}", m.scenario, m.note);
                let load = m.load.as_ref().unwrap();
                let sent = if m.scenario.starts_with("sustained") {
                    90
                } else {
                    60
                };
                assert_eq!(load.attempted, sent, "{}", m.scenario);
                assert_eq!(load.accepted, sent, "{}", m.scenario);
                assert!(m.server_cpu_secs.is_some() && m.peak_rss_bytes.unwrap() > 0);
                assert!(m.server_user_secs.is_some() && m.server_system_secs.is_some());
            }
        }
    }
    // An absent mailwit build is reported, not fatal.
    let missing: Vec<_> = report
        .measurements
        .iter()
        .filter(|m| m.target == "mailwit-missing")
        .collect();
    assert_eq!(missing.len(), comparison.scenarios().len());
    assert!(missing.iter().all(|m| m.status == "not available"));

    let markdown = report.markdown();
    assert!(markdown.contains("| 10KiB x 1 | smtp-sink |"), "{markdown}");
    assert!(
        markdown.contains("100%"),
        "smtp-sink is 100% of itself: {markdown}"
    );
    assert!(
        markdown.contains("mailwit-missing: mailwit, durable spool, 4 Wasm plugins"),
        "{markdown}"
    );
    let json_path = work.path().join("results.json");
    report.write_json(&json_path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    // One measurement per scenario for each of the two targets.
    assert_eq!(
        json["measurements"].as_array().unwrap().len(),
        2 * missing.len()
    );
    let reread = mailwit_bench::report::Report::read_json(&json_path).unwrap();
    assert_eq!(
        reread.markdown(),
        markdown,
        "the JSON re-renders the same table"
    );
    let svg_path = work.path().join("throughput.svg");
    report.write_chart(&svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("smtp-sink"),
        "chart has a labelled series"
    );
}

/// The spool-engines comparison, tiny: every engine finishes every message it took, through
/// the same store → state → done path, and counts its commit groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spool_engine_finishes_its_messages() {
    use mailwit_bench::engines::{ENGINES, Load, run_one};
    let work = tempfile::tempdir().unwrap();
    let load = Load {
        writers: 4,
        messages: 40,
        secs: 60,
        size: 2048,
        states: 1,
        incompressible: true,
    };
    for engine in ENGINES {
        let outcome = run_one(engine, &load, &work.path().join(engine))
            .await
            .unwrap();
        assert_eq!(outcome.engine, engine);
        assert_eq!(outcome.messages, 40, "{engine}");
        // 120 durable operations, each writer's 30 one after the other: each writer needs a
        // group per operation, and a group may serve all four writers.
        assert!(outcome.groups >= 30, "{engine}: {} groups", outcome.groups);
        assert!(outcome.groups <= 120, "{engine}: {} groups", outcome.groups);
    }
}
