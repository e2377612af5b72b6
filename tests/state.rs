#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! What stepup shows about the people it decides for, end to end with
//! `stepup serve` processes: a masked identifier appears nowhere in a
//! decision-log line (errors and explain trace included) nor in the text
//! log of an unmapped `Check`; `/policy` shows no policy source text unless
//! asked to; secrets given inline are warned about, never printed.

mod common;
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use stepup::proto::v1::DecideRequest;

/// The identifier that must not leak.
const RAW: &str = "alice-raw-77";

const LEVELS: &str = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [\"urn:stepup:aal1\"]\n  - name: aal2\n    acr: [\"urn:stepup:aal2\"]\n";

/// A rule whose condition fails with an error that quotes the subject id
/// (`no such key: `<id>``), so the errors and the trace would show it.
const RULES: &str = "apiVersion: stepup/v1\nkind: Policy\nname: quoting\nrules:\n  - id: by-id\n    actions: [\"account.password.change\"]\n    when: 'subject.attributes[subject.id] == \"x\"'\n    effect: challenge\n    require: { level: aal2 }\n";

/// A `stepup serve` process killed (and reaped) on drop.
struct Serve {
    child: Child,
    grpc: String,
    admin: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// `stepup serve` over `policies` with `config` (written to `dir`),
    /// `env` added to its environment; standard error piped.
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    fn start(dir: &Path, policies: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        let path = dir.join("stepup.toml");
        std::fs::write(&path, config).unwrap();
        let grpc = format!("127.0.0.1:{}", common::free_port());
        let admin = format!("127.0.0.1:{}", common::free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_stepup"))
            .args(["serve", "--policies"])
            .arg(policies)
            .args(["--listen", &grpc, "--admin", &admin, "--config"])
            .arg(&path)
            .args(["--max-time-skew", "off", "--log-format", "json"])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child, grpc, admin }
    }

    /// Stops the process gracefully (the decision log is flushed); its
    /// standard error.
    fn stop(mut self) -> String {
        // A signal that comes before the server listens for it is lost:
        // repeat it until the process ends.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "stepup serve did not stop");
            self.signal("-TERM");
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    }
}

fn policies(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("levels.yaml"), LEVELS).unwrap();
    std::fs::write(dir.join("quoting.yaml"), RULES).unwrap();
}

/// A `Check` for `method path` with no mapping for it.
fn check(method: &str, path: &str) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    host: "api.example.com".to_owned(),
                    headers: [("x-user-id".to_owned(), "u-1".to_owned())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

#[test]
fn a_masked_identifier_appears_nowhere_in_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    policies(&policy_dir);
    let log = dir.path().join("decisions.jsonl");
    std::fs::write(dir.path().join("log.key"), "log-key\n").unwrap();
    let config = format!(
        "[decision_log]\noutput = \"{}\"\nhash = [\"subject.id\"]\ndrop = [\"subject.attributes.email\"]\nhash_key_file = \"log.key\"\n\n[ext_authz]\nunmapped = \"deny\"\n[ext_authz.subject]\nsource = \"headers\"\nid = \"x-user-id\"\n[[ext_authz.routes]]\nmethod = \"PUT\"\npath = \"/v1/account/password\"\naction = \"account.password.change\"\n[[ext_authz.routes]]\nmethod = \"POST\"\npath = \"/v1/transfers\"\naction = \"payments.transfer\"\nresource.attributes.amount = {{ query = \"amount\", type = \"number\", required = true }}\n",
        log.display()
    );
    let mut serve = Serve::start(dir.path(), &policy_dir, &config, &[]);
    let rt = common::runtime();
    rt.block_on(async {
        let mut client = common::connect_when_up(&mut serve.child, &serve.grpc).await;
        let request: DecideRequest = serde_json::from_value(serde_json::json!({
            "action": "account.password.change",
            "subject": { "id": RAW, "attributes": { "email": format!("{RAW}@example.com") } },
            "resource": { "type": "account", "id": RAW },
            "session": { "id": "s-1", "acr": "urn:stepup:aal1" },
            "explain": true,
        }))
        .unwrap();
        let response = client.decide(request).await.unwrap().into_inner();
        // The caller sees the raw value (it sent it); the log must not.
        assert!(
            response.errors[0].message.contains(RAW),
            "{:?}",
            response.errors
        );
        let mut authz = AuthorizationClient::connect(format!("http://{}", serve.grpc))
            .await
            .unwrap();
        for (method, path) in [
            ("GET", format!("/v1/users/{RAW}/profile")),
            ("POST", format!("/v1/transfers?amount={RAW}")),
        ] {
            let r = authz
                .check(check(method, &path))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status.unwrap().code, 7, "{method} {path}: the fallback");
        }
    });
    // Close the connections before the graceful stop.
    drop(rt);
    let stderr = serve.stop();
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(!lines.contains(RAW), "{lines}");
    let line: serde_json::Value = serde_json::from_str(lines.trim()).unwrap();
    let hash = line["request"]["subject"]["id"].as_str().unwrap();
    assert!(hash.starts_with("hash:"), "{line}");
    // Wherever the value stood, its hash stands: another field, the error,
    // the trace; the dropped email's text is gone with it.
    assert_eq!(line["request"]["resource"]["id"], hash);
    assert_eq!(
        line["decision"]["errors"][0]["message"],
        format!("no such key: `{hash}`")
    );
    let trace = line["decision"]["trace"].to_string();
    assert!(trace.contains(&format!("no such key: `{hash}`")), "{trace}");
    assert!(
        line["request"]["subject"]["attributes"]
            .get("email")
            .is_none()
    );
    // The text log: the unmapped checks are logged, without the path or
    // the parameter's value.
    let unmapped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ext_authz request not mapped"))
        .collect();
    assert_eq!(unmapped.len(), 2, "{stderr}");
    assert!(
        unmapped[1].contains("query parameter `amount` is not a number"),
        "{stderr}"
    );
    assert!(!stderr.contains(RAW), "{stderr}");
}

/// `/policy` after a reload that fails on a condition naming an account;
/// the last reload error as served.
fn failed_reload_error(env: &[(&str, &str)]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    policies(&policy_dir);
    let mut serve = Serve::start(dir.path(), &policy_dir, "", env);
    common::runtime().block_on(common::connect_when_up(&mut serve.child, &serve.grpc));
    // Serving; the SIGHUP handler comes with the policy watcher, just after.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        policy_dir.join("bad.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nname: bad\nrules:\n  - id: root\n    actions: [a]\n    when: 'subject.id == \"root-account-4711\" && devce.trusted'\n    effect: deny\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut hup_sent = false;
    loop {
        let (status, body) = common::http_get(&serve.admin, "/policy");
        assert_eq!(status, 200);
        let policy: serde_json::Value = serde_json::from_str(&body).unwrap();
        if !policy["last_reload_error"].is_null() {
            return policy["last_reload_error"].clone();
        }
        if Instant::now() > deadline {
            panic!("the reload did not fail: {body}\n{}", serve.stop());
        }
        // The watcher picks the change up (after a quiet spell: signals
        // in a row would postpone it); one SIGHUP in case it missed it.
        if !hup_sent && Instant::now() + Duration::from_secs(6) > deadline {
            serve.signal("-HUP");
            hup_sent = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn policy_shows_no_source_text_unless_asked() {
    let hidden = failed_reload_error(&[]);
    let text = hidden["diagnostics"].as_str().unwrap();
    assert!(text.contains("unknown variable `devce`"), "{text}");
    assert!(text.contains("bad.yaml:7:"), "{text}");
    assert!(!text.contains("root-account-4711"), "{text}");
    assert_eq!(hidden["source_shown"], false);

    let shown = failed_reload_error(&[("STEPUP_ADMIN_SHOW_SOURCE", "true")]);
    let text = shown["diagnostics"].as_str().unwrap();
    assert!(text.contains("root-account-4711"), "{text}");
    assert_eq!(shown["source_shown"], true);
}

#[test]
fn an_inline_secret_is_warned_about_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    policies(&policy_dir);
    let log = dir.path().join("decisions.jsonl");
    let config = format!(
        "[decision_log]\noutput = \"{}\"\nhash = [\"subject.id\"]\nhash_key = \"inline-log-secret\"\n",
        log.display()
    );
    let mut serve = Serve::start(dir.path(), &policy_dir, &config, &[]);
    common::runtime().block_on(common::connect_when_up(&mut serve.child, &serve.grpc));
    let stderr = serve.stop();
    assert!(
        stderr.contains("decision_log.hash_key is written in the config file"),
        "{stderr}"
    );
    assert!(!stderr.contains("inline-log-secret"), "{stderr}");
    // From the environment: no warning.
    let config = format!(
        "[decision_log]\noutput = \"{}\"\nhash = [\"subject.id\"]\n",
        log.display()
    );
    let mut serve = Serve::start(
        dir.path(),
        &policy_dir,
        &config,
        &[("STEPUP_DECISION_LOG_HASH_KEY", "env-log-secret")],
    );
    common::runtime().block_on(common::connect_when_up(&mut serve.child, &serve.grpc));
    let stderr = serve.stop();
    assert!(!stderr.contains("hash_key is written"), "{stderr}");
    assert!(!stderr.contains("env-log-secret"), "{stderr}");
}
