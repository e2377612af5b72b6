//! The data model's rules: caps, time order, pruning, places, merge.

use super::*;

/// Histories written by a version that kept a keyed hash of the client
/// IP in the last place (a shared Redis store may still hold them) read
/// as if it were not there.
#[test]
fn reads_places_with_the_old_ip_field() {
    let h = SubjectHistory {
        last_place: Some(Place {
            at: 5,
            country: Some(*b"DE"),
            coords: Some((52.5, 13.4)),
        }),
        ..SubjectHistory::default()
    };
    let mut old = serde_json::to_value(&h).unwrap();
    old["last_place"]["ip"] = serde_json::json!(12_345_u64);
    let back: SubjectHistory = serde_json::from_value(old).unwrap();
    assert_eq!(back, h);
}

fn obs(device: u64, action: &str, at: Millis) -> Observation {
    Observation {
        subject: SubjectKey(1),
        device: Some(device),
        action: Arc::from(action),
        at,
        place: None,
        outcome: Verdict::Allow,
        session_level: None,
        makes_known: false,
    }
}

#[test]
fn caps_devices_and_events() {
    let limits = Limits {
        max_devices: 2,
        max_events: 3,
        ..Limits::default()
    };
    let mut h = SubjectHistory::default();
    for i in 0..10 {
        h.observe(
            &obs(i % 4, "a.b", 1000 + i64::try_from(i).unwrap()),
            &limits,
        );
    }
    assert_eq!(h.devices.len(), 2);
    assert_eq!(h.events.len(), 3);
    assert_eq!(h.count("a.*", 1009, 60_000), 3);
    assert_eq!(h.count("x", 1009, 60_000), 0);
    assert_eq!(h.count_up_to("a.*", 1009, 60_000, 2), 2);
    assert_eq!(h.count_up_to("a.*", 1009, 60_000, 5), 3);
}

#[test]
fn a_backdated_event_hides_nothing_from_count() {
    let limits = Limits::default();
    let mut h = SubjectHistory::default();
    let now = 10 * 3_600_000;
    for i in 0..10 {
        h.observe(&obs(1, "payments.refund", now - 60_000 + i), &limits);
    }
    // Two hours back, arriving last.
    h.observe(&obs(1, "payments.refund", now - 7_200_000), &limits);
    assert_eq!(h.count("payments.refund", now, 3_600_000), 10);
    assert_eq!(h.count("payments.refund", now, 3 * 3_600_000), 11);
    let times: Vec<Millis> = h.events.iter().map(|e| e.at).collect();
    assert!(times.is_sorted(), "{times:?}");
}

#[test]
fn backdated_events_and_failures_keep_time_order_within_the_caps() {
    let limits = Limits {
        max_events: 3,
        ..Limits::default()
    };
    let mut h = SubjectHistory::default();
    for at in [50, 10, 40, 30, 20, 60] {
        h.observe(&obs(1, "a", at), &limits);
        h.step_up(
            &StepUpReport {
                subject: SubjectKey(1),
                session: None,
                device: None,
                acr: None,
                amr: Vec::new(),
                auth_time: at,
                at,
                success: false,
            },
            &limits,
        );
    }
    let times: Vec<Millis> = h.events.iter().map(|e| e.at).collect();
    assert_eq!(times, [40, 50, 60], "the newest three, oldest first");
    assert_eq!(h.failures, [10, 20, 30, 40, 50, 60]);
    assert_eq!(h.failures_since(60), 6);
}

#[test]
fn expires_old_entries() {
    let limits = Limits::default();
    let mut h = SubjectHistory::default();
    h.observe(&obs(1, "a", 0), &limits);
    h.observe(&obs(2, "a", limits.event_retention + 10), &limits);
    h.observe(&obs(2, "a", limits.event_retention + 20), &limits);
    assert_eq!(
        h.events.len(),
        2,
        "the first event is past retention, once a second update agrees"
    );
    h.observe(&obs(2, "a", limits.retention + 10), &limits);
    h.observe(&obs(2, "a", limits.retention + 20), &limits);
    assert_eq!(h.devices.len(), 1, "device 1 is forgotten");
}

fn failure(at: Millis) -> StepUpReport {
    StepUpReport {
        subject: SubjectKey(1),
        session: None,
        device: None,
        acr: None,
        amr: Vec::new(),
        auth_time: at,
        at,
        success: false,
    }
}

const HOUR: Millis = 3_600_000;

/// A subject seen at `now` with two devices, a failed step-up, a live
/// elevation and ten events.
fn busy(now: Millis, limits: &Limits) -> SubjectHistory {
    let mut h = SubjectHistory::default();
    for i in 0..10 {
        h.observe(
            &obs(
                1 + i % 2,
                "payments.refund",
                now - 100 + i64::try_from(i).unwrap(),
            ),
            limits,
        );
    }
    h.step_up(&failure(now - 50), limits);
    h.step_up(
        &StepUpReport {
            session: Some(7),
            acr: Some(Arc::from("aal2")),
            success: true,
            ..failure(now - 40)
        },
        limits,
    );
    h
}

#[test]
fn a_future_dated_update_prunes_nothing() {
    let limits = Limits {
        retention: 24 * HOUR,
        ..Limits::default()
    };
    // Now by the server's clock: the pruning cap is real time.
    let now = chrono::Utc::now().timestamp_millis();
    let before = busy(now, &limits);
    // Two days ahead: a decision and a step-up report.
    let mut h = before.clone();
    h.observe(&obs(3, "x", now + 48 * HOUR), &limits);
    h.step_up(&failure(now + 48 * HOUR), &limits);
    // Then the real stream goes on.
    h.observe(&obs(1, "payments.refund", now + 60_000), &limits);
    h.observe(&obs(1, "payments.refund", now + 2 * 60_000), &limits);
    let later = now + 3 * 60_000;
    assert_eq!(h.failures_since(later), before.failures_since(later));
    assert_eq!(h.count("payments.refund", later, HOUR), 12);
    assert!(
        h.elevation(7, later).is_some(),
        "the elevation is still live"
    );
    assert_eq!(h.devices.len(), 3, "no device forgotten");
    assert!(h.pruned_at <= later, "{}", h.pruned_at);
    // A lone outlier in a replayed timeline (older than the clock) prunes
    // nothing either.
    let then = 100 * 24 * HOUR;
    let mut h = busy(then, &limits);
    h.step_up(&failure(then + 48 * HOUR), &limits);
    h.observe(&obs(1, "payments.refund", then + 60_000), &limits);
    assert_eq!(h.failures_since(then + 60_000), 1);
    assert!(h.elevation(7, then + 60_000).is_some());
}

fn place(at: Millis, coords: (f64, f64)) -> Place {
    Place {
        at,
        country: None,
        coords: Some(coords),
    }
}

const BERLIN: (f64, f64) = (52.52, 13.405);
const POTSDAM: (f64, f64) = (52.39, 13.06);
const SYDNEY: (f64, f64) = (-33.87, 151.21);

#[test]
fn a_future_dated_place_pins_nothing() {
    let limits = Limits::default();
    let now = 100 * 24 * HOUR;
    let mut h = SubjectHistory::default();
    let at = |t: Millis, c| Observation {
        place: Some(place(t, c)),
        ..obs(1, "a", t)
    };
    h.observe(&at(now, BERLIN), &limits);
    h.observe(&at(now + 48 * HOUR, SYDNEY), &limits);
    for i in 1..=10 {
        let t = now + i * 600_000;
        let last = h.place_at(t).unwrap();
        assert_eq!(last.at, t - 600_000, "the real previous place at {i}");
        assert_eq!(
            super::super::geo::travel_kmh(&last, &place(t, POTSDAM)),
            0.0
        );
        h.observe(&at(t, POTSDAM), &limits);
    }
    assert_eq!(h.places().count(), MAX_PLACES);
    assert_eq!(h.seen_by(now + HOUR), now + 6 * 600_000);
    // Once its time has come, the future place is the last one.
    assert_eq!(
        h.place_at(now + 49 * HOUR).map(|p| p.coords),
        Some(Some(SYDNEY))
    );
}

#[test]
fn a_backdated_place_is_kept_in_time_order() {
    let limits = Limits::default();
    let mut h = SubjectHistory::default();
    for t in [100, 300, 200] {
        h.observe(
            &Observation {
                place: Some(place(t, BERLIN)),
                ..obs(1, "a", t)
            },
            &limits,
        );
    }
    let times: Vec<Millis> = h.places().map(|p| p.at).collect();
    assert_eq!(times, [100, 200, 300]);
    assert_eq!(h.place_at(250).map(|p| p.at), Some(200));
    assert_eq!(h.place_at(50), None);
}

#[test]
fn vectors_stay_within_their_byte_bound() {
    let limits = Limits::default();
    let mut h = SubjectHistory::default();
    let long: Arc<str> = Arc::from("m".repeat(1000));
    for i in 0..10_000 {
        let at = 1_000_000 + i;
        h.observe(
            &Observation {
                place: Some(place(at, BERLIN)),
                ..obs(u64::try_from(i % 40).unwrap(), "a", at)
            },
            &limits,
        );
        h.step_up(
            &StepUpReport {
                session: Some(u64::try_from(i % 9).unwrap()),
                acr: Some(Arc::clone(&long)),
                amr: vec![Arc::from("otp"); 64],
                success: i % 2 == 0,
                ..failure(at)
            },
            &limits,
        );
        let other = h.clone();
        h.merge(&other, &limits);
    }
    assert_eq!(h.events.len(), limits.max_events);
    assert!(h.events.capacity() <= limits.max_events.next_power_of_two());
    assert!(
        h.elevations
            .iter()
            .all(|e| e.acr.is_none() && e.amr.len() == MAX_AMR)
    );
    assert!(
        h.heap_bytes() <= SubjectHistory::max_heap_bytes(&limits),
        "{} > {}",
        h.heap_bytes(),
        SubjectHistory::max_heap_bytes(&limits)
    );
}

#[test]
fn step_ups_elevate_and_failures_count() {
    let limits = Limits::default();
    let mut h = SubjectHistory::default();
    let mut r = StepUpReport {
        subject: SubjectKey(1),
        session: Some(7),
        device: Some(3),
        acr: Some(Arc::from("aal2")),
        amr: vec![Arc::from("otp")],
        auth_time: 1000,
        at: 1000,
        success: false,
    };
    h.step_up(&r, &limits);
    h.step_up(&r, &limits);
    assert_eq!(h.failures_since(2000), 2);
    assert!(h.elevation(7, 2000).is_none());
    r.success = true;
    h.step_up(&r, &limits);
    assert!(h.elevation(7, 2000).is_some());
    assert!(h.elevation(7, 1000 + limits.elevation).is_none());
    assert!(h.devices.first().unwrap().known);
    assert_eq!(h.failures_since(1000 + FAILURE_WINDOW + 1), 0);
}

#[test]
fn glob_agrees_with_the_engine() {
    let patterns = [
        "payments.*",
        "*",
        "a*a",
        "account.*.change",
        "*.delete",
        "x",
        "a**b",
        "*b*",
    ];
    let actions = [
        "payments.refund",
        "payments",
        "a",
        "aa",
        "account.email.change",
        "env.delete",
        "x",
        "ab",
        "abc",
        "",
    ];
    for p in patterns {
        for a in actions {
            assert_eq!(glob(p, a), crate::glob::matches(p, a), "{p} {a}");
        }
    }
}

#[test]
fn merge_is_a_union() {
    let limits = Limits::default();
    let mut a = SubjectHistory::default();
    let mut b = SubjectHistory::default();
    a.observe(&obs(1, "x", 10), &limits);
    b.observe(&obs(2, "y", 20), &limits);
    b.observe(&obs(1, "x", 10), &limits);
    a.merge(&b, &limits);
    assert_eq!(a.devices.len(), 2);
    assert_eq!(a.events.len(), 2);
    assert_eq!(a.last_seen, 20);
}
