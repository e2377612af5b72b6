use super::*;
use crate::PolicySet;
use crate::proto::v1 as pb;

const SET: &str = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [a]\n\
    ---\napiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n\
    \x20 - id: no-deletes\n    actions: [\"*.delete\"]\n    effect: deny\n\
    \x20 - id: other\n    actions: [\"x\"]\n    effect: deny\n";

#[test]
fn rule_matches_count_across_policy_sets() {
    let metrics = Metrics::default();
    let a = Arc::new(PolicySet::from_str("a.yaml", SET).unwrap().0);
    let b = Arc::new(
        PolicySet::from_str("b.yaml", &SET.replace("no-deletes", "deletes"))
            .unwrap()
            .0,
    );
    let req = pb::DecideRequest {
        action: "env.delete".into(),
        subject: Some(pb::Subject {
            id: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let now = chrono::Utc::now();
    for set in [&a, &a, &b, &a] {
        let d = crate::cache::decide_with(Arc::clone(set), None, &req, now, false);
        metrics.record(&d, Duration::ZERO, false);
    }
    assert_eq!(
        metrics.match_counts(),
        [
            (Arc::from("deletes"), 1),
            (Arc::from("no-deletes"), 3),
            // Present from the first match of its set on: a series that
            // exists before it counts anything.
            (Arc::from("other"), 0)
        ]
    );
}

/// The exposition, byte for byte: scrapers and dashboards depend on it.
#[test]
fn renders_the_exposition_format() {
    let metrics = Metrics::default();
    let set = Arc::new(PolicySet::from_str("a.yaml", SET).unwrap().0);
    let req = pb::DecideRequest {
        action: "env.delete".into(),
        subject: Some(pb::Subject {
            id: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let d = crate::cache::decide_with(Arc::clone(&set), None, &req, chrono::Utc::now(), false);
    metrics.record(&d, Duration::from_micros(3), true);
    metrics.log_written();
    metrics.log_dropped();
    metrics.grpc_call("Decide", tonic::Code::Ok, Duration::from_micros(30));
    metrics.grpc_call(
        "Check",
        tonic::Code::InvalidArgument,
        Duration::from_millis(2),
    );
    let mut set = PolicySet::from_str("a.yaml", SET).unwrap().0;
    set.loaded_at = std::time::UNIX_EPOCH + Duration::from_millis(1_764_892_800_250);
    let state = ScrapeState {
        policy: &set,
        cache_entries: 7,
        cache_bytes: 4096,
        reloads_ok: 2,
        reloads_failed: 1,
        last_reload_failed: true,
    };
    let mut out = String::new();
    metrics.render_counters(&mut out, &state);
    assert_eq!(out, EXPOSITION.replace("REVISION", &set.revision));

    // Then the build and, on Linux, the process.
    let all = metrics.render(&state);
    let rest = all.strip_prefix(&out).unwrap();
    assert!(
        rest.starts_with(&format!(
            "# HELP stepup_build_info The running build (value 1), by version and, when known, revision and rustc version.\n\
             # TYPE stepup_build_info gauge\nstepup_build_info{{version=\"{}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{rest}"
    );
    if cfg!(target_os = "linux") {
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(rest.contains(&format!("\n{name} ")), "{name}: {rest}");
        }
    }
}

#[test]
fn openmetrics_when_the_scraper_asks() {
    let text = "# HELP a_total As.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                # HELP b Bs, a counter named the old way.\n# TYPE b counter\nb 2\n\
                # HELP c_seconds Time.\n# TYPE c_seconds histogram\n\
                c_seconds_bucket{le=\"0.5\"} 1\nc_seconds_bucket{le=\"+Inf\"} 1\n\
                c_seconds_sum 0.25\nc_seconds_count 1\n\
                # HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\n\
                process_cpu_seconds_total 1.5\n";
    // What Prometheus 2 and 3 send.
    let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,\
                      application/openmetrics-text;version=0.0.1;q=0.4,\
                      text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let (content_type, body) = exposition(Some(prometheus), text.to_owned());
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert_eq!(
        body,
        "# HELP a As.\n# TYPE a counter\na_total{x=\"1\"} 3\n\
         # HELP b Bs, a counter named the old way.\n# TYPE b counter\nb_total 2\n\
         # HELP c_seconds Time.\n# TYPE c_seconds histogram\n# UNIT c_seconds seconds\n\
         c_seconds_bucket{le=\"0.5\"} 1\nc_seconds_bucket{le=\"+Inf\"} 1\n\
         c_seconds_sum 0.25\nc_seconds_count 1\n\
         # HELP process_cpu_seconds CPU.\n# TYPE process_cpu_seconds counter\n\
         # UNIT process_cpu_seconds seconds\nprocess_cpu_seconds_total 1.5\n# EOF\n"
    );
    for accept in [
        None,
        Some("text/plain"),
        Some("*/*"),
        Some("application/openmetrics-text;q=0, text/plain;q=1"),
    ] {
        assert_eq!(
            exposition(accept, text.to_owned()),
            ("text/plain; version=0.0.4; charset=utf-8", text.to_owned()),
            "{accept:?}"
        );
    }
}

#[test]
fn calls_are_timed_by_method() {
    let metrics = Metrics::default();
    metrics.grpc_call("RecordStepUp", tonic::Code::Ok, Duration::from_secs(3));
    metrics.grpc_call("unknown", tonic::Code::Unimplemented, Duration::ZERO);
    let mut out = String::new();
    metrics.render_grpc(&mut out);
    assert!(
        out.contains(
            "stepup_grpc_server_handling_seconds_bucket{method=\"RecordStepUp\",le=\"2.5\"} 0\n\
             stepup_grpc_server_handling_seconds_bucket{method=\"RecordStepUp\",le=\"+Inf\"} 1\n\
             stepup_grpc_server_handling_seconds_sum{method=\"RecordStepUp\"} 3\n\
             stepup_grpc_server_handling_seconds_count{method=\"RecordStepUp\"} 1\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "stepup_grpc_server_handling_seconds_bucket{method=\"unknown\",le=\"0.00005\"} 1\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("stepup_grpc_server_handling_seconds_count{method=\"Decide\"} 0\n"),
        "{out}"
    );
}

const EXPOSITION: &str = r#"# HELP stepup_decisions_total Decisions by outcome.
# TYPE stepup_decisions_total counter
stepup_decisions_total{outcome="allow"} 0
stepup_decisions_total{outcome="challenge"} 0
stepup_decisions_total{outcome="deny"} 1
# HELP stepup_decision_duration_seconds Time to decide, from request to decision, server side.
# TYPE stepup_decision_duration_seconds histogram
stepup_decision_duration_seconds_bucket{le="0.000001"} 0
stepup_decision_duration_seconds_bucket{le="0.000002"} 0
stepup_decision_duration_seconds_bucket{le="0.000005"} 1
stepup_decision_duration_seconds_bucket{le="0.00001"} 1
stepup_decision_duration_seconds_bucket{le="0.00002"} 1
stepup_decision_duration_seconds_bucket{le="0.00005"} 1
stepup_decision_duration_seconds_bucket{le="0.0001"} 1
stepup_decision_duration_seconds_bucket{le="0.0002"} 1
stepup_decision_duration_seconds_bucket{le="0.0005"} 1
stepup_decision_duration_seconds_bucket{le="0.001"} 1
stepup_decision_duration_seconds_bucket{le="0.002"} 1
stepup_decision_duration_seconds_bucket{le="0.005"} 1
stepup_decision_duration_seconds_bucket{le="0.01"} 1
stepup_decision_duration_seconds_bucket{le="0.05"} 1
stepup_decision_duration_seconds_bucket{le="+Inf"} 1
stepup_decision_duration_seconds_sum 0.000003
stepup_decision_duration_seconds_count 1
# HELP stepup_rule_matches_total Decisions in which a rule matched, by rule id.
# TYPE stepup_rule_matches_total counter
stepup_rule_matches_total{rule="no-deletes"} 1
stepup_rule_matches_total{rule="other"} 0
# HELP stepup_rule_errors_total Signal and rule conditions that failed to evaluate, by id.
# TYPE stepup_rule_errors_total counter
# HELP stepup_cache_hits_total Decisions answered from the decision cache.
# TYPE stepup_cache_hits_total counter
stepup_cache_hits_total 0
# HELP stepup_cache_misses_total Decisions the cache could not answer.
# TYPE stepup_cache_misses_total counter
stepup_cache_misses_total 1
# HELP stepup_cache_entries Entries in the decision cache (approximate).
# TYPE stepup_cache_entries gauge
stepup_cache_entries 7
# HELP stepup_cache_bytes Bytes the decision cache's entries hold (approximate; bounded by [cache] max_bytes).
# TYPE stepup_cache_bytes gauge
stepup_cache_bytes 4096
# HELP stepup_policy_reloads_total Policy reloads by result.
# TYPE stepup_policy_reloads_total counter
stepup_policy_reloads_total{result="ok"} 2
stepup_policy_reloads_total{result="failed"} 1
# HELP stepup_policy_info The policy set serving decisions (value 1), by revision.
# TYPE stepup_policy_info gauge
stepup_policy_info{revision="REVISION",rules="2",signals="0"} 1
# HELP stepup_policy_last_reload_failed 1 while the last policy reload failed.
# TYPE stepup_policy_last_reload_failed gauge
stepup_policy_last_reload_failed 1
# HELP stepup_policy_last_reload_success_timestamp_seconds When the serving policy set was loaded (at start-up or by the last reload that swapped in a new revision), Unix time.
# TYPE stepup_policy_last_reload_success_timestamp_seconds gauge
stepup_policy_last_reload_success_timestamp_seconds 1764892800.25
# HELP stepup_decision_log_written_total Decision-log entries written.
# TYPE stepup_decision_log_written_total counter
stepup_decision_log_written_total 1
# HELP stepup_decision_log_dropped_total Decision-log entries dropped because the log queue was full.
# TYPE stepup_decision_log_dropped_total counter
stepup_decision_log_dropped_total 1
# HELP stepup_grpc_requests_total gRPC calls by method and status code.
# TYPE stepup_grpc_requests_total counter
stepup_grpc_requests_total{method="Check",code="INVALID_ARGUMENT"} 1
stepup_grpc_requests_total{method="Decide",code="OK"} 1
# HELP stepup_grpc_server_handling_seconds Time from a gRPC call's request to its status, server side, by method.
# TYPE stepup_grpc_server_handling_seconds histogram
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.00005"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.0001"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.00025"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.0005"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.001"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.0025"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.005"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.01"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.025"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.05"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.1"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.25"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="0.5"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="1"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="2.5"} 1
stepup_grpc_server_handling_seconds_bucket{method="Decide",le="+Inf"} 1
stepup_grpc_server_handling_seconds_sum{method="Decide"} 0.00003
stepup_grpc_server_handling_seconds_count{method="Decide"} 1
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.00005"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.0001"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.00025"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.0005"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.001"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.0025"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.005"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.01"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.025"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.05"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.1"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.25"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="0.5"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="1"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="2.5"} 0
stepup_grpc_server_handling_seconds_bucket{method="RecordStepUp",le="+Inf"} 0
stepup_grpc_server_handling_seconds_sum{method="RecordStepUp"} 0
stepup_grpc_server_handling_seconds_count{method="RecordStepUp"} 0
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.00005"} 0
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.0001"} 0
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.00025"} 0
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.0005"} 0
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.001"} 0
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.0025"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.005"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.01"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.025"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.05"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.1"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.25"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="0.5"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="1"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="2.5"} 1
stepup_grpc_server_handling_seconds_bucket{method="Check",le="+Inf"} 1
stepup_grpc_server_handling_seconds_sum{method="Check"} 0.002
stepup_grpc_server_handling_seconds_count{method="Check"} 1
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.00005"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.0001"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.00025"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.0005"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.001"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.0025"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.005"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.01"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.025"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.05"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.1"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.25"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="0.5"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="1"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="2.5"} 0
stepup_grpc_server_handling_seconds_bucket{method="DecideBatch",le="+Inf"} 0
stepup_grpc_server_handling_seconds_sum{method="DecideBatch"} 0
stepup_grpc_server_handling_seconds_count{method="DecideBatch"} 0
"#;
