//! Native evaluation of the condition shapes policies are mostly made of:
//! comparisons of a request field, `risk.score` or a `history` field with a
//! literal, `has(...)`, `in`, `ip_in`, `history.count` with literal
//! arguments, joined by `&&`, `||` and `!`.
//!
//! The CEL interpreter allocates on every field selection and builds its
//! overload error eagerly on every comparison and `!`, which made up most of
//! a cached decision's cost (the volatile `history` rules run on every
//! decision, cache hit or not).
//!
//! This is a fast path, not a second interpreter: it answers only where the
//! answer is plain (operands of the expected types, present, no NaN) and
//! gives up otherwise (`None`); the condition then runs in the `cel`
//! interpreter, which stays the reference for every error and every corner
//! of CEL's semantics. So a condition evaluates to what `cel` says or to an
//! answer `cel` would give. `tests::fast_agrees_with_cel` holds the two to
//! the same results over random requests and histories.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

use cel::IdedExpr;
use cel::common::ast::{CallExpr, Expr, LiteralValue, operators};
use chrono::{DateTime, Utc};
use pbjson_types::value::Kind;

use super::history::{View, country_str};
use super::vals::Variables;
use crate::lists::Lists;
use crate::request::view::{Node, Path};

/// A condition compiled for native evaluation.
#[derive(Debug)]
pub struct Fast(Cond);

#[derive(Debug)]
enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    /// A bool-valued operand on its own (`device.trusted`).
    Is(Operand),
    Cmp(Op, Operand, Operand),
    /// `has(path.field)`.
    Has(Path, Box<str>),
    /// `operand in [string literals]`.
    InLiterals(Operand, Box<[Box<str>]>),
    /// `operand in path`: a list or map of the request.
    InPath(Operand, Path),
    /// `operand in risk.signals`.
    InSignals(Operand),
    /// `ip_in(operand, "list")`: the set's lists and the list's index.
    IpIn(Operand, Lists_, usize),
}

/// The policy set's lists, for `ip_in`.
struct Lists_(Arc<Lists>);

impl std::fmt::Debug for Lists_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lists")
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug)]
enum Operand {
    /// A path into the request (`resource.attributes.amount`).
    Path(Path),
    Lit(Lit),
    Now,
    RiskScore,
    History(HistoryField),
    /// `history.count(pattern, duration(...))`, the window in ms (> 0),
    /// counted no further than the limit (see [`limit_count`]).
    Count(Box<str>, i64, usize),
}

#[derive(Debug)]
enum Lit {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Box<str>),
}

#[derive(Clone, Copy, Debug)]
enum HistoryField {
    DeviceKnown,
    DeviceFirstSeen,
    DevicesSeen,
    LastCountry,
    LastSeen,
    TravelKmh,
    StepupsFailed,
    SessionRevoked,
    CredentialChanged,
    RiskLevel,
}

/// A value as the fast path sees it.
#[derive(Clone, Copy, Debug)]
enum Scalar<'a> {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(&'a str),
    Time(DateTime<Utc>),
}

impl Fast {
    /// Compiles `expr` (a checked condition of a policy set with `lists`),
    /// or `None` when it has a shape this module leaves to the interpreter.
    /// `env` evaluates `duration(...)` literals the way the interpreter does.
    pub fn compile(expr: &IdedExpr, env: &Arc<cel::Env>, lists: &Arc<Lists>) -> Option<Self> {
        Compiler { env, lists }.cond(expr).map(Fast)
    }

    /// The condition's value, or `None` when the interpreter must decide.
    pub fn eval(&self, vars: &Variables<'_>) -> Option<bool> {
        self.0.eval(vars)
    }
}

struct Compiler<'c> {
    env: &'c Arc<cel::Env>,
    lists: &'c Arc<Lists>,
}

impl Compiler<'_> {
    fn cond(&self, expr: &IdedExpr) -> Option<Cond> {
        let Expr::Call(call) = &expr.expr else {
            return match &expr.expr {
                Expr::Select(s) if s.test => Some(Cond::Has(
                    request_path(&s.operand)?,
                    s.field.as_str().into(),
                )),
                _ => Some(Cond::Is(self.operand(expr)?)),
            };
        };
        if call.target.is_some() {
            return Some(Cond::Is(self.operand(expr)?));
        }
        let name = call.func_name.as_str();
        match call.args.as_slice() {
            [a, b] if name == operators::LOGICAL_AND => {
                Some(Cond::And(Box::new(self.cond(a)?), Box::new(self.cond(b)?)))
            }
            [a, b] if name == operators::LOGICAL_OR => {
                Some(Cond::Or(Box::new(self.cond(a)?), Box::new(self.cond(b)?)))
            }
            [a] if name == operators::LOGICAL_NOT => Some(Cond::Not(Box::new(self.cond(a)?))),
            [item, container] if name == operators::IN => {
                let item = self.operand(item)?;
                match &container.expr {
                    Expr::List(list) if list.optional_indices.is_empty() => {
                        let strings = list
                            .elements
                            .iter()
                            .map(|e| match &e.expr {
                                Expr::Literal(LiteralValue::String(s)) => Some(s.inner().into()),
                                _ => None,
                            })
                            .collect::<Option<Box<[Box<str>]>>>()?;
                        Some(Cond::InLiterals(item, strings))
                    }
                    _ if path_name(container).as_deref() == Some("risk.signals") => {
                        Some(Cond::InSignals(item))
                    }
                    _ => Some(Cond::InPath(item, request_path(container)?)),
                }
            }
            [ip, list] if name == crate::lists::IP_IN => {
                let Expr::Literal(LiteralValue::String(list)) = &list.expr else {
                    return None;
                };
                // A list the set does not have is the interpreter's error.
                let index = self.lists.ip_index(list.inner())?;
                Some(Cond::IpIn(
                    self.operand(ip)?,
                    Lists_(Arc::clone(self.lists)),
                    index,
                ))
            }
            [a, b] => {
                let op = match name {
                    operators::EQUALS => Op::Eq,
                    operators::NOT_EQUALS => Op::Ne,
                    operators::LESS => Op::Lt,
                    operators::LESS_EQUALS => Op::Le,
                    operators::GREATER => Op::Gt,
                    operators::GREATER_EQUALS => Op::Ge,
                    _ => return None,
                };
                let (mut a, mut b) = (self.operand(a)?, self.operand(b)?);
                limit_count(&mut a, &b);
                limit_count(&mut b, &a);
                Some(Cond::Cmp(op, a, b))
            }
            _ => None,
        }
    }

    fn operand(&self, expr: &IdedExpr) -> Option<Operand> {
        match &expr.expr {
            Expr::Literal(lit) => Some(Operand::Lit(match lit {
                LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
                LiteralValue::Int(i) => Lit::Int(*i.inner()),
                LiteralValue::UInt(u) => Lit::UInt(*u.inner()),
                LiteralValue::Double(d) => Lit::Double(*d.inner()),
                LiteralValue::String(s) => Lit::Str(s.inner().into()),
                LiteralValue::Bytes(_) | LiteralValue::Null => return None,
            })),
            Expr::Call(call) => self.count(call),
            Expr::Ident(_) | Expr::Select(_) => {
                let name = path_name(expr)?;
                match name.as_str() {
                    "now" => Some(Operand::Now),
                    "risk.score" => Some(Operand::RiskScore),
                    _ => match name.strip_prefix("history.") {
                        Some(field) => Some(Operand::History(history_field(field)?)),
                        None => Some(Operand::Path(request_path(expr)?)),
                    },
                }
            }
            _ => None,
        }
    }

    /// `history.count("glob", duration("..."))`.
    fn count(&self, call: &CallExpr) -> Option<Operand> {
        let (Some(target), [pattern, window]) = (&call.target, call.args.as_slice()) else {
            return None;
        };
        if call.func_name != "count" || path_name(target).as_deref() != Some("history") {
            return None;
        }
        let Expr::Literal(LiteralValue::String(pattern)) = &pattern.expr else {
            return None;
        };
        let Expr::Call(duration) = &window.expr else {
            return None;
        };
        match (duration.func_name.as_str(), duration.args.as_slice()) {
            ("duration", [arg]) if duration.target.is_none() => {
                let Expr::Literal(LiteralValue::String(_)) = &arg.expr else {
                    return None;
                };
            }
            _ => return None,
        }
        // The interpreter's own reading of the literal.
        let ctx = cel::Context::with_env(Arc::clone(self.env));
        let cel::Value::Duration(d) = cel::Value::resolve(window, &ctx).ok()? else {
            return None;
        };
        let ms = d.num_milliseconds();
        (ms > 0).then(|| Operand::Count(pattern.inner().into(), ms, usize::MAX))
    }
}

/// A count compared with an int literal `k` is only ever told apart from
/// `k`: counting to `k + 1` gives every comparison operator the answer the
/// whole count would, and a subject with hundreds of recent events costs
/// no more than one with a few.
fn limit_count(count: &mut Operand, other: &Operand) {
    if let (Operand::Count(_, _, limit), Operand::Lit(Lit::Int(k))) = (count, other) {
        *limit = usize::try_from(k.saturating_add(1)).unwrap_or(0);
    }
}

/// `a.b.c` as written, for an identifier or a chain of field selections.
fn path_name(expr: &IdedExpr) -> Option<String> {
    match &expr.expr {
        Expr::Ident(name) => Some(name.clone()),
        Expr::Select(s) if !s.test => {
            let mut name = path_name(&s.operand)?;
            name.push('.');
            name.push_str(&s.field);
            Some(name)
        }
        _ => None,
    }
}

/// A path into the request context; `None` for anything else.
fn request_path(expr: &IdedExpr) -> Option<Path> {
    let name = path_name(expr)?;
    Path::parse(&name.split('.').collect::<Vec<_>>())
}

fn history_field(name: &str) -> Option<HistoryField> {
    Some(match name {
        "device_known" => HistoryField::DeviceKnown,
        "device_first_seen" => HistoryField::DeviceFirstSeen,
        "devices_seen" => HistoryField::DevicesSeen,
        "last_country" => HistoryField::LastCountry,
        "last_seen" => HistoryField::LastSeen,
        "travel_kmh" => HistoryField::TravelKmh,
        "stepups_failed" => HistoryField::StepupsFailed,
        "session_revoked" => HistoryField::SessionRevoked,
        "credential_changed" => HistoryField::CredentialChanged,
        "risk_level" => HistoryField::RiskLevel,
        // `device_compliant` is absent until reported: the interpreter's.
        _ => return None,
    })
}

impl Cond {
    fn eval(&self, vars: &Variables<'_>) -> Option<bool> {
        match self {
            Cond::And(a, b) => {
                if a.eval(vars)? {
                    b.eval(vars)
                } else {
                    Some(false)
                }
            }
            Cond::Or(a, b) => {
                if a.eval(vars)? {
                    Some(true)
                } else {
                    b.eval(vars)
                }
            }
            Cond::Not(a) => a.eval(vars).map(|b| !b),
            Cond::Is(a) => match a.eval(vars)? {
                Scalar::Bool(b) => Some(b),
                _ => None,
            },
            Cond::Cmp(op, a, b) => compare(*op, a.eval(vars)?, b.eval(vars)?),
            Cond::Has(path, field) => match path.resolve(vars.request)? {
                node @ (Node::Msg(_) | Node::Map(_)) => Some(node.member(field).is_some()),
                node @ Node::Value(v) if matches!(v.kind, Some(Kind::StructValue(_))) => {
                    Some(node.member(field).is_some())
                }
                _ => None,
            },
            Cond::InLiterals(item, list) => {
                let Scalar::Str(s) = item.eval(vars)? else {
                    return None;
                };
                Some(list.iter().any(|x| **x == *s))
            }
            Cond::InSignals(item) => {
                let Scalar::Str(s) = item.eval(vars)? else {
                    return None;
                };
                let (_, signals) = vars.risk?;
                Some(signals.iter().any(|x| **x == *s))
            }
            Cond::InPath(item, path) => {
                let Scalar::Str(s) = item.eval(vars)? else {
                    return None;
                };
                contains(path.resolve(vars.request)?, s)
            }
            Cond::IpIn(ip, lists, index) => {
                let Scalar::Str(ip) = ip.eval(vars)? else {
                    return None;
                };
                let addr: IpAddr = ip.parse().ok()?;
                Some(lists.0.ip_list_at(*index)?.contains(addr))
            }
        }
    }
}

/// `s in container` for a request list or map; `None` for a list holding
/// anything but strings (CEL's mixed-type equality is the interpreter's).
fn contains(container: Node<'_>, s: &str) -> Option<bool> {
    match container {
        Node::StrList(list) => Some(list.iter().any(|x| x == s)),
        Node::Msg(_) | Node::Map(_) => Some(container.member(s).is_some()),
        Node::Value(v) => match &v.kind {
            Some(Kind::StructValue(_)) => Some(container.member(s).is_some()),
            Some(Kind::ListValue(l)) => {
                let mut found = false;
                for x in &l.values {
                    match &x.kind {
                        Some(Kind::StringValue(x)) => found |= x == s,
                        _ => return None,
                    }
                }
                Some(found)
            }
            _ => None,
        },
        _ => None,
    }
}

impl Operand {
    fn eval<'a>(&'a self, vars: &Variables<'a>) -> Option<Scalar<'a>> {
        match self {
            Operand::Path(path) => scalar(path.resolve(vars.request)?),
            Operand::Lit(lit) => Some(match lit {
                Lit::Bool(b) => Scalar::Bool(*b),
                Lit::Int(i) => Scalar::Int(*i),
                Lit::UInt(u) => Scalar::UInt(*u),
                Lit::Double(d) => Scalar::Double(*d),
                Lit::Str(s) => Scalar::Str(s),
            }),
            Operand::Now => Some(Scalar::Time(vars.now.to_utc())),
            Operand::RiskScore => vars.risk.map(|(score, _)| Scalar::Int(score)),
            Operand::History(field) => Some(history(vars.history?.view(), *field)),
            Operand::Count(pattern, window, limit) => {
                let n = vars.history?.view().count_up_to(pattern, *window, *limit);
                Some(Scalar::Int(i64::try_from(n).unwrap_or(i64::MAX)))
            }
        }
    }
}

/// A request value as a scalar; containers and null are the interpreter's.
fn scalar(node: Node<'_>) -> Option<Scalar<'_>> {
    Some(match node {
        Node::Str(s) => Scalar::Str(s),
        Node::Bool(b) => Scalar::Bool(b),
        Node::Int(i) => Scalar::Int(i),
        Node::Time(t) => Scalar::Time(crate::request::view::instant(t)),
        Node::Value(v) => match &v.kind {
            Some(Kind::NumberValue(n)) => Scalar::Double(*n),
            Some(Kind::StringValue(s)) => Scalar::Str(s),
            Some(Kind::BoolValue(b)) => Scalar::Bool(*b),
            _ => return None,
        },
        Node::StrList(_) | Node::Map(_) | Node::Msg(_) => return None,
    })
}

/// A `history` field, as `history::view::field` hands it to CEL.
fn history(view: &View, field: HistoryField) -> Scalar<'_> {
    let time = |ms| Scalar::Time(super::history::instant(ms));
    match field {
        HistoryField::DeviceKnown => Scalar::Bool(view.device_known),
        HistoryField::DeviceFirstSeen => time(view.device_first_seen),
        HistoryField::DevicesSeen => Scalar::Int(view.devices_seen),
        HistoryField::LastCountry => Scalar::Str(country_str(view.last_country.as_ref())),
        HistoryField::LastSeen => time(view.last_seen),
        HistoryField::TravelKmh => Scalar::Double(view.travel_kmh),
        HistoryField::StepupsFailed => Scalar::Int(view.stepups_failed),
        HistoryField::SessionRevoked => Scalar::Bool(view.session_revoked),
        HistoryField::CredentialChanged => time(view.credential_changed),
        HistoryField::RiskLevel => Scalar::Str(view.risk_level.unwrap_or("")),
    }
}

/// `a op b`, as the interpreter compares: values of one type, and numbers
/// of different types by their order (as `f64` against a double). `None`
/// for mixed-type equality and NaN, which the interpreter handles (or
/// reports).
fn compare(op: Op, a: Scalar<'_>, b: Scalar<'_>) -> Option<bool> {
    let order = !matches!(op, Op::Eq | Op::Ne);
    let ord = match (a, b) {
        (Scalar::Int(a), Scalar::Int(b)) => a.cmp(&b),
        (Scalar::UInt(a), Scalar::UInt(b)) => a.cmp(&b),
        (Scalar::Double(a), Scalar::Double(b)) => a.partial_cmp(&b)?,
        (Scalar::Str(a), Scalar::Str(b)) => a.cmp(b),
        (Scalar::Time(a), Scalar::Time(b)) => a.cmp(&b),
        (Scalar::Bool(a), Scalar::Bool(b)) if !order => a.cmp(&b),
        (Scalar::Int(a), Scalar::Double(b)) if order => as_f64(a).partial_cmp(&b)?,
        (Scalar::Double(a), Scalar::Int(b)) if order => a.partial_cmp(&as_f64(b))?,
        (Scalar::UInt(a), Scalar::Double(b)) if order => u_as_f64(a).partial_cmp(&b)?,
        (Scalar::Double(a), Scalar::UInt(b)) if order => a.partial_cmp(&u_as_f64(b))?,
        (Scalar::Int(a), Scalar::UInt(b)) if order => {
            u64::try_from(a).map_or(Ordering::Less, |a| a.cmp(&b))
        }
        (Scalar::UInt(a), Scalar::Int(b)) if order => {
            i64::try_from(a).map_or(Ordering::Greater, |a| a.cmp(&b))
        }
        _ => return None,
    };
    Some(match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    })
}

/// The interpreter's conversion for comparing an int with a double (which
/// rounds beyond 2^53, as it does there).
#[expect(
    clippy::cast_precision_loss,
    reason = "the interpreter's own conversion"
)]
fn as_f64(i: i64) -> f64 {
    i as f64
}

#[expect(
    clippy::cast_precision_loss,
    reason = "the interpreter's own conversion"
)]
fn u_as_f64(u: u64) -> f64 {
    u as f64
}

#[cfg(test)]
pub(crate) mod tests;
