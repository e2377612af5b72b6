//! The policy playground (`stepup playground`): a local web page, served by
//! the binary itself, to edit a policy set, decide scenarios against the
//! edited set, walk through a challenge and its step-up, and turn a scenario
//! into a test case. Its JSON API (`/api/v1/...`, see [`api`]) works for
//! tools too.
//!
//! Safe by default: it binds loopback, evaluates only the edited set held
//! in memory with the cost limits `serve` uses, and writes nothing unless
//! started with `--write`, and then only policy files and `*_test.yaml`
//! suites inside the policy directory ([`save`]).

pub mod api;
mod http;
pub mod save;
pub mod schema;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::lists::ListsConfig;
use crate::policy::CostLimits;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7180";

/// The largest request body the API reads (the files of a set and a
/// scenario); larger ones are refused with 413.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// What the playground serves and may do.
#[derive(Clone, Debug)]
pub struct Options {
    /// The policy directory: its files are the set the page starts from.
    pub dir: PathBuf,
    /// Whether the page may write policy files and `*_test.yaml` suites in
    /// `dir`.
    pub write: bool,
    /// A replay log (JSON lines) whose requests are offered as presets.
    pub requests: Option<PathBuf>,
    /// The IP lists and GeoIP database, as `serve` would load them.
    pub lists: ListsConfig,
    /// The cost limits, as `serve` would check them.
    pub limits: CostLimits,
}

/// Why the playground cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address is not `IP:PORT`.
    #[error("invalid listen address `{0}`: expected IP:PORT such as 127.0.0.1:7180")]
    Address(String),
    /// The address cannot be bound.
    #[error("cannot listen on `{addr}`: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The policy directory cannot be read.
    #[error("cannot read policy directory `{dir}`: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The requests file cannot be read.
    #[error("cannot read requests file `{file}`: {source}")]
    Requests {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime cannot start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Parses a listen address; whether it is loopback is the caller's to warn
/// about.
pub fn listen_address(text: &str) -> Result<SocketAddr, StartError> {
    text.parse()
        .map_err(|_| StartError::Address(text.to_owned()))
}

/// Binds `addr` and serves the playground until `shutdown` completes.
/// `bound` is called with the address actually bound (port 0 picks one)
/// before the first connection is accepted.
pub fn run(
    options: Options,
    addr: SocketAddr,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = Arc::new(api::State::new(options)?);
    // Requests compile and evaluate conditions on the blocking pool: its
    // threads get the stack the condition bounds are tested on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(4)
        .thread_stack_size(crate::expr::limits::STACK_BYTES)
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    bound(local);
    runtime.block_on(http::serve(listener, state, shutdown));
    Ok(())
}

/// `stepup playground`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 stopped by SIGINT or SIGTERM, 2 an invalid flag, config or requests file, 3 the policy directory cannot be read, 4 the address cannot be bound."
)]
pub struct Args {
    /// Directory of policy files and their test suites: the set the page
    /// starts from [default: the config file's `policies`].
    #[arg(long, env = "STEPUP_POLICIES", value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Listen address, IP:PORT. The page evaluates whatever it is sent: a
    /// non-loopback address starts with a warning.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Allow "save as test case" to append cases to `*_test.yaml` files
    /// inside DIR, and "save file" to write an edited policy file or suite
    /// back when the set stays valid (nothing outside DIR is ever written).
    #[arg(long)]
    pub write: bool,
    /// A replay log (JSON lines: DecideRequests or decision-log lines)
    /// whose requests are offered as presets.
    #[arg(long, value_name = "FILE.jsonl")]
    pub requests: Option<PathBuf>,
    /// Config file (TOML) whose `[lists]` and `[limits]` apply, as `serve`
    /// would apply them.
    #[arg(long, env = "STEPUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}
