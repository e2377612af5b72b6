#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Hostile input, end to end: each probe an attacker or a careless policy
//! author would try, against a real `stepup serve` process on a real socket
//! (and the CLI, for the authoring probes), with the answer it must get.
//!
//! How fast large policy sets load is measured by `benches/load_scale.rs`,
//! and how much memory a million decisions keep by
//! `examples/history_rss.rs`; they are benchmarks, not tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use pbjson_types::{Struct, Timestamp, Value, value::Kind};
use stepup::proto::v1::decision_service_client::DecisionServiceClient;
use stepup::proto::v1::{
    DecideRequest, Device, Network, Outcome, RecordStepUpRequest, Resource, Session, Subject,
};
use tonic::Code;
use tonic::transport::Channel;

use common::{examples, frame, free_port, http_get, metric};

/// A `stepup serve` child process, killed when dropped; its standard error
/// (the logs) goes to a file.
struct Sidecar {
    child: Child,
    grpc: String,
    admin: String,
    logs: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Serves `policies` with text logs at `debug` level and `extra` flags,
    /// once it answers.
    async fn start(policies: &Path, extra: &[&str]) -> (Self, DecisionServiceClient<Channel>) {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("stderr.log");
        let grpc = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--no-watch", "--policies"])
            .arg(policies)
            .args(["--listen", &grpc, "--admin", &admin])
            .args(["--log-format", "text", "--log-level", "stepup=debug"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logs).unwrap())
            .spawn()
            .unwrap();
        let client = common::connect_when_up(&mut child, &grpc).await;
        let sidecar = Self {
            child,
            grpc,
            admin,
            logs,
            _dir: dir,
        };
        (sidecar, client)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.logs).unwrap()
    }

    fn metrics(&self) -> String {
        let (status, body) = http_get(&self.admin, "/metrics");
        assert_eq!(status, 200);
        body
    }

    /// Sends `body` as it is to `path`: [`common::raw_call`].
    async fn raw_call(&self, path: &str, body: Vec<u8>) -> tonic::Status {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        common::raw_call(channel, &self.grpc, path, body).await
    }

    /// Resident memory, from `/proc`.
    fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        kib * 1024
    }
}

impl Sidecar {
    /// [`Sidecar::start`] over mutual TLS on the example policies, with a
    /// client whose certificate names the one `[trust] reporters` entry.
    async fn start_as_reporter(extra: &[&str]) -> (Self, DecisionServiceClient<Channel>) {
        use common::tls::{Ca, TlsConnector, client_config};
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("probe CA");
        let (cert, key) = ca.server().write(&dir.path().join("server"));
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let reporter = "spiffe://probe.test/reporter";
        let config = dir.path().join("stepup.toml");
        std::fs::write(&config, format!("[trust]\nreporters = [\"{reporter}\"]\n")).unwrap();
        let logs = dir.path().join("stderr.log");
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--no-watch", "--admin", "off", "--policies"])
            .arg(examples())
            .args(["--listen", &grpc, "--config"])
            .arg(&config)
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--tls-client-ca")
            .arg(&ca_file)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&logs).unwrap())
            .spawn()
            .unwrap();
        let connector = TlsConnector::new(
            grpc.parse().unwrap(),
            client_config(&[&ca], Some(&ca.client(reporter))),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let channel = loop {
            if let Ok(channel) = connector.channel().await {
                break channel;
            }
            assert!(child.try_wait().unwrap().is_none(), "stepup serve exited");
            assert!(
                std::time::Instant::now() < deadline,
                "stepup serve did not come up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let sidecar = Self {
            child,
            grpc,
            admin: String::new(),
            logs,
            _dir: dir,
        };
        (sidecar, DecisionServiceClient::new(channel))
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stepup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of the example policies with `extra` files added, in a new
/// directory.
fn examples_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&examples(), dir.path());
    for (name, body) in extra {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

fn policy(rules: &str) -> String {
    format!("apiVersion: stepup/v1\nkind: Policy\nname: probe\nrules:\n{rules}")
}

fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

/// A small refund by `subject` from a fresh password session, at `time`
/// (the server clock when `None`).
fn refund(subject: &str, time: Option<DateTime<Utc>>) -> DecideRequest {
    let clock = time.unwrap_or_else(Utc::now);
    DecideRequest {
        action: "payments.refund".into(),
        subject: Some(Subject {
            id: subject.into(),
            ..Default::default()
        }),
        session: Some(Session {
            id: "s1".into(),
            acr: "urn:stepup:aal1".into(),
            amr: vec!["pwd".into()],
            auth_time: ts(clock - chrono::Duration::minutes(1)),
        }),
        device: Some(Device {
            id: "d1".into(),
            ..Default::default()
        }),
        resource: Some(Resource {
            r#type: "refund".into(),
            attributes: [("amount".to_owned(), Value::from(10.0))].into(),
            ..Default::default()
        }),
        time: time.and_then(ts),
        ..Default::default()
    }
}

fn at(mut r: DecideRequest, lat: f64, lon: f64) -> DecideRequest {
    r.network = Some(Network {
        attributes: [
            ("lat".to_owned(), Value::from(lat)),
            ("lon".to_owned(), Value::from(lon)),
        ]
        .into(),
        ..Default::default()
    });
    r
}

async fn rule_ids(client: &mut DecisionServiceClient<Channel>, r: DecideRequest) -> Vec<String> {
    let d = client.decide(r).await.unwrap().into_inner();
    d.reasons.into_iter().map(|r| r.rule_id).collect()
}

#[test]
fn costly_conditions_are_refused_by_check_and_by_serve() {
    let dir = examples_with(&[(
        "costly.yaml",
        &policy(
            "  - id: roles\n    actions: [\"iam.role.grant\"]\n    when: >-\n      \
             subject.roles.all(a, subject.roles.all(b, subject.roles.all(c,\n      \
             subject.roles.all(d, a + b + c + d != \"\"))))\n    effect: deny\n\
             \x20 - id: cube\n    actions: [\"iam.role.grant\"]\n    when: >-\n      \
             [RANGE].all(x, [RANGE].all(y, [RANGE].all(z, x + y + z >= 0)))\n    effect: deny\n"
                .replace(
                    "RANGE",
                    &(0..64).map(|i| i.to_string()).collect::<Vec<_>>().join(","),
                )
                .as_str(),
        ),
    )]);
    let path = dir.path().to_str().unwrap();
    let out = stepup(&["check", "--policies", path]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for (rule, line) in [("roles", 8), ("cube", 14)] {
        let head = err
            .lines()
            .position(|l| l.ends_with(&format!("(in `{rule}`) [cost-limit]")))
            .unwrap_or_else(|| panic!("no cost error for `{rule}`:\n{err}"));
        let lines: Vec<&str> = err.lines().collect();
        // Both numbers, then where, then a caret.
        assert!(lines[head].contains("above the limit of 16,000"), "{err}");
        assert!(
            lines[head + 1].contains(&format!("costly.yaml:{line}:")),
            "{err}"
        );
        assert!(lines[head + 4].trim_start().starts_with("| ") && lines[head + 4].contains('^'));
    }
    // `serve` refuses the set the same way, before listening.
    let out = stepup(&[
        "serve",
        "--policies",
        path,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("(in `cube`) [cost-limit]"));
}

/// A `DecideRequest` whose `attributes.k` is a struct nested `levels` deep.
fn nested(levels: usize) -> DecideRequest {
    let mut v = Value::from(1.0);
    for _ in 0..levels {
        v = Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [("k".to_owned(), v)].into(),
            })),
        };
    }
    let mut r = refund("u-nested", None);
    r.attributes = [("k".to_owned(), v)].into();
    r
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_and_counted() {
    const DECIDE: &str = "/stepup.v1.DecisionService/Decide";
    let (sidecar, mut client) = Sidecar::start(&examples(), &[]).await;

    // `action` (field 1) holding bytes that are not UTF-8.
    let s = sidecar
        .raw_call(DECIDE, frame(&[0x0a, 2, 0xff, 0xfe]))
        .await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(
        s.message()
            .ends_with("Request.action: invalid string value: data is not UTF-8 encoded"),
        "{}",
        s.message()
    );
    // Nesting: within the limits of the wire, too deep for a request.
    let s = client.decide(nested(20)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().starts_with("`attributes.k"), "{}", s.message());
    assert!(
        s.message().ends_with("nested deeper than 8 levels"),
        "{}",
        s.message()
    );
    // Past what the decoder takes.
    let s = client.decide(nested(60)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("recursion limit"), "{}", s.message());
    // Garbage: a wire type protobuf does not have; a truncated field.
    let s = sidecar.raw_call(DECIDE, frame(&[0x0f])).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let s = sidecar.raw_call(DECIDE, frame(&[0x0a, 10, b'a'])).await;
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    // The other methods alike.
    for path in [
        "/stepup.v1.DecisionService/RecordStepUp",
        "/envoy.service.auth.v3.Authorization/Check",
    ] {
        let s = sidecar.raw_call(path, frame(&[0x0a, 2, 0xff, 0xfe])).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{path}: {s:?}");
    }

    let m = sidecar.metrics();
    let count = |method: &str, code: &str| {
        metric(
            &m,
            &format!("stepup_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(count("Decide", "INVALID_ARGUMENT"), 5.0, "{m}");
    assert_eq!(count("RecordStepUp", "INVALID_ARGUMENT"), 1.0, "{m}");
    assert_eq!(count("Check", "INVALID_ARGUMENT"), 1.0, "{m}");
    assert!(!m.contains("code=\"INTERNAL\""), "{m}");
}

#[tokio::test]
async fn a_connection_without_an_http2_preface_is_closed() {
    use tokio::io::AsyncReadExt as _;
    let (sidecar, mut client) = Sidecar::start(&examples(), &[]).await;
    let mut idle = tokio::net::TcpStream::connect(&sidecar.grpc).await.unwrap();
    let mut buf = [0; 256];
    // Closed after the handshake timeout (10 s); the bound here is only
    // there so that a connection held open fails the test instead of
    // hanging it.
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // the server's SETTINGS
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the silent connection is still open");
    // Others were served meanwhile.
    client.decide(refund("u-idle", None)).await.unwrap();
}

#[tokio::test]
async fn control_characters_are_escaped_in_text_logs_written_without_colour() {
    let (sidecar, mut client) = Sidecar::start(&examples(), &[]).await;
    let forged = "payments.refund\n2026-12-04T00:00:00Z  INFO forged\u{1b}[31m";
    let mut r = refund("u-log", None);
    r.action = forged.into();
    client.decide(r).await.unwrap();
    let logs = sidecar.logs();
    assert!(
        !logs.contains('\u{1b}'),
        "an escape code reached the log:\n{logs}"
    );
    assert!(
        !logs.lines().any(|l| l.starts_with("2026-12-04T00:00:00Z")),
        "a forged line:\n{logs}"
    );
    assert!(
        logs.contains(r"payments.refund\n2026-12-04T00:00:00Z  INFO forged\u{1b}[31m"),
        "{logs}"
    );
    // Start-up fields are plain values.
    assert!(logs.contains(&format!("addr={}", sidecar.grpc)), "{logs}");
    assert!(!logs.contains("Some("), "{logs}");
}

#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    // The reader is gone before `eval` writes: `stepup eval … | head -0`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/refund.json");
    let out = Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(["eval", "--policies"])
        .arg(examples())
        .arg("--context")
        .arg(&context)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn nested_cel_parentheses_get_one_clean_error() {
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    let dir = examples_with(&[(
        "deep.yaml",
        &policy(&format!(
            "  - id: deep\n    actions: [\"a.b\"]\n    when: '{deep} == 1'\n    effect: deny\n"
        )),
    )]);
    let out = stepup(&["check", "--policies", dir.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(
        err.matches("error:").count(),
        2,
        "one error and the summary:\n{err}"
    );
    assert!(
        err.starts_with(
            "error: the condition nests brackets more than 32 deep (in `deep`) [depth-limit]\n"
        ),
        "{err}"
    );
    assert!(err.contains("deep.yaml:7:44\n"), "{err}");
    assert!(!err.contains("Error"), "no Rust debug output:\n{err}");
    assert!(err.lines().all(|l| l.chars().count() <= 110), "{err}");
}

#[test]
fn a_yaml_tab_is_pointed_at_on_its_line() {
    let dir = examples_with(&[("tab.yaml", "apiVersion: stepup/v1\n\tkind: Policy\n")]);
    let out = stepup(&["check", "--policies", dir.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("tab.yaml:2:1\n"), "{err}");
    assert!(err.contains("\n2 | \tkind: Policy\n"), "{err}");
}

#[test]
fn json_integers_out_of_range_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (body, field) in [
        (r#""network": {"asn": 99999999999999999999}"#, "network.asn"),
        (
            r#""resource": {"attributes": {"amount": 18446744073709551615}}"#,
            "resource.attributes.amount",
        ),
    ] {
        let context = dir.path().join("context.json");
        std::fs::write(
            &context,
            format!(r#"{{"action": "payments.refund", "subject": {{"id": "u1"}}, {body}}}"#),
        )
        .unwrap();
        let out = stepup(&[
            "eval",
            "--policies",
            examples().to_str().unwrap(),
            "--context",
            context.to_str().unwrap(),
        ]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("not a DecideRequest in JSON form: `{field}`: ")),
            "{err}"
        );
        assert!(
            !err.contains("untagged enum") && !err.contains("integral type"),
            "{err}"
        );
    }
    // In a test suite.
    let suite = examples_with(&[(
        "big_test.yaml",
        "name: big\nnow: 2026-11-27T10:00:00Z\ncases:\n  - name: asn\n    request:\n      \
         action: payments.refund\n      subject: { id: u1 }\n      \
         network: { asn: 99999999999999999999 }\n    expect: { outcome: allow }\n",
    )]);
    let out = stepup(&["test", "--policies", suite.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("error: invalid request field `network.asn`: expected an integer within the field's range"),
        "{err}"
    );
    assert!(err.contains("big_test.yaml:8:23\n"), "{err}");
}

#[tokio::test]
async fn request_times_far_from_the_clock_are_invalid_argument() {
    let (_sidecar, mut client) = Sidecar::start(&examples(), &[]).await;
    for (offset, word) in [(-2, "behind"), (48, "ahead of")] {
        let time = Utc::now() + chrono::Duration::hours(offset);
        let s = client
            .decide(refund("u-skew", Some(time)))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().starts_with("`time`: "), "{}", s.message());
        assert!(s.message().contains(word), "{}", s.message());
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

#[tokio::test]
async fn a_backdated_refund_does_not_hide_the_ones_before_it() {
    let (_sidecar, mut client) = Sidecar::start(&examples(), &["--max-time-skew", "off"]).await;
    for i in 0..10 {
        let ids = rule_ids(
            &mut client,
            refund("u-burst", Some(t0() + chrono::Duration::seconds(i))),
        )
        .await;
        assert!(ids.is_empty(), "refund {i}: {ids:?}");
    }
    // Backdated by two hours: outside the hour, and not the newest event.
    let back = refund("u-burst", Some(t0() - chrono::Duration::hours(2)));
    rule_ids(&mut client, back).await;
    let ids = rule_ids(
        &mut client,
        refund("u-burst", Some(t0() + chrono::Duration::seconds(20))),
    )
    .await;
    assert_eq!(ids, ["refund-burst"], "the eleventh refund within the hour");
}

#[tokio::test]
async fn a_future_dated_request_prunes_nothing_and_pins_no_place() {
    // Failed step-ups count only from a listed reporter: over mutual TLS.
    let (_sidecar, mut client) = Sidecar::start_as_reporter(&["--max-time-skew", "off"]).await;
    // Two failed step-ups and a request from Berlin.
    for _ in 0..2 {
        client
            .record_step_up(RecordStepUpRequest {
                subject_id: "u-future".into(),
                session_id: "s1".into(),
                success: Some(false),
                time: ts(t0()),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    rule_ids(
        &mut client,
        at(refund("u-future", Some(t0())), 52.52, 13.40),
    )
    .await;
    // Two days ahead, from Sydney.
    let ahead = at(
        refund("u-future", Some(t0() + chrono::Duration::days(2))),
        -33.87,
        151.21,
    );
    rule_ids(&mut client, ahead).await;
    // An hour after the first, 50 km from Berlin: no travel to speak of,
    // and the failed step-ups still count.
    let later = at(
        refund("u-future", Some(t0() + chrono::Duration::hours(1))),
        52.40,
        12.60,
    );
    let ids = rule_ids(&mut client, later).await;
    assert_eq!(ids, ["failed-step-ups"]);
}

#[tokio::test]
async fn distinct_action_names_are_bounded() {
    // The decision cache keys on the action too: bounded in bytes as well.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[cache]\nmax_bytes = 4194304\n").unwrap();
    let config_path = config.path().to_str().unwrap();
    let (sidecar, mut client) = Sidecar::start(&examples(), &["--config", config_path]).await;
    // Twice 25,600 made-up names: unbounded, each round grew the process
    // by about 30 MB. Bounded, the first round fills the tables and the
    // cache (and the allocator keeps some of what the cache's turnover
    // freed); the second must not grow it further.
    let send = |client: &mut DecisionServiceClient<Channel>, round: usize| {
        let mut client = client.clone();
        async move {
            for i in 0..25_600 {
                let mut r = refund("u-names", None);
                r.action = format!("probe.action.{round}.{i:05}.{}", "x".repeat(200));
                let d = client.decide(r).await.unwrap().into_inner();
                assert_eq!(d.outcome, Outcome::Allow as i32);
            }
        }
    };
    send(&mut client, 0).await;
    let filled = sidecar.rss_bytes();
    send(&mut client, 1).await;
    let grown = sidecar.rss_bytes().saturating_sub(filled);
    let m = sidecar.metrics();
    assert!(metric(&m, "stepup_history_action_names") <= 4096.0, "{m}");
    assert!(
        metric(&m, "stepup_history_actions_folded_total") > 0.0,
        "{m}"
    );
    let cached = metric(&m, "stepup_cache_bytes");
    assert!(cached > 0.0 && cached <= 4_194_304.0, "{m}");
    // Unbounded, a round grew the process by about 30 MB; the allocator's
    // own churn, with the other probes' processes beside it, stays under 8.
    assert!(
        grown < 8 << 20,
        "the second round grew the process by {grown} bytes"
    );
}

#[tokio::test]
async fn request_supplied_regex_patterns_need_the_opt_in_and_are_bounded() {
    let rule = |opt_in: &str| {
        policy(&format!(
            "  - id: pattern\n    actions: [\"probe.match\"]\n{opt_in}    \
             when: 'subject.id.matches(string(subject.attributes.pattern))'\n    effect: deny\n"
        ))
    };
    let refused = examples_with(&[("regex.yaml", &rule(""))]);
    let out = stepup(&["check", "--policies", refused.path().to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("(in `pattern`) [dynamic-regex]"), "{err}");

    let allowed = examples_with(&[("regex.yaml", &rule("    dynamic_regex: true\n"))]);
    let (_sidecar, mut client) = Sidecar::start(allowed.path(), &[]).await;
    let ask = |pattern: &str| {
        let mut r = refund("aaaa", None);
        r.action = "probe.match".into();
        r.subject.as_mut().unwrap().attributes =
            [("pattern".to_owned(), Value::from(pattern.to_owned()))].into();
        r
    };
    let d = client.decide(ask("^a+$")).await.unwrap().into_inner();
    assert_eq!(d.outcome, Outcome::Deny as i32, "a plain pattern matches");
    // Too big to compile within the limit: the rule fails closed, and says
    // why.
    let d = client
        .decide(ask(r"(?:\w{30}){30}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.outcome, Outcome::Deny as i32);
    assert_eq!(d.errors.len(), 1, "{:?}", d.errors);
    assert_eq!(d.errors[0].rule_id, "pattern");
    assert!(d.errors[0].message.contains("exceed"), "{:?}", d.errors);
}
