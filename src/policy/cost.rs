//! The worst-case cost of a condition, estimated when the set loads, in the
//! spirit of the Kubernetes CEL cost estimator (cel-go's `checker/cost.go`):
//! every value has a worst-case size, bounded by the request limits the
//! server enforces ([`MAX_ENTRIES`] entries per list or map,
//! [`MAX_STRING_BYTES`]-byte strings) or by the literal written; a
//! comprehension costs its range's size times its loop step; string
//! functions scale with the lengths they read, regexes with automaton size
//! times input, `history.count` with the events kept per subject.
//!
//! A unit is about one interpreter step (one node evaluated, a comparison,
//! a list entry built), or [`BYTES_PER_UNIT`] bytes read. The estimate is
//! an upper bound of the work, not of the time: `docs/src/policy/cost.md` gives the
//! measured time per unit.

use std::collections::HashMap;

use cel::IdedExpr;
use cel::common::ast::{CallExpr, ComprehensionExpr, EntryExpr, Expr, LiteralValue, operators};

use super::schema::{self, Scope, Ty};
use crate::request::{MAX_ENTRIES, MAX_STRING_BYTES};

/// The default of `[limits] max_condition_cost`: above every example rule
/// and the realistic ones (a few `exists` over request lists, `history.count`,
/// regexes over request strings), below a comprehension nested two deep
/// over request lists (64 × 64 entries): about 1 ms of CPU at the worst measured ~62 ns per
/// unit (release build, this machine).
pub const DEFAULT_MAX_CONDITION_COST: u64 = 16_000;

/// Bytes read per unit by string functions, comparisons and globs.
pub const BYTES_PER_UNIT: u64 = 256;

/// Entries compared per unit by the interpreter's own loops (`in` over a
/// list, `==` of lists): native steps, cheaper than a node.
const ENTRIES_PER_UNIT: u64 = 4;

/// (input byte × automaton state) steps of a regex match per unit.
pub const REGEX_STEPS_PER_UNIT: u64 = 256;

/// A pattern from the request (with `dynamic_regex: true`): its compile,
/// under [`crate::expr::matches::DYNAMIC_SIZE_LIMIT`], and the states its
/// automaton may have.
const DYNAMIC_REGEX_COMPILE: u64 = 2_000;
const DYNAMIC_REGEX_STATES: u64 = 2_000;

/// `[history] max_events`'s default (history sits above policies, so the
/// value is repeated here; a test holds the two equal).
pub const DEFAULT_HISTORY_EVENTS: u64 = 128;

/// Entries per list or map, bytes per string, as the server enforces.
const ENTRIES: u64 = MAX_ENTRIES as u64;
const STRING_BYTES: u64 = MAX_STRING_BYTES as u64;

/// What limits the estimate: the limit itself, and the sizes it depends on
/// that the configuration sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostLimits {
    /// A condition whose estimate is above this is a load error
    /// (`[limits] max_condition_cost`).
    pub max_condition_cost: u64,
    /// Action events kept per subject (`[history] max_events`): what
    /// `history.count` reads at most.
    pub history_events: u64,
}

impl Default for CostLimits {
    fn default() -> Self {
        Self {
            max_condition_cost: DEFAULT_MAX_CONDITION_COST,
            history_events: DEFAULT_HISTORY_EVENTS,
        }
    }
}

/// One condition's estimate, for `stepup check --costs`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConditionCost {
    /// `signal` or `rule`.
    pub kind: &'static str,
    /// The signal's or rule's id.
    pub id: std::sync::Arc<str>,
    /// The file the condition is in.
    pub file: std::path::PathBuf,
    /// The line its `when` starts on.
    pub line: usize,
    /// Its worst-case cost, in units.
    pub cost: u64,
}

/// Every condition's estimate and the limit.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CostReport {
    /// `[limits] max_condition_cost`.
    pub limit: u64,
    /// In policy order: signals, then rules.
    pub conditions: Vec<ConditionCost>,
}

impl CostReport {
    /// The sum of every estimate: a bound on any one decision's conditions
    /// (a decision evaluates every signal and at most every rule).
    pub fn total(&self) -> u64 {
        self.conditions.iter().fold(0, |t, c| add(t, c.cost))
    }

    /// A table for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let place = |c: &ConditionCost| format!("{}:{}", c.file.display(), c.line);
        let id_w = self
            .conditions
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let at_w = self
            .conditions
            .iter()
            .map(|c| place(c).len())
            .max()
            .unwrap_or(8)
            .max(8);
        let mut out = format!(
            "{:<6}  {:<id_w$}  {:<at_w$}  {:>9}\n",
            "kind", "id", "location", "cost"
        );
        for c in &self.conditions {
            let _ = writeln!(
                out,
                "{:<6}  {:<id_w$}  {:<at_w$}  {:>9}",
                c.kind,
                c.id,
                place(c),
                units(c.cost)
            );
        }
        let _ = write!(
            out,
            "limit: {} units per condition ([limits] max_condition_cost); all {} conditions together: {}",
            units(self.limit),
            self.conditions.len(),
            units(self.total())
        );
        out
    }

    /// The report as JSON: `limit`, `total` and `conditions`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "limit": self.limit,
            "total": self.total(),
            "conditions": self.conditions,
        })
    }
}

/// What a condition's estimate depends on besides its text.
pub(super) struct Inputs<'a> {
    /// Where the condition is used.
    pub scope: Scope,
    /// Events per subject that `history.count` reads at most.
    pub history_events: u64,
    /// Signals of the set (the length of `risk.signals`).
    pub signals: u64,
    /// Automaton states of the literal patterns, by node.
    pub regex_states: &'a HashMap<u64, usize>,
}

/// The worst-case size of a value: bytes when a string, entries when a list
/// or map, and the same of its elements (of a map: of its keys). Deeper
/// levels are taken at the request limits.
#[derive(Clone, Copy, Debug, Default)]
struct Size {
    bytes: u64,
    entries: u64,
    elem_bytes: u64,
    elem_entries: u64,
}

/// A value of the request that may be anything (attribute values).
const ANY: Size = Size {
    bytes: STRING_BYTES,
    entries: ENTRIES,
    elem_bytes: STRING_BYTES,
    elem_entries: ENTRIES,
};

impl Size {
    fn string(bytes: u64) -> Self {
        Self {
            bytes,
            ..Self::default()
        }
    }

    /// The size of one element.
    fn elem(self) -> Self {
        Self {
            bytes: self.elem_bytes,
            entries: self.elem_entries,
            elem_bytes: STRING_BYTES,
            elem_entries: ENTRIES,
        }
    }

    fn max(self, other: Self) -> Self {
        Self {
            bytes: self.bytes.max(other.bytes),
            entries: self.entries.max(other.entries),
            elem_bytes: self.elem_bytes.max(other.elem_bytes),
            elem_entries: self.elem_entries.max(other.elem_entries),
        }
    }
}

/// An expression's estimate: its cost and its result's size.
#[derive(Clone, Copy, Debug, Default)]
struct Est {
    cost: u64,
    size: Size,
}

fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b)
}

fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

/// Units to read `bytes` bytes.
fn read(bytes: u64) -> u64 {
    bytes.div_ceil(BYTES_PER_UNIT)
}

/// The worst-case cost of `expr`.
pub(super) fn estimate(expr: &IdedExpr, inputs: &Inputs<'_>) -> u64 {
    Estimator {
        inputs,
        locals: Vec::new(),
    }
    .walk(expr)
    .cost
}

struct Estimator<'a> {
    inputs: &'a Inputs<'a>,
    /// Comprehension variables in scope, innermost last, with their sizes.
    locals: Vec<(String, Size)>,
}

impl Estimator<'_> {
    fn walk(&mut self, expr: &IdedExpr) -> Est {
        match &expr.expr {
            Expr::Literal(lit) => Est {
                cost: 0,
                size: literal_size(lit),
            },
            Expr::Ident(name) => Est {
                cost: 1,
                size: self.ident(name),
            },
            Expr::Select(select) => {
                if select.test {
                    let operand = self.walk(&select.operand);
                    return Est {
                        cost: add(operand.cost, 1),
                        size: Size::default(),
                    };
                }
                match self.path(expr) {
                    Some(est) => est,
                    None => {
                        let operand = self.walk(&select.operand);
                        Est {
                            cost: add(operand.cost, 1),
                            size: ANY,
                        }
                    }
                }
            }
            Expr::Call(call) => self.call(call),
            Expr::Comprehension(c) => self.comprehension(c),
            Expr::List(list) => {
                let mut cost = add(1, list.elements.len() as u64);
                let mut elem = Size::default();
                for e in &list.elements {
                    let est = self.walk(e);
                    cost = add(cost, est.cost);
                    elem = elem.max(est.size);
                }
                Est {
                    cost,
                    size: Size {
                        bytes: 0,
                        entries: list.elements.len() as u64,
                        elem_bytes: elem.bytes,
                        elem_entries: elem.entries,
                    },
                }
            }
            Expr::Map(map) => {
                let mut cost = add(1, mul(2, map.entries.len() as u64));
                let mut key = Size::default();
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(e) = &entry.expr {
                        let k = self.walk(&e.key);
                        let v = self.walk(&e.value);
                        cost = add(cost, add(k.cost, v.cost));
                        key = key.max(k.size);
                    }
                }
                Est {
                    cost,
                    size: Size {
                        bytes: 0,
                        entries: map.entries.len() as u64,
                        elem_bytes: key.bytes,
                        elem_entries: key.entries,
                    },
                }
            }
            Expr::Struct(s) => {
                let mut cost = add(1, s.entries.len() as u64);
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        cost = add(cost, self.walk(&f.value).cost);
                    }
                }
                Est { cost, size: ANY }
            }
            Expr::Unspecified => Est::default(),
        }
    }

    /// The size of a bare identifier: a comprehension variable, or a
    /// context variable read whole.
    fn ident(&self, name: &str) -> Size {
        if let Some((_, size)) = self.locals.iter().rev().find(|(n, _)| n == name) {
            return *size;
        }
        schema::variable_type(name, self.inputs.scope).map_or(ANY, |ty| self.size_of(ty, name))
    }

    /// A select chain rooted at a context variable (`subject.roles`): one
    /// unit per step, the size its schema type allows.
    fn path(&self, expr: &IdedExpr) -> Option<Est> {
        let mut fields = Vec::new();
        let mut cur = expr;
        let root = loop {
            match &cur.expr {
                Expr::Select(s) if !s.test => {
                    fields.push(s.field.as_str());
                    cur = &s.operand;
                }
                Expr::Ident(name) => break name,
                _ => return None,
            }
        };
        if self.locals.iter().any(|(n, _)| n == root) {
            return None;
        }
        let mut ty = schema::variable_type(root, self.inputs.scope)?;
        let mut last = root.as_str();
        for field in fields.iter().rev() {
            ty = match ty {
                Ty::Message(m) => m.field(field).unwrap_or(Ty::Dyn),
                _ => Ty::Dyn,
            };
            last = field;
        }
        Some(Est {
            cost: add(1, fields.len() as u64),
            size: self.size_of(ty, last),
        })
    }

    /// The worst-case size of a value of type `ty` (the field or variable
    /// `name`).
    fn size_of(&self, ty: Ty, name: &str) -> Size {
        match ty {
            Ty::String if name == "last_country" || name == "country" => Size::string(2),
            Ty::String => Size::string(STRING_BYTES),
            Ty::StringList if name == "signals" => Size {
                entries: self.inputs.signals,
                elem_bytes: STRING_BYTES,
                ..Size::default()
            },
            Ty::StringList => Size {
                entries: ENTRIES,
                elem_bytes: STRING_BYTES,
                ..Size::default()
            },
            Ty::Map | Ty::Dyn => ANY,
            Ty::Bool | Ty::Int | Ty::Double | Ty::Timestamp | Ty::Message(_) => Size::default(),
        }
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Est {
        let range = self.walk(&c.iter_range);
        let init = self.walk(&c.accu_init);
        let iterations = range.size.entries;
        let scope = self.locals.len();
        self.locals.push((c.iter_var.clone(), range.size.elem()));
        if let Some(v) = &c.iter_var2 {
            self.locals.push((v.clone(), ANY));
        }
        // `map` and `filter` grow a list by one entry per iteration; the
        // other macros keep a bool or a count.
        let accu = if init.size.entries > 0 || matches!(c.accu_init.expr, Expr::List(_)) {
            Size {
                entries: add(init.size.entries, iterations),
                ..ANY
            }
        } else {
            init.size
        };
        self.locals.push((c.accu_var.clone(), accu));
        let cond = self.walk(&c.loop_cond);
        let step = self.walk(&c.loop_step);
        let result = self.walk(&c.result);
        self.locals.truncate(scope);
        let per_iteration = add(1, add(cond.cost, step.cost));
        Est {
            cost: add(
                add(range.cost, init.cost),
                add(mul(iterations, per_iteration), result.cost),
            ),
            size: result.size,
        }
    }

    fn call(&mut self, call: &CallExpr) -> Est {
        let name = call.func_name.as_str();
        // `history.count(glob, window)`: the target is not a value.
        if name == "count"
            && let Some(target) = &call.target
            && matches!(&target.expr, Expr::Ident(h) if h == "history" && !self.is_local(h))
        {
            let args: Vec<Est> = call.args.iter().map(|a| self.walk(a)).collect();
            let pattern = args.first().map_or(0, |a| a.size.bytes);
            let per_event = add(1, read(add(pattern, STRING_BYTES)));
            let cost = args.iter().fold(
                add(2, mul(self.inputs.history_events, per_event)),
                |c, a| add(c, a.cost),
            );
            return Est {
                cost,
                size: Size::default(),
            };
        }
        if name == operators::CONDITIONAL
            && let [c, t, f] = call.args.as_slice()
        {
            let (c, t, f) = (self.walk(c), self.walk(t), self.walk(f));
            return Est {
                cost: add(add(c.cost, 1), t.cost.max(f.cost)),
                size: t.size.max(f.size),
            };
        }
        let target = call.target.as_ref().map(|t| self.walk(t));
        let args: Vec<Est> = call.args.iter().map(|a| self.walk(a)).collect();
        let operands: Vec<Size> = target.iter().chain(&args).map(|e| e.size).collect();
        let (own, size) = self.function(name, &operands, call);
        let cost = target.iter().chain(&args).fold(own, |c, e| add(c, e.cost));
        Est { cost, size }
    }

    fn is_local(&self, name: &str) -> bool {
        self.locals.iter().any(|(n, _)| n == name)
    }

    /// The cost of calling `name` on operands of these sizes (the target
    /// first), besides evaluating them, and its result's size.
    fn function(&self, name: &str, operands: &[Size], call: &CallExpr) -> (u64, Size) {
        let a = operands.first().copied().unwrap_or_default();
        let b = operands.get(1).copied().unwrap_or_default();
        match name {
            operators::LOGICAL_AND
            | operators::LOGICAL_OR
            | operators::LOGICAL_NOT
            | operators::NEGATE
            | operators::NOT_STRICTLY_FALSE
            | operators::SUBSTRACT
            | operators::MULTIPLY
            | operators::DIVIDE
            | operators::MODULO
            | "size"
            | "has" => (1, Size::default()),
            operators::EQUALS | operators::NOT_EQUALS => (1 + compare(a, b), Size::default()),
            operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => (1 + read(a.bytes.min(b.bytes)), Size::default()),
            operators::ADD => (
                add(
                    1,
                    add(read(add(a.bytes, b.bytes)), add(a.entries, b.entries)),
                ),
                Size {
                    bytes: add(a.bytes, b.bytes),
                    entries: add(a.entries, b.entries),
                    elem_bytes: a.elem_bytes.max(b.elem_bytes),
                    elem_entries: a.elem_entries.max(b.elem_entries),
                },
            ),
            operators::IN => {
                let one = add(1, read(a.bytes.min(b.elem_bytes)));
                (
                    add(1, mul(b.entries, one).div_ceil(ENTRIES_PER_UNIT)),
                    Size::default(),
                )
            }
            operators::INDEX | operators::OPT_INDEX => (add(1, read(b.bytes)), a.elem()),
            "contains" | "startsWith" | "endsWith" => {
                (add(1, read(add(a.bytes, b.bytes))), Size::default())
            }
            crate::expr::matches::MATCHES => (self.regex(a, b, call), Size::default()),
            crate::lists::IP_IN => (add(33, read(a.bytes)), Size::default()),
            "string" => (add(1, read(a.bytes)), Size::string(a.bytes.max(32))),
            _ => {
                let read_all = operands.iter().fold(1, |c, o| add(c, read(o.bytes)));
                (read_all, ANY)
            }
        }
    }

    /// `matches`: the automaton's states (of a pattern written in the
    /// condition) times the input's bytes; a pattern from the request also
    /// pays its compile.
    fn regex(&self, text: Size, _pattern: Size, call: &CallExpr) -> u64 {
        let pattern = call.args.last().map(|p| p.id);
        let literal = pattern.and_then(|id| self.inputs.regex_states.get(&id));
        let (compile, states) = match literal {
            Some(states) => (0, *states as u64),
            None => (DYNAMIC_REGEX_COMPILE, DYNAMIC_REGEX_STATES),
        };
        let steps = mul(add(text.bytes, 1), states).div_ceil(REGEX_STEPS_PER_UNIT);
        add(add(1, compile), steps)
    }
}

/// `n` with thousands separators: `16,777,216`.
pub fn units(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Comparing two values: their bytes, or their entries one by one.
fn compare(a: Size, b: Size) -> u64 {
    let entries = a.entries.min(b.entries);
    let each = add(1, read(a.elem_bytes.min(b.elem_bytes)));
    add(
        read(a.bytes.min(b.bytes)),
        mul(entries, each).div_ceil(ENTRIES_PER_UNIT),
    )
}

fn literal_size(lit: &LiteralValue) -> Size {
    match lit {
        LiteralValue::String(s) => Size::string(s.inner().len() as u64),
        LiteralValue::Bytes(b) => Size::string(b.inner().len() as u64),
        _ => Size::default(),
    }
}

#[cfg(test)]
mod tests;
