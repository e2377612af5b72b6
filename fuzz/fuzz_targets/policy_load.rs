//! The policy loader: YAML + CEL text -> load, compile and lint (what
//! `stepup check` runs), the diagnostics rendered as text and JSON, and a
//! few decisions under the set when it loads. Errors are fine; panics are
//! not.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use stepup::PolicySet;
use stepup::proto::v1::DecideRequest;

/// Requests touching every part of the request schema.
fn requests() -> &'static [DecideRequest] {
    static REQUESTS: OnceLock<Vec<DecideRequest>> = OnceLock::new();
    REQUESTS.get_or_init(|| {
        let full = r#"{
            "action": "payments.refund",
            "subject": { "id": "alice", "tenant": "acme", "roles": ["support", "admin"],
                         "attributes": { "usual_countries": ["DE", "FR"], "timezone": "Europe/Berlin" } },
            "session": { "id": "s-1", "acr": "urn:stepup:aal1", "amr": ["pwd"],
                         "authTime": "2026-11-27T09:00:00Z" },
            "device": { "id": "d-1", "trusted": false, "platform": "ios", "attributes": { "jailbroken": true } },
            "network": { "ip": "203.0.113.7", "country": "KP", "asn": 3320, "attributes": { "vpn": true } },
            "resource": { "type": "order", "id": "o-1", "attributes": { "amount": 2500, "currency": "EUR",
                          "tags": ["a", "b"], "nested": { "x": [1, 2.5, null] } } },
            "attributes": { "channel": "web" }
        }"#;
        let minimal = r#"{ "action": "account.email.change", "subject": { "id": "bob" } }"#;
        [full, minimal]
            .iter()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PolicySet::from_str("fuzz.yaml", text) {
        Ok((set, report)) => {
            let _ = report.to_string();
            let _ = serde_json::to_string(&report);
            for d in set.unused_action_warnings(&["payments.refund".to_owned()]) {
                let _ = d.to_string();
            }
            let set = Arc::new(set);
            for req in requests() {
                let d =
                    stepup::internal::decide_with(Arc::clone(&set), None, req, common::now(), true);
                let _ = stepup::internal::response(&d);
            }
        }
        Err(report) => {
            let _ = report.to_string();
            let _ = serde_json::to_string(&report);
        }
    }
});
