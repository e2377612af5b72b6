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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => cli::check(&args),
        Command::Eval(args) => cli::eval(&args),
        Command::Test(args) => cli::test(&args),
        Command::Replay(args) => cli::replay(&args),
        Command::Serve(args) => cli::serve(&args),
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
