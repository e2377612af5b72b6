//! `stepup playground`: the policy playground's web page, until SIGTERM or
//! SIGINT.

use super::serve::shutdown_signal;
use super::{EXIT_INVALID_POLICY, Failure, PolicyOptions, policy_options};

/// `stepup playground`: serves the policy playground until SIGTERM or
/// SIGINT.
pub fn playground(args: &crate::playground::Args) -> Result<String, Failure> {
    let PolicyOptions { dir, lists, limits } =
        policy_options(args.policies.as_deref(), args.config.as_deref())?;
    let addr = crate::playground::listen_address(&args.listen)
        .map_err(|e| Failure::usage(format!("error: {e}")))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the playground listens on `{addr}`, not loopback: anyone who reaches it can run policies on this machine{}",
            if args.write {
                " and write test files"
            } else {
                ""
            }
        );
    }
    let options = crate::playground::Options {
        dir,
        write: args.write,
        requests: args.requests.clone(),
        lists,
        limits,
    };
    crate::playground::run(
        options,
        addr,
        |bound| eprintln!("stepup playground: http://{bound}/"),
        shutdown_signal(),
    )
    .map_err(|e| match e {
        crate::playground::StartError::Address(_)
        | crate::playground::StartError::Requests { .. } => Failure::usage(format!("error: {e}")),
        crate::playground::StartError::Dir { .. } => {
            Failure::new(format!("error: {e}"), EXIT_INVALID_POLICY)
        }
        _ => Failure::runtime(format!("error: {e}")),
    })?;
    Ok(String::new())
}
