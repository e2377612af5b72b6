//! A payments API behind stepup: refunds need whatever the sidecar's
//! policies ask for (the example policies: a fresh second factor above
//! 1,000).
//!
//! The app's own authentication comes first: here a bearer token signed
//! with a shared secret (HS256, `DEMO_JWT_SECRET`) stands in for your
//! identity provider's access token; its verified claims go into the request
//! extensions, where the step-up layer reads `sub`, `sid`, `acr`, `amr` and
//! `auth_time`.
//!
//! ```text
//! stepup serve --policies policies --admin off &
//! DEMO_JWT_SECRET=... cargo run --example payments
//! curl -X POST 'http://127.0.0.1:8080/refunds?amount=2500' -H "authorization: Bearer $TOKEN"
//! ```
//!
//! Environment: `STEPUP_ADDR` (default `http://127.0.0.1:7171`), `LISTEN`
//! (default `127.0.0.1:8080`), `DEMO_JWT_SECRET` (required).

use std::sync::Arc;

use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use stepup_client::claims::StepUpClaims;
use stepup_client::proto::{DecideRequest, DecideResponse, Network, Resource, Subject};
use stepup_client::{Client, StepUpLayer};

/// The decision to ask for a request: refunds only (other routes need no
/// decision). The amount comes from the query (the body is not read before
/// the handler); the country from the edge's GeoIP header.
pub fn decide_request(request: &Request) -> Option<DecideRequest> {
    if request.uri().path() != "/refunds" {
        return None;
    }
    let claims = StepUpClaims::from_request(request)?;
    let amount = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("amount="))
        .and_then(|v| v.parse::<f64>().ok());
    let mut resource = Resource {
        r#type: "refund".into(),
        ..Resource::default()
    };
    // No amount: the policy's condition fails and the rule fails closed.
    if let Some(amount) = amount {
        resource.attributes.insert(
            "amount".into(),
            stepup_client::pbjson_types::Value::from(amount),
        );
    }
    let country = request
        .headers()
        .get("x-country")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(DecideRequest {
        action: "payments.refund".into(),
        subject: Some(Subject {
            id: claims.sub.clone()?,
            ..Subject::default()
        }),
        session: Some(claims.session()),
        network: Some(Network {
            country: country.into(),
            ..Network::default()
        }),
        resource: Some(resource),
        ..DecideRequest::default()
    })
}

/// The app: `POST /refunds?amount=N` behind the step-up layer, `GET /health`
/// without, both behind the bearer token check (an empty `secret` is
/// refused).
pub fn app(client: Client, secret: &[u8]) -> Result<Router, jsonwebtoken::errors::Error> {
    let key = Arc::new(jsonwebtoken::DecodingKey::from_secret(secret)?);
    Ok(Router::new()
        .route("/refunds", post(refund))
        .route("/health", get(|| async { "ok" }))
        .layer(StepUpLayer::new(client, decide_request))
        .layer(middleware::from_fn_with_state(key, authenticate)))
}

/// Verifies the bearer token and puts its claims in the extensions (the
/// step-up layer never verifies tokens itself).
async fn authenticate(
    State(key): State<Arc<jsonwebtoken::DecodingKey>>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    match token.map(|t| jsonwebtoken::decode::<serde_json::Value>(t, &key, &validation)) {
        Some(Ok(data)) => {
            request.extensions_mut().insert(data.claims);
            next.run(request).await
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response(),
    }
}

/// Reached only when the sidecar allowed the refund.
async fn refund(Extension(decision): Extension<DecideResponse>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "refunded": true, "decision_id": decision.decision_id }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let secret = std::env::var("DEMO_JWT_SECRET").map_err(|_| "set DEMO_JWT_SECRET")?;
    let target = std::env::var("STEPUP_ADDR").unwrap_or_else(|_| "http://127.0.0.1:7171".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let client = Client::builder(target).build()?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("payments listening on http://{listen}");
    axum::serve(listener, app(client, secret.as_bytes())?).await?;
    Ok(())
}
