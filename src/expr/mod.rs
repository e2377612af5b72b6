//! The condition language: what a CEL condition of a policy can read and
//! call, and how it is evaluated fast.
//!
//! - [`vals`]: the variables of one decision (`request` fields, `now`,
//!   `risk`, `history`) as CEL values borrowing the request;
//! - [`history`]: `history` as conditions read it (a [`history::View`] of
//!   one subject) and `history.count`;
//! - [`matches`]: `matches()` with the policies' patterns compiled at load;
//! - [`limits`]: the nesting and operator bounds a condition's text must
//!   keep before it is parsed;
//! - [`fast`]: native evaluation of the common condition shapes, with the
//!   interpreter as the reference.
//!
//! It sits above `request` and `lists` and below `policy`, which compiles
//! conditions against it, and `engine`, which evaluates them.

pub(crate) mod fast;
pub(crate) mod history;
pub(crate) mod limits;
pub(crate) mod matches;
pub(crate) mod vals;
