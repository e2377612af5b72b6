//! Telemetry: metrics ([`metrics`], with the `process_*` ones read from
//! `/proc`, and their OTLP export in [`otlp`]), the decision log
//! ([`decision_log`]), and the logging and tracing setup ([`logging`]).

pub mod decision_json;
pub mod decision_log;
pub mod logging;
pub mod metrics;
pub mod otlp;
mod process;
