//! The `stepup` binary: parses the command line, sets up logging, calls into
//! the library and maps failures to exit codes (see `stepup --help`).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

/// mimalloc: a decision allocates a few dozen small objects, often freed on
/// another thread (the decision log's writer); glibc's allocator measurably
/// slows that down under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use stepup::cli::{self, Cli, Command, Failure};

fn main() -> ExitCode {
    // Usage errors end here, with clap's message and exit code 2.
    let cli = Cli::parse_args();
    // Commands compile and evaluate conditions, which recurse as deep as a
    // condition nests: they run on a thread whose stack is known rather
    // than on the main thread, whose stack is whatever `ulimit -s` says.
    let command = std::thread::Builder::new()
        .name("stepup".into())
        .stack_size(cli::STACK_BYTES)
        .spawn(move || run(cli.command));
    let result = match command.map(std::thread::JoinHandle::join) {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(Failure {
            output: String::new(),
            message: format!("error: cannot start the command's thread: {e}"),
            code: cli::EXIT_RUNTIME,
        }),
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
    // pipe: that is its choice, not a failure of the command, which keeps
    // its own exit code (as ripgrep does).
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

/// Runs one command.
fn run(command: Command) -> Result<String, Failure> {
    match command {
        Command::Check(args) => cli::check(&args),
        Command::Eval(args) => cli::eval(&args),
        Command::Test(args) => cli::test(&args),
        Command::Replay(args) => cli::replay(&args),
        Command::Serve(args) => cli::serve(&args),
        Command::Completions(args) => cli::completions(&args),
        Command::Playground(args) => cli::playground(&args),
    }
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
