//! The request context as CEL values, built lazily and borrowing the request:
//! a decision copies no request data into CEL. `device.trusted` resolves
//! `device` to a [`NodeVal`] over `&Device`, then reads the field on access;
//! strings are handed to CEL as borrowed `&str`.

use std::sync::Arc;

use cel::ExecutionError;
use cel::common::traits::{Container, Indexer, Sizer};
use cel::common::types::{
    self as types, CelBool, CelDouble, CelInt, CelList, CelNull, CelString, CelTimestamp, Type,
};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use chrono::{DateTime, FixedOffset};
use pbjson_types::value::Kind;

use crate::proto::v1::DecideRequest;
use crate::request::view::{self, Node};

/// The variables of one decision: the request, `now`, `history`, and (for
/// rules) `risk`.
pub struct Variables<'a> {
    /// The request.
    pub request: &'a DecideRequest,
    /// The decision's clock.
    pub now: DateTime<FixedOffset>,
    /// `risk.score` and `risk.signals`, once the signals have run.
    pub risk: Option<(i64, &'a [Arc<str>])>,
    /// `history`, built on its first read.
    pub history: Option<&'a dyn super::history::Recall>,
}

impl<'a> Variables<'a> {
    /// The same variables with `risk` (score, fired signal ids) for rules.
    pub fn with_risk<'r>(&'r self, risk: Option<&'r (u32, Arc<[Arc<str>]>)>) -> Variables<'r>
    where
        'a: 'r,
    {
        Variables {
            request: self.request,
            now: self.now,
            risk: risk.map(|(score, fired)| (i64::from(*score), &fired[..])),
            history: self.history,
        }
    }
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        match variable {
            "now" => Some(CowVal::owned(CelTimestamp::from(self.now))),
            "risk" => self
                .risk
                .map(|(score, signals)| CowVal::owned(RiskVal { score, signals })),
            "risk.score" => self
                .risk
                .map(|(score, _)| CowVal::owned(CelInt::from(score))),
            "risk.signals" => self
                .risk
                .map(|(_, signals)| CowVal::owned(signal_list(signals))),
            "history" => self.history.map(|h| CowVal::Borrowed(h.view() as &dyn Val)),
            name => match name.strip_prefix("history.") {
                // As for request paths: answer `history.x` in one call.
                Some(field) => self
                    .history
                    .and_then(|h| super::history::field(h.view(), field).ok()),
                None => resolve_path(self.request, name).map(to_val),
            },
        }
    }
}

/// Resolves a variable name, which CEL may hand us whole as a dotted path:
/// for `device.trusted` the interpreter first asks for the variable
/// `device.trusted`, then for a type of that name, then for `device` and
/// selects `trusted` on it. Answering the dotted path at once skips the
/// type lookup and the second resolution. A path we cannot follow to the end
/// resolves to nothing, so the interpreter falls back to selecting field by
/// field and reports a missing key exactly as it would have.
///
/// Names are short, so a byte loop finds the dots (`str::split`'s pattern
/// machinery costs more than the lookup itself).
fn resolve_path<'a>(req: &'a DecideRequest, name: &str) -> Option<Node<'a>> {
    let (root, mut rest) = split_segment(name);
    let mut node = view::variable(req, root)?;
    while let Some(path) = rest {
        let (segment, tail) = split_segment(path);
        node = node.member(segment)?;
        rest = tail;
    }
    Some(node)
}

/// `a.b.c` → (`a`, Some(`b.c`)); `a` → (`a`, None).
fn split_segment(path: &str) -> (&str, Option<&str>) {
    match path.bytes().position(|b| b == b'.') {
        Some(dot) => match (path.get(..dot), path.get(dot + 1..)) {
            (Some(head), Some(tail)) => (head, Some(tail)),
            _ => (path, None),
        },
        None => (path, None),
    }
}

/// A message, attributes map or struct value of the request, read on access.
#[derive(Clone, Copy, Debug)]
pub struct NodeVal<'a>(Node<'a>);

/// Converts a request node to a CEL value: scalars to CEL's own types
/// (strings borrowed), containers to a lazy [`NodeVal`].
pub fn to_val<'a>(node: Node<'a>) -> CowVal<'a, 'a> {
    match node {
        Node::Str(s) => CowVal::owned(CelString::from(s)),
        Node::Bool(b) => CowVal::owned(CelBool::from(b)),
        Node::Int(i) => CowVal::owned(CelInt::from(i)),
        Node::Time(t) => CowVal::owned(CelTimestamp::from(view::instant(t).fixed_offset())),
        Node::StrList(list) => {
            let items: Vec<Box<dyn Val + 'a>> = list
                .iter()
                .map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + 'a>)
                .collect();
            CowVal::owned(CelList::from(items))
        }
        Node::Value(v) => match &v.kind {
            None | Some(Kind::NullValue(_)) => CowVal::owned(CelNull),
            Some(Kind::NumberValue(n)) => CowVal::owned(CelDouble::from(*n)),
            Some(Kind::StringValue(s)) => CowVal::owned(CelString::from(s.as_str())),
            Some(Kind::BoolValue(b)) => CowVal::owned(CelBool::from(*b)),
            Some(Kind::StructValue(_)) => CowVal::owned(NodeVal(node)),
            Some(Kind::ListValue(l)) => {
                let items: Vec<Box<dyn Val + 'a>> = l
                    .values
                    .iter()
                    .map(|v| to_val(Node::Value(v)).into_owned())
                    .collect();
                CowVal::owned(CelList::from(items))
            }
        },
        Node::Map(_) | Node::Msg(_) => CowVal::owned(NodeVal(node)),
    }
}

/// A map key given to CEL's indexing: a string, else a type error.
pub(crate) fn key_of(idx: &dyn Val) -> Result<&str, ExecutionError> {
    idx.downcast_ref::<CelString>()
        .map(CelString::inner)
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: idx.get_type().name().to_owned(),
            want: "string".to_owned(),
        })
}

impl Val for NodeVal<'_> {
    fn get_type(&self) -> &Type {
        &types::MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &types::MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl<'a> Indexer for NodeVal<'a> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let key = key_of(idx)?;
        match self.0.member(key) {
            Some(node) => Ok(to_val(node)),
            None => Err(ExecutionError::no_such_key(key)),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let key = key_of(idx)?;
        match self.0.member(key) {
            Some(node) => Ok(to_val(node).into_owned()),
            None => Err(ExecutionError::no_such_key(key)),
        }
    }
}

impl Container for NodeVal<'_> {
    fn contains(&self, value: &dyn Val) -> Result<bool, ExecutionError> {
        Ok(self.0.member(key_of(value)?).is_some())
    }
}

impl Sizer for NodeVal<'_> {
    fn size(&self) -> CelInt {
        let n = match self.0 {
            Node::Map(m) => m.len(),
            Node::Value(pbjson_types::Value {
                kind: Some(Kind::StructValue(s)),
            }) => s.fields.len(),
            Node::Msg(m) => m.field_names().len(),
            _ => 0,
        };
        CelInt::from(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// `risk.signals` as a CEL list of borrowed strings.
fn signal_list<'v>(signals: &'v [Arc<str>]) -> CelList<'v> {
    let items: Vec<Box<dyn Val + 'v>> = signals
        .iter()
        .map(|s| Box::new(CelString::from(&**s)) as Box<dyn Val + 'v>)
        .collect();
    CelList::from(items)
}

/// `risk`: the score and the ids of the signals that fired.
#[derive(Clone, Copy, Debug)]
struct RiskVal<'a> {
    score: i64,
    signals: &'a [Arc<str>],
}

impl Val for RiskVal<'_> {
    fn get_type(&self) -> &Type {
        &types::MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &types::MAP_TYPE
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(*self)
    }
}

impl Indexer for RiskVal<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        match key_of(idx)? {
            "score" => Ok(CowVal::owned(CelInt::from(self.score))),
            "signals" => Ok(CowVal::owned(signal_list(self.signals))),
            other => Err(ExecutionError::no_such_key(other)),
        }
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}
