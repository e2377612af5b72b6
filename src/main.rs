//! The `stepup` binary: parses the command line, sets up logging, calls into
//! the library and maps failures to exit codes (see `stepup --help`).

use std::process::ExitCode;

/// mimalloc: a decision allocates a few dozen small objects, often freed on
/// another thread (the decision log's writer); glibc's allocator measurably
/// slows that down under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use stepup::cli::{self, Cli, Command, Failure};
use stepup::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => cli::check(&args),
        Command::Eval(args) => cli::eval(&args),
        Command::Test(args) => cli::test(&args),
        Command::Replay(args) => cli::replay(&args),
        Command::Serve(args) => serve(&args),
    };
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::from(cli::EXIT_OK)
        }
        Err(Failure { message, code }) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::from(code)
        }
    }
}

fn serve(args: &cli::ServeArgs) -> Result<String, Failure> {
    let config =
        Config::resolve(args.overrides(), args.config.as_deref()).map_err(|e| Failure {
            message: e
                .problems
                .iter()
                .map(|p| format!("error: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
            code: cli::EXIT_USAGE,
        })?;
    // One worker per core the process may use (cgroup quotas and CPU
    // affinity included); with a single core, a work-stealing scheduler
    // only adds overhead, so run everything on one thread.
    let workers = args
        .worker_threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = builder.enable_all().build().map_err(|e| Failure {
        message: format!("error: cannot start the runtime: {e}"),
        code: 1,
    })?;
    // The OTLP exporters need the runtime to exist when they are built.
    let (telemetry, engine, metrics) = {
        let _rt = runtime.enter();
        let telemetry = stepup::telemetry::logging::init(&config.log_level, config.log_format);
        let engine = match cli::service_for(&config) {
            Ok(e) => e,
            Err(e) => {
                telemetry.shutdown();
                return Err(e);
            }
        };
        let metrics = if stepup::telemetry::otlp::metrics_requested() {
            match stepup::telemetry::otlp::start_metrics(
                engine.metrics(),
                std::sync::Arc::clone(&engine) as _,
            ) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::error!("OTLP metrics are configured but cannot start: {e}");
                    None
                }
            }
        } else {
            None
        };
        (telemetry, engine, metrics)
    };
    let served = runtime.block_on(stepup::run(engine, &config, shutdown_signal()));
    if let Some(m) = metrics
        && let Err(e) = m.shutdown()
    {
        tracing::warn!("OTLP metrics shutdown: {e}");
    }
    telemetry.shutdown();
    served.map_err(|e| Failure {
        message: format!("error: {e}"),
        code: cli::EXIT_USAGE,
    })?;
    Ok(String::new())
}

/// Completes on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot listen for SIGTERM: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
