//! The request context as CEL sees it, and the static check of expressions
//! against it. The `cel` crate has no type checker, so this walks the AST:
//! unknown variables (`devce`) and unknown fields of known messages
//! (`session.amr_list`) are load-time errors with a did-you-mean, and the
//! request paths an expression reads are collected for the decision cache key.

use cel::IdedExpr;
use cel::common::ast::{Expr, LiteralValue};

use super::diag::{Code, did_you_mean};

mod matches;

/// The static type of a context value, as far as the schema knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    /// A string.
    String,
    /// A bool.
    Bool,
    /// A 64-bit signed integer.
    Int,
    /// A double.
    Double,
    /// A timestamp.
    Timestamp,
    /// A list of strings.
    StringList,
    /// A map with string keys and any values (the `attributes` maps): any
    /// key may be read, a missing one is a run-time error unless guarded
    /// with `has()`.
    Map,
    /// Anything (values inside attribute maps, comprehension variables).
    Dyn,
    /// A message with a fixed set of fields.
    Message(&'static Message),
}

/// A message of the context: a name for messages and its fields.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// How the message is called in diagnostics, e.g. `device`.
    pub name: &'static str,
    /// Field names and types.
    pub fields: &'static [(&'static str, Ty)],
}

impl Message {
    /// The type of field `name`, if the message has it.
    pub fn field(&self, name: &str) -> Option<Ty> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }
}

/// `subject`.
pub static SUBJECT: Message = Message {
    name: "subject",
    fields: &[
        ("id", Ty::String),
        ("tenant", Ty::String),
        ("roles", Ty::StringList),
        ("attributes", Ty::Map),
    ],
};
/// `session`.
pub static SESSION: Message = Message {
    name: "session",
    fields: &[
        ("id", Ty::String),
        ("acr", Ty::String),
        ("amr", Ty::StringList),
        ("auth_time", Ty::Timestamp),
    ],
};
/// `device`.
pub static DEVICE: Message = Message {
    name: "device",
    fields: &[
        ("id", Ty::String),
        ("trusted", Ty::Bool),
        ("platform", Ty::String),
        ("attributes", Ty::Map),
    ],
};
/// `network`.
pub static NETWORK: Message = Message {
    name: "network",
    fields: &[
        ("ip", Ty::String),
        ("country", Ty::String),
        ("asn", Ty::Int),
        ("attributes", Ty::Map),
    ],
};
/// `resource`.
pub static RESOURCE: Message = Message {
    name: "resource",
    fields: &[
        ("type", Ty::String),
        ("id", Ty::String),
        ("attributes", Ty::Map),
    ],
};
/// `history`: the subject's history before the decision (see
/// [`crate::expr::history`]); `history.count(glob, window)` is its one
/// function.
pub static HISTORY: Message = Message {
    name: "history",
    fields: &[
        ("device_known", Ty::Bool),
        ("device_first_seen", Ty::Timestamp),
        ("devices_seen", Ty::Int),
        ("last_country", Ty::String),
        ("last_seen", Ty::Timestamp),
        ("travel_kmh", Ty::Double),
        ("stepups_failed", Ty::Int),
        // From Shared Signals (CAEP) events.
        ("session_revoked", Ty::Bool),
        ("credential_changed", Ty::Timestamp),
        ("device_compliant", Ty::Bool),
        ("risk_level", Ty::String),
    ],
};
/// The functions of `history`.
const HISTORY_FUNCTIONS: &[&str] = &["count"];
/// `risk` (rules only).
pub static RISK: Message = Message {
    name: "risk",
    fields: &[("score", Ty::Int), ("signals", Ty::StringList)],
};

/// Variables every expression may read.
const REQUEST_VARIABLES: &[(&str, Ty)] = &[
    ("action", Ty::String),
    ("subject", Ty::Message(&SUBJECT)),
    ("session", Ty::Message(&SESSION)),
    ("device", Ty::Message(&DEVICE)),
    ("network", Ty::Message(&NETWORK)),
    ("resource", Ty::Message(&RESOURCE)),
    ("attributes", Ty::Map),
    ("now", Ty::Timestamp),
    ("history", Ty::Message(&HISTORY)),
];

/// The type of the context variable `name` in `scope`, if there is one.
pub fn variable_type(name: &str, scope: Scope) -> Option<Ty> {
    let risk = (scope == Scope::Rule).then_some(("risk", Ty::Message(&RISK)));
    REQUEST_VARIABLES
        .iter()
        .copied()
        .chain(risk)
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t)
}

/// Where an expression is used: rules may also read `risk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A signal's `when`.
    Signal,
    /// A rule's `when`.
    Rule,
}

/// A path into the request an expression reads, e.g. `resource.attributes.amount`.
pub type ReadPath = Vec<String>;

/// A problem found in an expression, positioned by CEL node id.
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaError {
    /// The node the problem is at (for its source offset).
    pub expr_id: u64,
    /// What kind of problem.
    pub code: Code,
    /// What is wrong.
    pub message: String,
    /// Did-you-mean or other advice.
    pub help: Option<String>,
    /// What the diagnostic underlines.
    pub underline: Underline,
}

/// What a [`SchemaError`]'s diagnostic underlines.
#[derive(Debug, PartialEq, Eq)]
pub enum Underline {
    /// The node's own source range.
    Node,
    /// A select's field (`x.field`), which follows the node (its dot).
    Field(String),
    /// An unknown function's name, which ends where the call's node (its
    /// opening parenthesis) starts.
    Callee(String),
}

/// What an expression reads, found by [`check`].
#[derive(Debug, Default)]
pub struct Reads {
    /// Request paths read (duplicates removed).
    pub paths: Vec<ReadPath>,
    /// Whether the expression reads `now` in a way whose result may change at
    /// any instant (`now - session.auth_time`): it is then evaluated on every
    /// decision, cached or not.
    pub now: bool,
    /// When `now` is read only through calendar accessors
    /// (`now.getHours(tz)`, `now.getDayOfWeek()`...), the result can only
    /// change at multiples of this step, so the cache keys it by
    /// `floor(now / step)` instead of re-evaluating it.
    pub now_step: Option<std::time::Duration>,
    /// The time-zone arguments of those calendar accessors (none for UTC):
    /// the step holds only while a zone's UTC offset is a whole number of
    /// steps, which the cache checks before it keeps an entry.
    pub time_zones: Vec<IdedExpr>,
    /// Whether the expression reads `risk` (so it depends on the signals).
    pub risk: bool,
    /// Whether the expression reads `history` (so its value changes with
    /// every decision of the subject: never cached).
    pub history: bool,
    /// Whether the expression calls `ip_in` (so its evaluation context needs
    /// the set's lists).
    pub ip_lists: bool,
    /// The `matches()` patterns written in the expression, compiled.
    pub regexes: Vec<matches::LiteralRegex>,
    /// The nodes of `matches()` patterns that are not literals (taken from
    /// the request at run time), with what a diagnostic would underline.
    pub dynamic_regexes: Vec<(u64, Underline)>,
}

/// Checks `expr` against the context schema for `scope`, returning what it
/// reads, or every problem found.
#[cfg(test)]
pub fn check(expr: &IdedExpr, scope: Scope) -> Result<Reads, Vec<SchemaError>> {
    check_in(expr, scope, &[], None)
}

/// Checks `expr` against the context schema for `scope` (see `check`), for a set whose configured IP lists are `ip_lists`
/// (the names `ip_in` accepts), and, given `env`, requiring every function
/// called to be one `env` declares (`now.getHour()` and `sizee(x)` would
/// otherwise fail only when a request comes, and fail closed).
pub fn check_in(
    expr: &IdedExpr,
    scope: Scope,
    ip_lists: &[&str],
    env: Option<&std::sync::Arc<cel::Env>>,
) -> Result<Reads, Vec<SchemaError>> {
    let mut walker = Walker {
        ip_lists: ip_lists.iter().map(|n| (*n).to_owned()).collect(),
        env: env.cloned(),
        scope,
        locals: Vec::new(),
        reads: Reads::default(),
        errors: Vec::new(),
    };
    walker.walk(expr);
    if walker.errors.is_empty() {
        walker.reads.paths.sort();
        walker.reads.paths.dedup();
        Ok(walker.reads)
    } else {
        Err(walker.errors)
    }
}

struct Walker {
    scope: Scope,
    /// Comprehension variables in scope, innermost last.
    locals: Vec<String>,
    reads: Reads,
    errors: Vec<SchemaError>,
    /// The configured IP list names.
    ip_lists: Vec<String>,
    /// The functions' environment, when calls are checked.
    env: Option<std::sync::Arc<cel::Env>>,
}

impl Walker {
    fn variables(&self) -> impl Iterator<Item = (&'static str, Ty)> {
        let risk = (self.scope == Scope::Rule).then_some(("risk", Ty::Message(&RISK)));
        REQUEST_VARIABLES.iter().copied().chain(risk)
    }

    fn variable(&self, name: &str) -> Option<Ty> {
        self.variables().find(|(n, _)| *n == name).map(|(_, t)| t)
    }

    /// Walks `expr`, returning its static type where known.
    fn walk(&mut self, expr: &IdedExpr) -> Ty {
        if let Some(ty) = self.walk_path(expr) {
            return ty;
        }
        match &expr.expr {
            Expr::Ident(name) => {
                if self.locals.iter().any(|l| l == name) {
                    return Ty::Dyn;
                }
                // A bare variable outside a select chain (walk_path handles
                // known ones); only unknown names reach here.
                let help = did_you_mean(name, self.variables().map(|(n, _)| n)).or_else(|| {
                    (name == "risk" && self.scope == Scope::Signal)
                        .then(|| "signals cannot read `risk`: it is computed from them".to_owned())
                });
                self.errors.push(SchemaError {
                    expr_id: expr.id,
                    code: Code::UnknownVariable,
                    message: format!("unknown variable `{name}`"),
                    underline: Underline::Node,
                    help: help.or_else(|| {
                        Some(format!(
                            "the variables are {}",
                            self.variables()
                                .map(|(n, _)| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }),
                });
                Ty::Dyn
            }
            Expr::Select(select) => {
                let operand = self.walk(&select.operand);
                self.select(expr.id, operand, &select.field)
            }
            Expr::Call(call) if call.func_name == crate::lists::IP_IN => {
                self.ip_in(expr.id, call);
                Ty::Bool
            }
            Expr::Call(call) if call.func_name == crate::expr::matches::MATCHES => {
                self.matches(expr.id, call);
                Ty::Bool
            }
            Expr::Call(call) => {
                // `history`'s functions are checked by `history_call`.
                let mut on_history = false;
                if let Some(target) = &call.target {
                    match (&target.expr, calendar_step(&call.func_name)) {
                        (Expr::Ident(name), Some(step))
                            if name == "now" && !self.locals.iter().any(|l| l == name) =>
                        {
                            self.reads.now_step =
                                Some(self.reads.now_step.map_or(step, |s| s.min(step)));
                            self.reads.time_zones.extend(call.args.first().cloned());
                        }
                        _ => {
                            let ty = self.walk(target);
                            if ty == Ty::Message(&HISTORY) {
                                on_history = true;
                                self.history_call(expr.id, &call.func_name, call.args.len());
                            }
                        }
                    }
                }
                if !on_history {
                    self.function(expr.id, &call.func_name);
                }
                for arg in &call.args {
                    self.walk(arg);
                }
                Ty::Dyn
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                self.locals.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    self.locals.push(v.clone());
                }
                self.locals.push(c.accu_var.clone());
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.locals
                    .truncate(self.locals.len() - 2 - usize::from(c.iter_var2.is_some()));
                Ty::Dyn
            }
            Expr::List(list) => {
                for e in &list.elements {
                    self.walk(e);
                }
                Ty::Dyn
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let cel::common::ast::EntryExpr::MapEntry(e) = &entry.expr {
                        self.walk(&e.key);
                        self.walk(&e.value);
                    }
                }
                Ty::Dyn
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let cel::common::ast::EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value);
                    }
                }
                Ty::Dyn
            }
            Expr::Literal(_) | Expr::Unspecified => Ty::Dyn,
        }
    }

    /// A select or index chain rooted at a context variable, such as
    /// `resource.attributes["amount"]`: checked field by field and recorded as
    /// one read path. `None` when `expr` is not such a chain.
    fn walk_path(&mut self, expr: &IdedExpr) -> Option<Ty> {
        let mut steps = Vec::new();
        let mut cur = expr;
        loop {
            match &cur.expr {
                Expr::Select(s) => {
                    steps.push((cur.id, s.field.as_str()));
                    cur = &s.operand;
                }
                Expr::Call(c)
                    if c.func_name == "_[_]" && c.target.is_none() && c.args.len() == 2 =>
                {
                    let (Some(operand), Some(key)) = (c.args.first(), c.args.get(1)) else {
                        return None;
                    };
                    let Expr::Literal(LiteralValue::String(key)) = &key.expr else {
                        return None;
                    };
                    steps.push((cur.id, key.inner()));
                    cur = operand;
                }
                Expr::Ident(name) => {
                    if self.locals.iter().any(|l| l == name) {
                        return None;
                    }
                    let ty = self.variable(name)?;
                    let mut path = vec![name.clone()];
                    let mut ty = ty;
                    for (id, field) in steps.iter().rev() {
                        ty = self.select(*id, ty, field);
                        path.push((*field).to_owned());
                    }
                    self.record(path);
                    return Some(ty);
                }
                _ => return None,
            }
        }
    }

    /// Checks `ip_in(ip, "list")`: a plain call with two arguments, the
    /// second a string literal naming a configured list.
    fn ip_in(&mut self, id: u64, call: &cel::common::ast::CallExpr) {
        self.reads.ip_lists = true;
        let usage = "`ip_in(network.ip, \"tor_exits\")`: an IP address and the name of a list";
        if let Some(target) = &call.target {
            self.walk(target);
            self.errors.push(SchemaError {
                expr_id: id,
                code: Code::InvalidCall,
                message: format!("`{}` is a function, not a method", crate::lists::IP_IN),
                underline: Underline::Node,
                help: Some(format!("write {usage}")),
            });
        }
        for arg in call.args.iter().take(1) {
            self.walk(arg);
        }
        let (Some(name), 2) = (call.args.get(1), call.args.len()) else {
            if call.target.is_none() {
                self.errors.push(SchemaError {
                    expr_id: id,
                    code: Code::InvalidCall,
                    message: format!(
                        "`{}` takes 2 arguments, got {}",
                        crate::lists::IP_IN,
                        call.args.len()
                    ),
                    underline: Underline::Node,
                    help: Some(usage.to_owned()),
                });
            }
            return;
        };
        let Expr::Literal(LiteralValue::String(list)) = &name.expr else {
            self.walk(name);
            self.errors.push(SchemaError {
                expr_id: name.id,
                code: Code::InvalidCall,
                message: "the list name must be a string literal".to_owned(),
                // A select's node sits at its dot: underline its field.
                underline: match &name.expr {
                    Expr::Select(select) => Underline::Field(select.field.clone()),
                    _ => Underline::Node,
                },
                help: Some(
                    "lists are checked when the policies load: write the name in quotes, e.g. `\"tor_exits\"`"
                        .to_owned(),
                ),
            });
            return;
        };
        let list = list.inner();
        if !self.ip_lists.iter().any(|l| l == list) {
            let help = if self.ip_lists.is_empty() {
                "no IP lists are configured: name the file under `[lists.ip]` in the config file, or add `lists/NAME.txt` to the policy directory".to_owned()
            } else {
                did_you_mean(list, self.ip_lists.iter().map(String::as_str)).unwrap_or_else(|| {
                    format!(
                        "the IP lists are {}",
                        self.ip_lists
                            .iter()
                            .map(|n| format!("`{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            };
            self.errors.push(SchemaError {
                expr_id: name.id,
                code: Code::UnknownList,
                message: format!("unknown IP list `{list}`"),
                underline: Underline::Node,
                help: Some(help),
            });
        }
    }

    fn record(&mut self, path: ReadPath) {
        match path.first().map(String::as_str) {
            Some("now") => self.reads.now = true,
            Some("risk") => self.reads.risk = true,
            Some("history") => self.reads.history = true,
            _ => self.reads.paths.push(path),
        }
    }

    /// Checks a call on `history`: only `count(glob, window)` exists.
    fn history_call(&mut self, id: u64, function: &str, args: usize) {
        if !HISTORY_FUNCTIONS.contains(&function) {
            self.errors.push(SchemaError {
                expr_id: id,
                code: Code::UnknownFunction,
                message: format!("`history` has no function `{function}`"),
                underline: Underline::Node,
                help: did_you_mean(function, HISTORY_FUNCTIONS.iter().copied()).or_else(|| {
                    Some(
                        "`history.count(\"payments.*\", duration(\"1h\"))` counts recent actions"
                            .to_owned(),
                    )
                }),
            });
        } else if args != 2 {
            self.errors.push(SchemaError {
                expr_id: id,
                code: Code::InvalidCall,
                message: format!("`history.count` takes 2 arguments, got {args}"),
                underline: Underline::Node,
                help: Some("`history.count(\"payments.*\", duration(\"1h\"))`: an action glob and a window".to_owned()),
            });
        }
    }

    /// The type of `operand.field`, reporting a field a message does not have.
    fn select(&mut self, id: u64, operand: Ty, field: &str) -> Ty {
        match operand {
            Ty::Message(m) => match m.field(field) {
                Some(ty) => ty,
                None => {
                    self.errors.push(SchemaError {
                        expr_id: id,
                        code: Code::UnknownField,
                        message: format!("`{}` has no field `{field}`", m.name),
                        underline: Underline::Field(field.to_owned()),
                        help: did_you_mean(field, m.fields.iter().map(|(n, _)| *n)).or_else(|| {
                            Some(format!(
                                "the fields of `{}` are {}",
                                m.name,
                                m.fields
                                    .iter()
                                    .map(|(n, _)| format!("`{n}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        }),
                    });
                    Ty::Dyn
                }
            },
            Ty::Map | Ty::Dyn => Ty::Dyn,
            Ty::String | Ty::Bool | Ty::Int | Ty::Double | Ty::Timestamp | Ty::StringList => {
                self.errors.push(SchemaError {
                    expr_id: id,
                    code: Code::InvalidSelect,
                    message: format!(
                        "cannot select `{field}`: the value is {}",
                        with_article(ty_name(operand))
                    ),
                    help: None,
                    underline: Underline::Field(field.to_owned()),
                });
                Ty::Dyn
            }
        }
    }
}

impl Walker {
    /// Reports `name` when calls are checked and the environment declares
    /// no function of that name. Operators (`_+_`, `@in`, `!_`) are the
    /// interpreter's own.
    fn function(&mut self, id: u64, name: &str) {
        let Some(env) = &self.env else { return };
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return;
        }
        // `Context::add_function` refuses a name the environment declares
        // (as a function or a member function): the only way `cel` offers
        // to ask. The probe context is thrown away.
        let mut probe = cel::Context::with_env(std::sync::Arc::clone(env));
        if probe.add_function(name, |x: i64| x).is_err() {
            return;
        }
        self.errors.push(SchemaError {
            expr_id: id,
            code: Code::UnknownFunction,
            message: format!("unknown function `{name}`"),
            help: did_you_mean(
                name,
                STANDARD_FUNCTIONS
                    .iter()
                    .chain(HISTORY_FUNCTIONS)
                    .copied()
                    .chain([crate::lists::IP_IN]),
            ),
            underline: Underline::Callee(name.to_owned()),
        });
    }
}

/// Names of CEL's standard functions, for did-you-mean with `ip_in` and
/// `history`'s (the environment decides what exists; this list only
/// suggests).
const STANDARD_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "timestamp",
    "duration",
    "type",
    "dyn",
    "getFullYear",
    "getMonth",
    "getDayOfYear",
    "getDayOfMonth",
    "getDate",
    "getDayOfWeek",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

/// How often a calendar accessor's result on `now` can change, in a time
/// zone whose UTC offset is a whole number of quarter hours (every zone's
/// today, DST included): hours and coarser fields are stable within each UTC
/// quarter hour. Fixed offsets like `+05:17` and local mean times before
/// 1900 are not: the cache checks the offsets (see
/// [`Reads::time_zones`]).
fn calendar_step(function: &str) -> Option<std::time::Duration> {
    match function {
        "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate"
        | "getDayOfWeek" | "getHours" => Some(std::time::Duration::from_secs(15 * 60)),
        "getMinutes" => Some(std::time::Duration::from_secs(60)),
        "getSeconds" => Some(std::time::Duration::from_secs(1)),
        _ => None,
    }
}

/// `name` with its indefinite article: `an int`, `a string`.
fn with_article(name: &str) -> String {
    let vowel = name
        .chars()
        .next()
        .is_some_and(|c| matches!(c.to_ascii_lowercase(), 'a' | 'e' | 'i' | 'o' | 'u'));
    format!("{} {name}", if vowel { "an" } else { "a" })
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::String => "string",
        Ty::Bool => "bool",
        Ty::Int => "int",
        Ty::Double => "double",
        Ty::Timestamp => "timestamp",
        Ty::StringList => "list of strings",
        Ty::Map => "map",
        Ty::Dyn => "value",
        Ty::Message(m) => m.name,
    }
}

#[cfg(test)]
mod tests;
