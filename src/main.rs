//! The `stepup` binary: parses the command line, sets up logging, calls into
//! the library and maps failures to exit codes (see `stepup --help`).

use std::io::{ErrorKind, Write};
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
    let (output, message, code) = match result {
        Ok(output) => (output, String::new(), cli::EXIT_OK),
        Err(Failure {
            output,
            message,
            code,
        }) => (output, message, code),
    };
    // A reader that stops early (`stepup eval ... | head -1`) closes the
    // pipe: that is its choice, not a failure of the command.
    if let Err(e) = print(&mut std::io::stdout().lock(), &output)
        && e.kind() != ErrorKind::BrokenPipe
    {
        let _ = print(
            &mut std::io::stderr().lock(),
            &format!("error: cannot write to standard output: {e}"),
        );
        return ExitCode::from(cli::EXIT_RUNTIME);
    }
    // Nowhere left to report a failure to write the error itself.
    let _ = print(&mut std::io::stderr().lock(), &message);
    ExitCode::from(code)
}

/// Writes `text` and a newline, unless `text` is empty; errors are returned,
/// not panicked on as `println!` does.
fn print(w: &mut impl Write, text: &str) -> std::io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    writeln!(w, "{text}")?;
    w.flush()
}

fn serve(args: &cli::ServeArgs) -> Result<String, Failure> {
    let config = Config::resolve(args.overrides(), args.config.as_deref()).map_err(|e| {
        Failure::usage(
            e.problems
                .iter()
                .map(|p| format!("error: {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
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
    let runtime = builder
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("error: cannot start the runtime: {e}")))?;
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
    served.map_err(|e| Failure::runtime(format!("error: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The write end of a pipe whose reader is gone.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_is_an_error_to_handle_not_a_panic() {
        assert_eq!(
            print(&mut Closed, "{}").unwrap_err().kind(),
            ErrorKind::BrokenPipe
        );
        assert!(print(&mut Closed, "").is_ok(), "nothing to write");
        let mut out = Vec::new();
        print(&mut out, "{}").unwrap();
        assert_eq!(out, b"{}\n");
    }
}
