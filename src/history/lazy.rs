//! The history a decision reads, built from the store on the first read of
//! `history` and kept for recording the decision afterwards.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};

use super::store::Entry;
use super::{History, ItemKey, Millis, Place, SubjectKey};
use crate::expr::history::{Recall, View};
use crate::policy::PolicySet;
use crate::proto::v1::DecideRequest;

/// The keyed hashes and place of one request.
#[derive(Clone, Copy, Debug)]
pub struct Lookups {
    /// The subject.
    pub subject: SubjectKey,
    /// The device, if named.
    pub device: Option<ItemKey>,
    /// Where from, if known.
    pub place: Option<Place>,
}

/// A built view and what building it looked up: recording the decision
/// reuses them instead of hashing, locating and finding the subject again.
#[derive(Debug)]
pub struct Built {
    /// What conditions read.
    pub view: View,
    /// The request's subject, device and place (none: no subject, or
    /// history off).
    pub lookups: Option<Lookups>,
    /// The subject's entry in the local store, if it has one.
    pub(crate) entry: Option<Arc<Entry>>,
}

/// The history of one decision, built on first read.
pub struct Lazy<'a> {
    source: Option<&'a History>,
    policy: &'a PolicySet,
    request: &'a DecideRequest,
    now: Millis,
    cell: OnceLock<Built>,
}

impl<'a> Lazy<'a> {
    /// The history of `request`'s subject at `now`, from `source` (an empty
    /// one without), located with `policy`'s GeoIP database.
    pub fn new(
        source: Option<&'a History>,
        policy: &'a PolicySet,
        request: &'a DecideRequest,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            source,
            policy,
            request,
            now: now.timestamp_millis(),
            cell: OnceLock::new(),
        }
    }

    /// The view and its lookups (built now if not yet).
    fn get(&self) -> &Built {
        self.cell.get_or_init(|| match self.source {
            Some(h) => h.view(self.policy, self.request, self.now),
            None => Built {
                view: View::empty(self.now),
                lookups: None,
                entry: None,
            },
        })
    }

    /// The view, if it was built (the decision read `history`).
    pub fn built(&self) -> Option<&Built> {
        self.cell.get()
    }
}

impl Recall for Lazy<'_> {
    fn view(&self) -> &View {
        &self.get().view
    }
}
