#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! The session read from verified claims: typed and JSON claims in the
//! request extensions, and lenient reading of each claim.

use serde_json::json;
use stepup_client::claims::{StepUpClaims, session_from_claims};

#[test]
fn the_session_of_oidc_claims() {
    let session = session_from_claims(&json!({
        "sub": "alice", "sid": "s-1", "acr": "urn:stepup:aal2",
        "amr": ["pwd", "otp"], "auth_time": 1_700_000_000,
    }));
    assert_eq!(session.id, "s-1");
    assert_eq!(session.acr, "urn:stepup:aal2");
    assert_eq!(session.amr, ["pwd", "otp"]);
    assert_eq!(session.auth_time.unwrap().seconds, 1_700_000_000);
}

#[test]
fn a_claim_of_the_wrong_type_is_left_out_and_the_others_count() {
    let claims = StepUpClaims::from_value(&json!({
        "sub": "alice", "sid": 42, "acr": ["not", "a", "string"],
        "amr": "hwk", "auth_time": 1_700_000_000.75,
    }));
    assert_eq!(claims.sub.as_deref(), Some("alice"));
    assert_eq!(claims.sid, None);
    assert_eq!(claims.acr, None);
    assert_eq!(claims.amr, ["hwk"]);
    assert_eq!(claims.auth_time, Some(1_700_000_000));

    // Nothing known: an empty session, which meets no requirement.
    let session = session_from_claims(&json!({"auth_time": "yesterday"}));
    assert_eq!(session, Default::default());
}

#[test]
fn claims_from_the_request_extensions() {
    let mut request = http::Request::new(());
    assert_eq!(StepUpClaims::from_request(&request), None);

    request
        .extensions_mut()
        .insert(json!({"sub": "bob", "acr": "urn:stepup:aal1"}));
    let claims = StepUpClaims::from_request(&request).unwrap();
    assert_eq!(claims.sub.as_deref(), Some("bob"));
    assert_eq!(claims.session().acr, "urn:stepup:aal1");

    // A typed claims value wins over the JSON one.
    let typed: StepUpClaims =
        serde_json::from_value(json!({"sub": "carol", "amr": ["hwk"]})).unwrap();
    request.extensions_mut().insert(typed.clone());
    assert_eq!(StepUpClaims::from_request(&request), Some(typed));
}
