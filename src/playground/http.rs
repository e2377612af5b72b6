//! The playground's HTTP/1 listener: the page and its assets (embedded in
//! the binary: no CDN, works offline) and the JSON API of [`super::api`].
//! Bodies are bounded ([`super::MAX_BODY_BYTES`]); each call's work runs on
//! the blocking pool, so a costly edit never stalls the listener.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::api::{self, ApiError, State};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// Scripts and styles from this origin only; no frames, no plug-ins.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub(super) async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("playground listener: {e}");
            return;
        }
    };
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("playground listener: accept failed: {e}");
                    continue;
                }
            },
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(route(req, state).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("playground connection: {e}");
            }
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = CSP.parse() {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    if let Ok(v) = "no-store".parse() {
        h.insert(CACHE_CONTROL, v);
    }
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

/// Refuses what a web page elsewhere could make a browser send here: a
/// `Host` that is a domain name other than `localhost` (DNS rebinding: a
/// site's name pointed at this address would let its scripts read the
/// answers), a cross-origin `Origin`, and a POST that is not
/// `application/json` (which a form or a no-CORS fetch could send without
/// a preflight).
fn refusal(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
    };
    let host = header(hyper::header::HOST).unwrap_or("");
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if !(name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the playground answers only requests to an IP address or localhost",
        ));
    }
    if let Some(origin) = header(hyper::header::ORIGIN)
        && origin != format!("http://{host}")
    {
        return Some(error(
            StatusCode::FORBIDDEN,
            "cross-origin requests are refused",
        ));
    }
    let json = header(CONTENT_TYPE).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim() == "application/json")
    });
    if req.method() == Method::POST && !json {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as `Content-Type: application/json`",
        ));
    }
    None
}

async fn route(req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    if let Some(refused) = refusal(&req) {
        return refused;
    }
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/" | "/index.html") => {
            respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
        }
        (&Method::GET, "/app.css") => respond(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        (&Method::GET, "/app.js") => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
        }
        (&Method::GET, "/api/v1/files") => run(state, Value::Null, |s, _| api::files(s)).await,
        (&Method::GET, "/api/v1/schema") => {
            run(state, Value::Null, |_, _| {
                super::schema::request_schema().map_err(ApiError::Io)
            })
            .await
        }
        (
            &Method::POST,
            "/api/v1/evaluate" | "/api/v1/test" | "/api/v1/save-test" | "/api/v1/save-file",
        ) => {
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match path.as_str() {
                "/api/v1/evaluate" => run(state, body, api::evaluate).await,
                "/api/v1/test" => run(state, body, api::test).await,
                "/api/v1/save-file" => run(state, body, super::save::save_file).await,
                _ => run(state, body, super::save::save_test).await,
            }
        }
        (_, "/" | "/index.html" | "/app.css" | "/app.js" | "/api/v1/files" | "/api/v1/schema") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "use GET")
        }
        (_, "/api/v1/evaluate" | "/api/v1/test" | "/api/v1/save-test" | "/api/v1/save-file") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "use POST with a JSON body")
        }
        _ => error(StatusCode::NOT_FOUND, &format!("no such page `{path}`")),
    }
}

/// The body as JSON, at most [`super::MAX_BODY_BYTES`].
async fn read_json(req: Request<Incoming>) -> Result<Value, Response<Full<Bytes>>> {
    let limited = Limited::new(req.into_body(), super::MAX_BODY_BYTES);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the body is over {} bytes or broken off",
                    super::MAX_BODY_BYTES
                ),
            ));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {e}"),
        )
    })
}

/// Runs `f` on the blocking pool and answers its result.
async fn run(
    state: Arc<State>,
    body: Value,
    f: fn(&State, &Value) -> Result<Value, ApiError>,
) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(move || f(&state, &body)).await {
        Ok(Ok(v)) => json_response(StatusCode::OK, &v),
        Ok(Err(e)) => {
            let status = match e {
                ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
                ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
                ApiError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, &e.to_string())
        }
        Err(e) => {
            tracing::error!("playground: a call failed: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the call failed; see the log",
            )
        }
    }
}
