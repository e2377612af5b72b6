//! The admin HTTP listener (`--admin`, default `127.0.0.1:7172`): `/livez`,
//! `/readyz`, `/metrics` (Prometheus text) and `/policy` (the serving set
//! and the last reload error). `/policy` shows no policy source text: a
//! reload error's diagnostics come without their source excerpts (policy
//! files may name people or accounts in their conditions) unless
//! `STEPUP_ADMIN_SHOW_SOURCE=true` asks for them. It runs on its own thread and runtime, so a
//! slow scraper never competes with decisions for the gRPC runtime's
//! workers, and a busy gRPC runtime never starves the probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::service::Service;

/// Environment variable that makes `/policy` show the source excerpts of a
/// failed reload's diagnostics (`true`; default: hidden).
pub const SHOW_SOURCE_ENV: &str = "STEPUP_ADMIN_SHOW_SOURCE";

/// What the admin listener shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdminOptions {
    /// Whether `/policy` shows policy source text (the excerpts in a failed
    /// reload's diagnostics).
    pub show_source: bool,
}

impl AdminOptions {
    /// The options [`SHOW_SOURCE_ENV`] sets (anything but `true` or `1`
    /// hides the source).
    pub fn from_env() -> Self {
        let show = std::env::var(SHOW_SOURCE_ENV).is_ok_and(|v| v == "true" || v == "1");
        Self { show_source: show }
    }
}

/// A running admin listener.
pub struct Admin {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` now (so a bad address fails at start-up) and serves on a
    /// thread of its own. `ready` is what `/readyz` reports. What it shows
    /// is set by the environment ([`AdminOptions::from_env`]).
    pub fn start(
        addr: SocketAddr,
        engine: Arc<Service>,
        ready: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        Self::start_with(addr, engine, ready, AdminOptions::from_env())
    }

    /// As [`Admin::start`], showing what `options` allows.
    pub fn start_with(
        addr: SocketAddr,
        engine: Arc<Service>,
        ready: Arc<AtomicBool>,
        options: AdminOptions,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("stepup-admin".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("admin listener: cannot start its runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(serve(listener, engine, ready, options, stopped));
            })?;
        tracing::info!(%addr, "serving admin HTTP (/livez /readyz /metrics /policy)");
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the listener and waits for its thread.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    engine: Arc<Service>,
    ready: Arc<AtomicBool>,
    options: AdminOptions,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("admin listener: {e}");
            return;
        }
    };
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin listener: accept failed: {e}");
                    continue;
                }
            },
        };
        let engine = Arc::clone(&engine);
        let ready = Arc::clone(&ready);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = route(&req, &engine, &ready, options);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("admin connection: {e}");
            }
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// `text` without the source excerpts of its rendered diagnostics: the
/// gutter lines (`7 |     when: ...`, `  |   ^^^`) go, the headline,
/// location and help lines stay.
fn without_source(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let gutter = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|');
        if !gutter {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Answers one admin request.
fn route(
    req: &Request<Incoming>,
    engine: &Service,
    ready: &AtomicBool,
    options: AdminOptions,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        );
    }
    match req.uri().path() {
        "/livez" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            // A set is always loaded (serve refuses to start without one);
            // not ready while shutting down.
            if ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "shutting down\n".into(),
                )
            }
        }
        "/metrics" => {
            // OpenMetrics when the scraper asks for it, else text 0.0.4.
            let accept = req.headers().get(hyper::header::ACCEPT);
            let (content_type, body) = crate::telemetry::metrics::exposition(
                accept.and_then(|a| a.to_str().ok()),
                engine.render_metrics(),
            );
            text(StatusCode::OK, content_type, body)
        }
        "/policy" => {
            let policy = engine.policy();
            let reloads = engine.reload_status();
            let loaded_at: chrono::DateTime<chrono::Utc> = policy.loaded_at.into();
            let last_error = reloads.last_error().map(|(at, diagnostics)| {
                let at: chrono::DateTime<chrono::Utc> = at.into();
                let diagnostics = if options.show_source {
                    diagnostics
                } else {
                    without_source(&diagnostics)
                };
                serde_json::json!({
                    "time": at.to_rfc3339(),
                    "diagnostics": diagnostics,
                    "source_shown": options.show_source,
                })
            });
            let body = serde_json::json!({
                "revision": &*policy.revision,
                "loaded_at": loaded_at.to_rfc3339(),
                "levels": policy.levels.len(),
                "signals": policy.signals.len(),
                "rules": policy.rules.len(),
                "lists": {
                    "ip": policy
                        .lists()
                        .ip_lists()
                        .map(|(name, list, file)| {
                            (
                                name.to_owned(),
                                serde_json::json!({
                                    "file": file.display().to_string(),
                                    "prefixes": list.prefixes(),
                                }),
                            )
                        })
                        .collect::<serde_json::Map<_, _>>(),
                    "geoip_city": policy
                        .lists()
                        .geoip()
                        .map(|g| g.path().display().to_string()),
                },
                "reloads": {
                    "ok": reloads.ok.load(Ordering::Relaxed),
                    "failed": reloads.failed.load(Ordering::Relaxed),
                },
                "last_reload_error": last_error,
            });
            text(StatusCode::OK, "application/json", format!("{body:#}\n"))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /livez, /readyz, /metrics or /policy\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_excerpts_are_left_out() {
        let report = "error: unknown variable `devce` (in `r`) [unknown-variable]\n --> p/x.yaml:7:49\n  |\n7 |     when: \"subject.id == \\\"root-7\\\" && devce.trusted\"\n  |                                                 ^^^^^\n  = help: did you mean `device`?\n\nerror: the policy set is invalid (1 error)\n123 | x\n";
        let shown = without_source(report);
        assert_eq!(
            shown,
            "error: unknown variable `devce` (in `r`) [unknown-variable]\n --> p/x.yaml:7:49\n  = help: did you mean `device`?\n\nerror: the policy set is invalid (1 error)\n"
        );
        assert!(!shown.contains("root-7"));
    }
}
