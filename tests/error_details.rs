#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // test code: a failed unwrap is a failed test
//! Google's error details (AIP-193) on the statuses stepup answers with, as
//! a client decodes them: a real server on a socket, a tonic client, and
//! tonic-types reading `grpc-status-details-bin` (`google.rpc.ErrorInfo`
//! always, `google.rpc.BadRequest` for a bad field).

mod common;

use common::{TestServer, error_info, examples};
use pbjson_types::{Timestamp, Value};
use stepup::CacheConfig;
use stepup::PolicySet;
use stepup::Service;
use stepup::history::{Enabled, History, HistoryConfig};
use stepup::proto::v1::{
    DecideBatchRequest, DecideRequest, Network, RecordStepUpRequest, Resource, Session, Subject,
};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

fn request() -> DecideRequest {
    DecideRequest {
        action: "orders.list".into(),
        subject: Some(Subject {
            id: "alice".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// INVALID_ARGUMENT whose message, BadRequest and ErrorInfo all name
/// `field` (its path by proto names) and say `description`.
fn assert_bad_field(status: &Status, field: &str, description: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), format!("`{field}`: {description}"));
    let bad = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"));
    let violations: Vec<(&str, &str)> = bad
        .field_violations
        .iter()
        .map(|v| (v.field.as_str(), v.description.as_str()))
        .collect();
    assert_eq!(violations, [(field, description)]);
    let metadata = error_info(status, "INVALID_FIELD");
    assert_eq!(metadata.get("field").map(String::as_str), Some(field));
}

#[tokio::test]
async fn a_bad_field_is_named_in_a_bad_request_violation() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    let mut c = server.client().await;
    let cases = [
        (
            DecideRequest {
                subject: None,
                ..request()
            },
            "subject.id",
            "required",
        ),
        (
            DecideRequest {
                session: Some(Session {
                    auth_time: Some(Timestamp {
                        seconds: 1_800_000_000,
                        nanos: -1,
                    }),
                    ..Default::default()
                }),
                ..request()
            },
            "session.auth_time",
            "nanos must be in 0..=999999999",
        ),
        (
            DecideRequest {
                network: Some(Network {
                    asn: 4_294_967_296,
                    ..Default::default()
                }),
                ..request()
            },
            "network.asn",
            "4294967296 is not an AS number (0 to 4294967295)",
        ),
        (
            DecideRequest {
                resource: Some(Resource {
                    attributes: [("note".to_owned(), Value::from("x".repeat(2000)))].into(),
                    ..Default::default()
                }),
                ..request()
            },
            "resource.attributes.note",
            "longer than 1024 bytes",
        ),
    ];
    for (req, field, description) in cases {
        let status = c.decide(req).await.unwrap_err();
        assert_bad_field(&status, field, description);
    }
    // A batch names the request by its index.
    let status = c
        .decide_batch(DecideBatchRequest {
            requests: vec![
                request(),
                DecideRequest {
                    subject: None,
                    ..request()
                },
            ],
            combine_challenges: false,
        })
        .await
        .unwrap_err();
    assert_bad_field(&status, "requests[1].subject.id", "required");
    // A 32-bit AS number as the int64 carries it is fine.
    let ok = DecideRequest {
        network: Some(Network {
            asn: 4_294_967_295,
            ..Default::default()
        }),
        ..request()
    };
    c.decide(ok).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_is_no_message_has_an_error_info_and_no_field() {
    let server = TestServer::start(&examples(), CacheConfig::default()).await;
    // Field 1 with wire type 7, which protobuf does not have.
    let status = common::raw_call(
        server.channel().await,
        &server.addr.to_string(),
        "/stepup.v1.DecisionService/Decide",
        common::frame(&[0x0f]),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument);
    let metadata = error_info(&status, "MALFORMED_MESSAGE");
    assert_eq!(metadata["message"], "stepup.v1.DecideRequest");
    assert!(status.get_details_bad_request().is_none());
    server.stop().await;
}

/// The identity provider whose signed tokens prove step-ups.
static IDP: std::sync::LazyLock<common::evidence::Idp> =
    std::sync::LazyLock::new(common::evidence::Idp::new);

async fn serve(history: Enabled) -> TestServer {
    let (policy, _) = PolicySet::load(&examples()).unwrap_or_else(|r| panic!("{r}"));
    let engine = Service::new(policy, CacheConfig::default())
        .with_history(History::new(HistoryConfig {
            enabled: history,
            ..HistoryConfig::default()
        }))
        .with_trust(IDP.trust_with_reporter());
    TestServer::start_engine(engine).await
}

/// `success` says whether a challenge was passed: a report without
/// evidence must say it (not saying is no failure), and one with evidence
/// cannot say false (the token proves a success).
#[tokio::test]
async fn a_step_up_report_must_say_whether_it_succeeded() {
    let server = serve(Enabled::On).await;
    let mut c = server.client().await;
    let unsaid = RecordStepUpRequest {
        subject_id: "alice".into(),
        session_id: "s-1".into(),
        success: None,
        ..Default::default()
    };
    let status = c.record_step_up(unsaid).await.unwrap_err();
    assert_bad_field(
        &status,
        "success",
        "required without `evidence` (true: the challenge was passed; false: it failed)",
    );

    let now = common::evidence::now();
    let evidence = IDP.step_up("alice", "s-1", "urn:stepup:aal2", &["otp"], now);
    let failed_with_evidence = RecordStepUpRequest {
        evidence: evidence.clone(),
        success: Some(false),
        ..Default::default()
    };
    let status = c.record_step_up(failed_with_evidence).await.unwrap_err();
    assert_bad_field(
        &status,
        "success",
        "false beside `evidence`: the evidence is the token of a passed step-up; a failure is reported without evidence, by a listed reporter",
    );
    // Nothing was recorded: the same evidence, `success` unset, opens the
    // window and counts no failure.
    let r = c
        .record_step_up(RecordStepUpRequest {
            evidence,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.stepups_failed, 0);
    assert!(r.elevation_expire_time.is_some());

    // A report without evidence from a caller that is no listed reporter.
    let status = c
        .record_step_up(RecordStepUpRequest {
            subject_id: "alice".into(),
            success: Some(false),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    error_info(&status, "REPORTER_NOT_TRUSTED");
    assert!(status.get_details_bad_request().is_none());

    // Evidence that fails a check: the reason names the check.
    let status = c
        .record_step_up(RecordStepUpRequest {
            evidence: "not.a.token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let metadata = error_info(&status, "EVIDENCE_MALFORMED");
    assert_eq!(metadata["check"], "malformed");
    server.stop().await;

    let server = serve(Enabled::Off).await;
    let mut c = server.client().await;
    let status = c
        .record_step_up(RecordStepUpRequest {
            subject_id: "alice".into(),
            success: Some(true),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    error_info(&status, "HISTORY_DISABLED");
    server.stop().await;
}
