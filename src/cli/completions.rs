//! `stepup completions`: a shell completion script for the command line.

use super::{Cli, Failure};
use clap::CommandFactory as _;

/// `stepup completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `stepup completions`: the completion script for `shell`.
pub fn completions(args: &CompletionsArgs) -> Result<String, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "stepup", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| Failure::runtime(format!("error: the completion script is not UTF-8: {e}")))?;
    // The binary's printer ends the output with a newline of its own.
    Ok(script.trim_end().to_owned())
}
