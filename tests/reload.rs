#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Live reload over a real server: swaps under concurrent traffic, invalid
//! sets rejected, ConfigMap-style symlink swaps picked up by the watcher.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestServer;
use stepup::CacheConfig;
use stepup::proto::v1::{DecideRequest, Outcome, Subject};
use stepup::{Reload, Reloader, WatchOptions};

const LEVELS: &str = "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - { name: aal1, acr: [a1] }\n  - { name: aal2, acr: [a2] }\n";

/// A policy whose only rule for `x` has `effect`.
fn policy(effect: &str) -> String {
    let require = if effect == "challenge" {
        "\n    require: { level: aal2 }"
    } else {
        ""
    };
    format!(
        "apiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n  - id: r\n    actions: [x]\n    effect: {effect}{require}\n"
    )
}

/// Replaces `path` atomically (write a temporary file, rename), as a careful
/// deployment tool does.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn request() -> DecideRequest {
    DecideRequest {
        action: "x".into(),
        subject: Some(Subject {
            id: "u".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn set_dir(effect: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("levels.yaml"), LEVELS).unwrap();
    std::fs::write(dir.path().join("p.yaml"), policy(effect)).unwrap();
    dir
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_concurrent_traffic_never_mixes_revisions() {
    let dir = set_dir("deny");
    let server = TestServer::start(dir.path(), CacheConfig::default()).await;
    let old = server.engine.policy().revision.to_string();
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&server.engine),
        dir.path().to_path_buf(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let mut client = server.client().await;
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .decide(request())
                    .await
                    .expect("no call fails during reload")
                    .into_inner();
                seen.push((r.policy_revision.clone(), r.outcome()));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_atomic(&dir.path().join("p.yaml"), &policy("challenge"));
    let r = Arc::clone(&reloader);
    let outcome = tokio::task::spawn_blocking(move || r.reload())
        .await
        .unwrap();
    let Reload::Swapped { revision } = outcome else {
        panic!("expected a swap, got {outcome:?}");
    };
    let new = revision.to_string();
    assert_ne!(new, old);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        let seen = c.await.unwrap();
        total += seen.len();
        for (rev, outcome) in &seen {
            // The answer always matches the revision it claims: never a mix.
            if *rev == old {
                assert_eq!(*outcome, Outcome::Deny);
            } else {
                assert_eq!(*rev, new, "an unknown revision");
                assert_eq!(*outcome, Outcome::Challenge);
            }
        }
        // Once a client saw the new set it never sees the old one again
        // (the cache cannot serve an old revision's answer).
        let first_new = seen
            .iter()
            .position(|(r, _)| *r == new)
            .expect("every client saw the new set");
        assert!(seen[first_new..].iter().all(|(r, _)| *r == new));
    }
    assert!(total > 20, "only {total} calls made");
    assert_eq!(server.engine.reload_status().ok.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn invalid_reload_keeps_the_last_good_set_and_shows_it() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let dir = set_dir("deny");
    let server = TestServer::start(dir.path(), CacheConfig::default()).await;
    let good = server.engine.policy().revision.to_string();
    let reloader = Reloader::new(Arc::clone(&server.engine), dir.path().to_path_buf());
    let mut health = HealthClient::new(server.channel().await);
    let check = async |h: &mut HealthClient<_>| {
        h.check(HealthCheckRequest {
            service: "stepup.policy".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
    };
    assert_eq!(check(&mut health).await, ServingStatus::Serving);

    // A half-written file: YAML garbage.
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: stepup/v1\nkind: Policy\nrules: [ {id: r,",
    )
    .unwrap();
    let Reload::Rejected(report) = reloader.reload() else {
        panic!("garbage must be rejected");
    };
    assert!(report.to_string().contains("invalid YAML"), "{report}");
    assert_eq!(server.engine.policy().revision.to_string(), good);
    let status = server.engine.reload_status();
    assert_eq!(status.failed.load(Ordering::Relaxed), 1);
    assert!(status.last_error().unwrap().1.contains("invalid YAML"));
    wait_for(|| !*status.subscribe().borrow()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(check(&mut health).await, ServingStatus::NotServing);
    // Decisions go on, on the last good set.
    let mut client = server.client().await;
    let r = client.decide(request()).await.unwrap().into_inner();
    assert_eq!(r.policy_revision, good);
    assert_eq!(r.outcome(), Outcome::Deny);

    // A deleted directory: rejected too.
    let path = dir.path().to_path_buf();
    std::fs::remove_dir_all(&path).unwrap();
    assert!(matches!(reloader.reload(), Reload::Rejected(_)));
    assert_eq!(
        client
            .decide(request())
            .await
            .unwrap()
            .into_inner()
            .policy_revision,
        good
    );

    // Fixed: swapped in, health back to SERVING, error cleared.
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("levels.yaml"), LEVELS).unwrap();
    std::fs::write(path.join("p.yaml"), policy("challenge")).unwrap();
    assert!(matches!(reloader.reload(), Reload::Swapped { .. }));
    assert!(status.last_error().is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(check(&mut health).await, ServingStatus::Serving);
    assert_eq!(
        client
            .decide(request())
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        Outcome::Challenge
    );
    // Unchanged files: nothing to do.
    assert!(matches!(reloader.reload(), Reload::Unchanged));
    server.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_follows_a_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;

    // The layout the kubelet makes: files are links into `..data`, itself a
    // link to a timestamped directory that is replaced atomically.
    let root = tempfile::tempdir().unwrap();
    let v1 = root.path().join("..2026_01");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("levels.yaml"), LEVELS).unwrap();
    std::fs::write(v1.join("p.yaml"), policy("deny")).unwrap();
    symlink("..2026_01", root.path().join("..data")).unwrap();
    symlink("..data/levels.yaml", root.path().join("levels.yaml")).unwrap();
    symlink("..data/p.yaml", root.path().join("p.yaml")).unwrap();

    let server = TestServer::start(root.path(), CacheConfig::default()).await;
    let before = server.engine.policy().revision.clone();
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&server.engine),
        root.path().to_path_buf(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = WatchOptions {
        poll: None, // notifications only: this tests the watcher
        ..WatchOptions::default()
    };
    let watcher = tokio::spawn(stepup::watch(reloader, options, async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let v2 = root.path().join("..2026_02");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("levels.yaml"), LEVELS).unwrap();
    std::fs::write(v2.join("p.yaml"), policy("challenge")).unwrap();
    symlink("..2026_02", root.path().join("..data_tmp")).unwrap();
    std::fs::rename(root.path().join("..data_tmp"), root.path().join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();

    let engine = Arc::clone(&server.engine);
    wait_for(|| engine.policy().revision != before).await;
    let mut client = server.client().await;
    assert_eq!(
        client
            .decide(request())
            .await
            .unwrap()
            .into_inner()
            .outcome(),
        Outcome::Challenge
    );
    let _ = stop_tx.send(());
    watcher.await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchers_own_reads_do_not_trigger_reloads() {
    let dir = set_dir("deny");
    let server = TestServer::start(dir.path(), CacheConfig::default()).await;
    let reloader = Arc::new(Reloader::new(
        Arc::clone(&server.engine),
        dir.path().to_path_buf(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let options = WatchOptions {
        poll: None,
        ..WatchOptions::default()
    };
    let watcher = tokio::spawn(stepup::watch(reloader, options, async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A broken file is rejected once. Reading the directory to reload it
    // must not count as a change (inotify reports opens and reads).
    std::fs::write(dir.path().join("p.yaml"), "rules: [").unwrap();
    let status = server.engine.reload_status();
    wait_for(|| status.failed.load(Ordering::Relaxed) >= 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status.failed.load(Ordering::Relaxed),
        1,
        "a reload loop on our own reads"
    );
    let _ = stop_tx.send(());
    watcher.await.unwrap();
    server.stop().await;
}
