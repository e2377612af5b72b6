//! The long help texts of the `stepup` command line: examples, JSON output
//! shapes and exit codes per subcommand (clap's `after_help` and
//! `after_long_help`), kept apart from the flags they describe.

pub(super) const EXIT_HELP: &str = "\
Exit codes:
  0  success (also when a reader closes the output pipe early)
  1  a check failed (a failing policy test; with --require-coverage, an unmatched rule)
  2  usage or invalid input: flags, no policy directory given, config or TLS file, context or
     requests file, test suite
  3  the policy set is invalid (or its directory cannot be read)
  4  runtime failure: cannot bind or start, an I/O error

The policy directory is named by --policies DIR or STEPUP_POLICIES in every command
(serve: or `policies` in the config file). `stepup <command> --help` shows examples.";

pub(super) const SERVE_HELP: &str = "\
Examples:
  stepup serve --policies /etc/stepup/policies
  STEPUP_POLICIES=policies stepup serve --listen unix:/run/stepup/stepup.sock --admin off
  stepup serve --config /etc/stepup/stepup.toml --log-format json

Exit codes: 0 stopped by SIGTERM or SIGINT after in-flight calls finished; 2 an invalid flag,
environment variable or config file, no policy directory, or TLS files that do not load; 3 the
policy set is invalid; 4 cannot bind a listener, set up the history backend or decision log, or
serve.";

pub(super) const CHECK_HELP: &str = "\
Examples:
  stepup check --policies policies
  stepup check --policies policies --costs --format json | jq .costs

--format json prints one JSON document: {\"valid\": bool, \"revision\": \"sha256:...\" or null,
\"errors\": N, \"warnings\": N, \"diagnostics\": [{\"severity\", \"code\", \"message\", \"file\",
\"location\", \"rule_id\", \"help\"}] (the last four when known), and with --costs \"costs\"};
on standard output, valid or not (exit 3 when not).

Exit codes: 0 the set is valid (warnings allowed); 2 no policy directory given or an invalid
config file; 3 the set is invalid or its directory cannot be read.";

pub(super) const EVAL_HELP: &str = "\
Examples:
  stepup eval --policies policies --context examples/refund.json
  stepup eval --policies policies --context - --format text < request.json

--format json (the default) prints the DecideResponse in its proto3 JSON form (camelCase
fields: outcome, requirements, acrValues, maxAge, wwwAuthenticate, risk, reasons, errors,
decisionId, policyRevision, with --explain trace). --format text prints the outcome, each
requirement, the WWW-Authenticate value, the risk, the reasons and the decision id, one per
line, then with --explain a `trace:` line per signal and rule.

Exit codes: 0 decided (whatever the outcome); 2 no policy directory, an unreadable context file,
a context that is not a valid DecideRequest, or an invalid config file; 3 the policy set is
invalid; 4 standard input cannot be read.";

pub(super) const TEST_EXIT_HELP: &str = "Exit codes: 0 every case passes, 1 a case fails (or, with --require-coverage, a rule is matched by no case), 2 the suites are invalid (or no policy directory, an invalid config file), 3 the policies are invalid, 4 the JUnit report cannot be written.";

pub(super) const TEST_HELP: &str = "\
Examples:
  stepup test --policies policies
  stepup test --policies policies --filter refund --require-coverage --junit report.xml

--format json prints one JSON document on standard output: {\"revision\", \"passed\": N,
\"failed\": N, \"cases\": [{\"suite\", \"case\", \"file\", \"line\", \"passed\", \"checks\", and when
failed \"actual\", \"trace\"}], \"coverage\": {\"rules\", \"signals\", \"unmatched_rules\",
\"unfired_signals\"}}; invalid suites or policies print {\"valid\": false, \"errors\": N,
\"diagnostics\": [...]} (as check does), also on standard output.

Exit codes: 0 every case passes, 1 a case fails (or, with --require-coverage, a rule is matched
by no case), 2 the suites are invalid (or no policy directory, an invalid config file), 3 the
policies are invalid, 4 the JUnit report cannot be written.";

pub(super) const REPLAY_LONG_HELP: &str = "\
Examples:
  stepup replay --policies candidate --requests decisions.jsonl
  stepup replay --policies candidate --baseline current --requests - --format json < requests.jsonl

A line's clock is its request's `time`, else the line's `time`, else --now. --format json prints
one JSON document on standard output: {\"input\", \"requests\": N, \"changed\": N,
\"rules_changed_only\": N, \"candidate_revision\", \"baseline_revision\", \"transitions\":
[{\"before\", \"after\", \"changed\", \"count\", \"rules_added\", \"rules_removed\", \"examples\"}],
\"elapsed_seconds\", \"requests_per_second\"}.

Exit codes: 0 the report was printed, 2 no policy directory, an unreadable line (named by file and
line) or requests file, or an invalid config file, 3 invalid policies (candidate or baseline), 4
an I/O error while reading.";

pub(super) const COMPLETIONS_HELP: &str = "\
Examples:
  stepup completions bash > ~/.local/share/bash-completion/completions/stepup
  stepup completions zsh > ~/.zfunc/_stepup      # with fpath+=~/.zfunc before compinit
  stepup completions fish > ~/.config/fish/completions/stepup.fish
  stepup completions powershell >> $PROFILE
  eval \"$(stepup completions bash)\"          # this shell only

Exit codes: 0 printed; 2 an unknown shell.";

pub(super) const REPLAY_HELP: &str = "A line's clock is its request's `time`, else the line's `time`, else --now. Exit codes: 0 the report was printed, 2 no policy directory, an unreadable line (named by file and line) or requests file, or an invalid config file, 3 invalid policies, 4 an I/O error while reading.";
