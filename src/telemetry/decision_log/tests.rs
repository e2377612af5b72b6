//! The decision log: masks, sampling, lines, the queue and rotation.

use super::mask::*;
use super::*;

#[test]
fn masks_hash_and_drop_fields_by_policy_or_json_names() {
    let masks = Masks {
        hash: vec![split("network.ip"), split("session.auth_time")],
        drop: vec![split("subject.attributes.email")],
        key: b"k".to_vec(),
    };
    let mut v = serde_json::json!({
        "network": {"ip": "203.0.113.7"},
        "session": {"authTime": "2026-01-01T00:00:00Z"},
        "subject": {"id": "u", "attributes": {"email": "a@b.c", "plan": "pro"}},
    });
    masks.apply(&mut v);
    let ip = v["network"]["ip"].as_str().unwrap();
    assert!(ip.starts_with("hash:") && ip.len() == 5 + 32, "{ip}");
    assert_ne!(ip, "203.0.113.7");
    assert!(
        v["session"]["authTime"]
            .as_str()
            .unwrap()
            .starts_with("hash:")
    );
    assert_eq!(
        v["subject"]["attributes"],
        serde_json::json!({"plan": "pro"})
    );
    // Same key, same value: same hash (joinable within a deployment).
    let mut w = serde_json::json!({"network": {"ip": "203.0.113.7"}});
    masks.apply(&mut w);
    assert_eq!(w["network"]["ip"], v["network"]["ip"]);
}

fn entry(policy: &Arc<crate::PolicySet>) -> Entry {
    let req = DecideRequest {
        action: "a".into(),
        subject: Some(crate::proto::v1::Subject {
            id: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let now = Utc::now();
    let decision = crate::cache::decide_with(Arc::clone(policy), None, &req, now, false);
    Entry {
        time: now,
        source: "decide",
        request: req,
        decision,
        elapsed: Duration::from_micros(3),
        caller: None,
    }
}

fn levels_only() -> Arc<crate::PolicySet> {
    let text = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - { name: a, acr: [x] }\n";
    Arc::new(crate::PolicySet::from_str("p.yaml", text).unwrap().0)
}

/// An entry whose request carries `bytes` bytes in one attribute.
fn large_entry(policy: &Arc<crate::PolicySet>, bytes: usize) -> Entry {
    let mut e = entry(policy);
    e.request.attributes = [(
        "blob".to_owned(),
        pbjson_types::Value::from("x".repeat(bytes)),
    )]
    .into();
    e
}

/// A log into `dir/d.log` (no rotation), set up by `configure`, whose
/// writer waits until the returned sender sends (or is dropped): the log,
/// its file, its metrics and the sender.
fn held_log(
    dir: &tempfile::TempDir,
    configure: impl FnOnce(&mut DecisionLogConfig),
) -> (
    DecisionLog,
    std::path::PathBuf,
    Arc<Metrics>,
    mpsc::Sender<()>,
) {
    let path = dir.path().join("d.log");
    let metrics = Arc::new(Metrics::default());
    let (open, gate) = mpsc::channel();
    let mut config = DecisionLogConfig::new(Sink::File {
        path: path.clone(),
        max_bytes: u64::MAX,
        keep: 1,
    });
    configure(&mut config);
    let log = DecisionLog::start_gated(config, Arc::clone(&metrics), Some(gate)).unwrap();
    (log, path, metrics, open)
}

#[test]
fn the_queue_is_bounded_in_bytes_too() {
    for masked in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (log, path, metrics, open) = held_log(&dir, |config| {
            config.queue = 1_000;
            config.queue_bytes = 1 << 20;
            if masked {
                config.drop = vec!["subject.attributes.email".into()];
            }
        });
        let policy = levels_only();
        // 100 entries of 100 KiB each: about 10 fit in 1 MiB.
        let queued: usize = (0..100)
            .map(|_| usize::from(log.submit(large_entry(&policy, 100 << 10))))
            .sum();
        assert!(
            (8..=10).contains(&queued),
            "masked {masked}: {queued} queued"
        );
        assert_eq!(metrics.log_dropped_total(), 100 - queued as u64);
        open.send(()).unwrap();
        log.close();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), queued, "masked {masked}");
    }
}

#[test]
fn a_full_queue_drops_and_counts_and_close_flushes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (log, path, metrics, open) = held_log(&dir, |config| config.queue = 3);
    let policy = levels_only();
    let queued: usize = (0..10)
        .map(|_| usize::from(log.submit(entry(&policy))))
        .sum();
    assert_eq!(queued, 3, "the writer is held: only the queue's 3 fit");
    assert_eq!(metrics.log_dropped_total(), 7);
    open.send(()).unwrap();
    log.close();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "every queued entry is written on close"
    );
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["source"], "decide");
    assert_eq!(line["decision"]["outcome"], "OUTCOME_ALLOW");
    assert_eq!(line["request"]["action"], "a");
    assert_eq!(line["latency_us"], 3.0);
}

#[test]
fn sampling_by_outcome() {
    let metrics = Arc::new(Metrics::default());
    let mut config = DecisionLogConfig::new(Sink::Stdout);
    config.sample = Sampling {
        allow: 0.1,
        challenge: 1.0,
        deny: 0.0,
    };
    let log = DecisionLog::start(config, metrics).unwrap();
    let ids: Vec<uuid::Uuid> = (0..10_000).map(|_| uuid::Uuid::now_v7()).collect();
    let allowed = ids
        .iter()
        .filter(|id| log.sampled(Outcome::Allow, id))
        .count();
    assert!((700..1300).contains(&allowed), "{allowed} of 10000 at 10%");
    assert!(ids.iter().all(|id| log.sampled(Outcome::Challenge, id)));
    assert!(!ids.iter().any(|id| log.sampled(Outcome::Deny, id)));
    log.close();
}

#[test]
fn rotation_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.log");
    let mut out = Output::open(&Sink::File {
        path: path.clone(),
        max_bytes: 25,
        keep: 2,
    })
    .unwrap();
    for i in 0..10 {
        out.write_line(format!("line number {i:02}").as_bytes())
            .unwrap();
    }
    out.flush().unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    assert_eq!(read(&path), "line number 09\n");
    assert_eq!(read(&dir.path().join("d.log.1")), "line number 08\n");
    assert_eq!(read(&dir.path().join("d.log.2")), "line number 07\n");
    assert!(!dir.path().join("d.log.3").exists());
}

#[test]
fn time_and_latency_are_written_without_fmt() {
    let text = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    };
    for (micros, want) in [
        (3_000, "3.0"),
        (3_100, "3.1"),
        (3_120, "3.12"),
        (1_162_640, "1162.64"),
        (1, "0.001"),
        (0, "0.0"),
    ] {
        let d = Duration::from_nanos(micros);
        assert_eq!(text(&|o| write_latency(o, d)), want);
    }
    for t in [
        "2026-11-28T05:32:36.673915Z",
        "2026-01-01T00:00:00.000000Z",
        "0001-02-03T04:05:06.000007Z",
        "9999-12-31T23:59:59.999999Z",
    ] {
        let time: DateTime<Utc> = t.parse().unwrap();
        assert_eq!(text(&|o| write_time(o, &time)), format!("\"{t}\""));
    }
    // Outside what four digits can write: chrono's own text.
    let far = DateTime::<Utc>::from_timestamp(300_000_000_000, 0).unwrap();
    assert_eq!(
        text(&|o| write_time(o, &far)),
        format!("\"{}\"", far.to_rfc3339_opts(SecondsFormat::Micros, true))
    );
}
