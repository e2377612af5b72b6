#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Named IP lists end to end: a real server on `127.0.0.1:0`, a real tonic
//! client, a policy using `ip_in`, and list files that change under it
//! (picked up by the watcher, through the decision cache).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestServer;
use stepup::CacheConfig;
use stepup::ListsConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::proto::v1::{DecideRequest, DecideResponse, Network, Outcome, Subject};
use stepup::{Reloader, WatchOptions};

const POLICY: &str = "apiVersion: stepup/v1
kind: Levels
levels:
  - { name: aal1, acr: [a1] }
---
apiVersion: stepup/v1
kind: Policy
name: p
signals:
  - id: tor
    when: 'network.ip != \"\" && ip_in(network.ip, \"tor_exits\")'
    score: 40
rules:
  - id: blocked
    actions: [\"*\"]
    when: 'network.ip != \"\" && ip_in(network.ip, \"blocked\")'
    effect: deny
";

fn request(ip: &str) -> DecideRequest {
    DecideRequest {
        action: "orders.list".into(),
        subject: Some(Subject {
            id: "u".into(),
            ..Default::default()
        }),
        network: Some(Network {
            ip: ip.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Replaces `path` atomically (write a temporary file, rename), as a feed
/// updater does.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Setup {
    _dir: tempfile::TempDir,
    policies: std::path::PathBuf,
    blocked: std::path::PathBuf,
    tor: std::path::PathBuf,
    lists: ListsConfig,
}

/// A policy directory carrying `lists/tor_exits.txt`, and a `blocked` list
/// outside it, named as the config file would.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("lists")).unwrap();
    std::fs::write(policies.join("p.yaml"), POLICY).unwrap();
    let tor = policies.join("lists/tor_exits.txt");
    std::fs::write(&tor, "# exits\n2001:db8:7071::/48\n").unwrap();
    let feeds = dir.path().join("feeds");
    std::fs::create_dir_all(&feeds).unwrap();
    let blocked = feeds.join("blocked.txt");
    std::fs::write(&blocked, "192.0.2.0/24\n").unwrap();
    let lists = ListsConfig {
        ip: [("blocked".to_owned(), blocked.clone())].into(),
        geoip_city: None,
    };
    Setup {
        _dir: dir,
        policies,
        blocked,
        tor,
        lists,
    }
}

async fn decide(server: &TestServer, ip: &str) -> DecideResponse {
    server
        .client()
        .await
        .decide(request(ip))
        .await
        .unwrap()
        .into_inner()
}

async fn eventually(server: &TestServer, ip: &str, outcome: Outcome) -> DecideResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = decide(server, ip).await;
        if r.outcome() == outcome {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{ip} still {:?}, not {outcome:?}",
            r.outcome()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_follow_list_membership_and_list_reloads() {
    let s = setup();
    let (policy, _) = PolicySet::load_with(&s.policies, &s.lists, None).unwrap();
    // The cache is on: list changes must still change answers.
    let server = TestServer::start_engine(Service::new(policy, CacheConfig::default())).await;

    let r = decide(&server, "192.0.2.7").await;
    assert_eq!(r.outcome(), Outcome::Deny);
    assert_eq!(r.reasons[0].rule_id, "blocked");
    assert_eq!(
        decide(&server, "::ffff:192.0.2.7").await.outcome(),
        Outcome::Deny
    );
    assert_eq!(
        decide(&server, "198.51.100.1").await.outcome(),
        Outcome::Allow
    );
    let r = decide(&server, "2001:db8:7071::9").await;
    assert_eq!(r.outcome(), Outcome::Allow);
    assert_eq!(r.risk.unwrap().signals, ["tor"]);
    // Asked again: answered from the cache, same answer.
    assert_eq!(decide(&server, "192.0.2.7").await.outcome(), Outcome::Deny);
    let revision = server.engine.policy().revision.to_string();

    let reloader = Arc::new(
        Reloader::new(Arc::clone(&server.engine), s.policies.clone()).with_lists(s.lists.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn(stepup::watch(
        reloader,
        WatchOptions {
            notify: true,
            poll: None, // only file notifications: the list directories are watched
            debounce: Duration::from_millis(50),
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The config-named list, outside the policy directory, changes: the
    // address leaves it and another joins.
    write_atomic(&s.blocked, "198.51.100.0/24\n");
    eventually(&server, "192.0.2.7", Outcome::Allow).await;
    assert_eq!(
        decide(&server, "198.51.100.1").await.outcome(),
        Outcome::Deny
    );
    assert_ne!(server.engine.policy().revision.to_string(), revision);

    // The policy directory's own list changes.
    std::fs::write(&s.tor, "# exits\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !decide(&server, "2001:db8:7071::9")
        .await
        .risk
        .unwrap()
        .signals
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the tor list was not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken list: the reload is rejected, the last good set keeps
    // serving, and the error is visible.
    write_atomic(&s.blocked, "198.51.100.0/24\nnot-an-address\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    let error = loop {
        if let Some((_, e)) = server.engine.reload_status().last_error() {
            break e;
        }
        assert!(Instant::now() < deadline, "the bad list was not noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        error.contains("`not-an-address` is not an IP address or CIDR prefix"),
        "{error}"
    );
    assert!(error.contains("blocked.txt:2:1"), "{error}");
    assert_eq!(
        decide(&server, "198.51.100.1").await.outcome(),
        Outcome::Deny
    );

    let _ = stop_tx.send(());
    watch.await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn an_unknown_list_in_a_policy_is_refused_at_load() {
    let s = setup();
    // Without the config, `blocked` is not a list.
    let report = PolicySet::load(&s.policies).unwrap_err().to_string();
    assert!(
        report.contains("error: unknown IP list `blocked`"),
        "{report}"
    );
    assert!(
        report.contains("= help: the IP lists are `tor_exits`"),
        "{report}"
    );
}

fn stepup(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stepup"))
        .args(args)
        .env_remove("STEPUP_POLICIES")
        .env_remove("STEPUP_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn check_test_and_eval_read_the_lists_of_the_config_file() {
    let s = setup();
    let config = s.policies.parent().unwrap().join("stepup.toml");
    // Relative to the config file.
    std::fs::write(&config, "[lists.ip]\nblocked = \"feeds/blocked.txt\"\n").unwrap();
    let dir = s.policies.to_str().unwrap();

    let out = stepup(&["check", "--policies", dir]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: unknown IP list `blocked`"),
        "{stderr}"
    );

    let out = stepup(&[
        "check",
        "--policies",
        dir,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let context = s.policies.parent().unwrap().join("request.json");
    std::fs::write(
        &context,
        r#"{ "action": "orders.list", "subject": { "id": "u" }, "network": { "ip": "192.0.2.9" } }"#,
    )
    .unwrap();
    let out = stepup(&[
        "eval",
        "--policies",
        dir,
        "--context",
        context.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OUTCOME_DENY"), "{stdout}");

    // A bad config file is named, with the line.
    std::fs::write(&config, "[lists]\nip = 3\n").unwrap();
    let out = stepup(&[
        "check",
        "--policies",
        dir,
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stepup.toml:2: "), "{stderr}");
}

/// A list in a mounted ConfigMap: Kubernetes swaps the `..data` symlink to a
/// new timestamped directory; the file name is a symlink through it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_style_list_swap_is_picked_up() {
    use std::os::unix::fs::symlink;

    let s = setup();
    let mount = s.policies.parent().unwrap().join("mount");
    std::fs::create_dir_all(mount.join("..2026_11_28_01")).unwrap();
    std::fs::write(mount.join("..2026_11_28_01/blocked.txt"), "192.0.2.0/24\n").unwrap();
    symlink("..2026_11_28_01", mount.join("..data")).unwrap();
    symlink("..data/blocked.txt", mount.join("blocked.txt")).unwrap();
    let lists = ListsConfig {
        ip: [("blocked".to_owned(), mount.join("blocked.txt"))].into(),
        geoip_city: None,
    };
    let (policy, _) = PolicySet::load_with(&s.policies, &lists, None).unwrap();
    let server = TestServer::start_engine(Service::new(policy, CacheConfig::default())).await;
    assert_eq!(decide(&server, "192.0.2.7").await.outcome(), Outcome::Deny);

    let reloader =
        Arc::new(Reloader::new(Arc::clone(&server.engine), s.policies.clone()).with_lists(lists));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = tokio::spawn(stepup::watch(
        reloader,
        WatchOptions {
            notify: true,
            poll: None,
            debounce: Duration::from_millis(50),
        },
        async {
            let _ = stop_rx.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The kubelet's update: a new directory, then an atomic symlink swap.
    std::fs::create_dir_all(mount.join("..2026_11_28_02")).unwrap();
    std::fs::write(
        mount.join("..2026_11_28_02/blocked.txt"),
        "198.51.100.0/24\n",
    )
    .unwrap();
    symlink("..2026_11_28_02", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_11_28_01")).unwrap();

    eventually(&server, "192.0.2.7", Outcome::Allow).await;
    assert_eq!(
        decide(&server, "198.51.100.1").await.outcome(),
        Outcome::Deny
    );

    let _ = stop_tx.send(());
    watch.await.unwrap();
    server.stop().await;
}
