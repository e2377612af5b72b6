//! Costly decisions run off the runtime's threads.

use std::sync::mpsc;
use std::time::Duration;

use super::*;

const LEVELS: &str =
    "apiVersion: stepup/v1\nkind: Levels\nlevels:\n  - name: aal1\n    acr: [a1]\n";

/// A service over a set with one cheap rule (`a.cheap`) and, when
/// `with_costly`, one rule of about 5,000 cost units (`a.costly`: four
/// `contains` per role over 64 roles of 1,024 bytes).
fn service_over(with_costly: bool) -> Arc<Service> {
    let mut text = format!(
        "{LEVELS}---\napiVersion: stepup/v1\nkind: Policy\nname: p\nrules:\n  \
         - id: cheap\n    actions: [a.cheap]\n    when: 'subject.id == \"x\"'\n    effect: deny\n"
    );
    if with_costly {
        text.push_str(
            "  - id: costly\n    actions: [a.costly]\n    when: >-\n      \
             subject.roles.exists(r, r.contains(\"a\") && r.contains(\"b\") && r.contains(\"c\") \
             && r.contains(\"d\"))\n    effect: deny\n",
        );
    }
    let (set, _) = PolicySet::from_str("p.yaml", &text).unwrap_or_else(|r| panic!("{r}"));
    Arc::new(Service::new(set, CacheConfig::default()))
}

#[test]
fn a_decision_is_costly_by_its_actions_worst_case() {
    let service = service_over(true);
    let policy = service.policy();
    let costly = policy.decision_cost("a.costly", COSTLY);
    assert!(costly >= COSTLY, "{costly}");
    assert!(policy.decision_cost("a.cheap", COSTLY) < COSTLY);
    assert!(service.is_costly(Some("a.costly")));
    assert!(!service.is_costly(Some("a.cheap")));
    assert!(!service.is_costly(Some("other")));
    assert!(service.is_costly(None), "some action of the set is costly");
    // A set of cheap conditions answers without looking the action up.
    let cheap = service_over(false);
    assert!(!cheap.is_costly(None));
    assert_eq!(
        cheap.policy().decision_cost("a.cheap", COSTLY),
        cheap.policy().total_cost()
    );
}

/// On a single-threaded runtime, a costly piece of work that blocks until
/// told does not stop the runtime from deciding a cheap request meanwhile.
#[test]
fn a_costly_decision_leaves_the_runtime_free() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let service = service_over(true);
            let (release, blocked) = mpsc::channel::<()>();
            let costly = tokio::spawn({
                let service = Arc::clone(&service);
                async move { service.run_isolated(move |_| blocked.recv().is_ok()).await }
            });
            tokio::task::yield_now().await;
            // The runtime's one thread is free: a cheap decision runs now.
            let req = crate::proto::v1::DecideRequest {
                action: "a.cheap".into(),
                subject: Some(crate::proto::v1::Subject {
                    id: "x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let cheap = Some(service.decide(&req, Utc::now(), false).outcome);
            release.send(()).unwrap();
            let released = costly.await.unwrap();
            done_tx.send((cheap, released)).unwrap();
        });
    });
    // Had the costly work run on the runtime's thread, nothing would come.
    let (cheap, released) = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the runtime was held up by the costly work");
    assert_eq!(cheap, Some(crate::engine::Outcome::Deny));
    assert_eq!(released, Some(true));
}

#[test]
fn costly_decisions_run_a_bounded_number_at_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let service = service_over(true);
        let slots = super::costly_slots();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..slots * 4)
            .map(|_| {
                let (service, running, most) = (
                    Arc::clone(&service),
                    Arc::clone(&running),
                    Arc::clone(&most),
                );
                tokio::spawn(async move {
                    service
                        .run_isolated(move |_| {
                            use std::sync::atomic::Ordering::SeqCst;
                            let now = running.fetch_add(1, SeqCst) + 1;
                            most.fetch_max(now, SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(()));
        }
        let most = most.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(most, slots, "at most {slots} at once, and that many in use");
    });
}
