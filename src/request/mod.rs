//! The request: what a caller sends to be decided (`DecideRequest`), as
//! every other module reads it. One place for its shape:
//!
//! - [`view`]: the field table and borrowed views of a request (the names
//!   conditions, the cache key and the schema checker resolve);
//! - [`validate`]: the limits and the validation of a request from outside
//!   (bad input names its field);
//! - [`json`]: the request's JSON form, as the decision log writes it;
//! - [`read`]: a request read from JSON text, errors naming the field;
//! - [`key`]: the injective encoding of the values a policy set reads, for
//!   the decision cache.
//!
//! It imports nothing of the crate but the generated protobuf types and
//! the leaf helpers (durations).

pub(crate) mod json;
pub(crate) mod key;
pub(crate) mod read;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod validate;
pub(crate) mod view;

pub use validate::{
    InvalidRequest, MAX_DEPTH, MAX_ENTRIES, MAX_STRING_BYTES, validate, validate_within,
    within_skew,
};
