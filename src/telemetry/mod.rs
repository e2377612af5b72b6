//! Telemetry: metrics ([`metrics`]), the decision log ([`decision_log`]) and
//! the logging setup.

pub mod decision_json;
pub mod decision_log;
pub mod logging;
pub mod metrics;
pub mod otlp;
