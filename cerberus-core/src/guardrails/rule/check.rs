//! The checks a rule passes when its policy is saved: every name it reads is known, and every
//! operator and function gets operands it accepts.
//!
//! The `cel` crate parses and runs CEL but has no type checker (cel-go's `Checker`), so a rule such as
//! `tool > 5` or `agent.nmae == 'ci'` would compile and fail on every message. This module is the part
//! of a checker a rule needs: the variables have declared types (`arguments` and `result` are maps of
//! values of any type, as JSON is), each node's type is inferred from its operands, and an operation
//! that no operand types could make work is refused with its position. Values of unknown type (`dyn`,
//! anything read from `arguments`) pass: what they hold is known only when the rule runs, where a
//! failure fails closed.

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SelectExpr, operators,
};

use super::variables::{Variable, Variables};

/// A type as the checker knows it.
#[derive(Clone, Debug, PartialEq)]
enum Type {
    /// Known only when the rule runs.
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Timestamp,
    Duration,
    List(Box<Type>),
    /// A map with string keys, of values of this type.
    Map(Box<Type>),
    /// `agent`, `workspace` or `organisation`: `id`, `name`, `labels` and `groups`.
    Caller,
    /// A type named as a value (`type(x) == string`).
    Kind,
}

impl Type {
    fn describe(&self) -> String {
        match self {
            Self::Dyn => "value of any type".into(),
            Self::Null => "null".into(),
            Self::Bool => "bool".into(),
            Self::Int => "int".into(),
            Self::Uint => "uint".into(),
            Self::Double => "double".into(),
            Self::String => "string".into(),
            Self::Bytes => "bytes".into(),
            Self::Timestamp => "timestamp".into(),
            Self::Duration => "duration".into(),
            Self::List(item) => format!("list of {}", item.describe()),
            Self::Map(value) => format!("map of {}", value.describe()),
            Self::Caller => "caller (id, name, labels, groups)".into(),
            Self::Kind => "type".into(),
        }
    }

    fn is_dyn(&self) -> bool {
        *self == Self::Dyn
    }

    fn is_number(&self) -> bool {
        matches!(self, Self::Int | Self::Uint | Self::Double)
    }
}

/// Why a rule was refused, and where in its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CheckError {
    /// The byte offset in the rule's text of the part at fault.
    pub(super) at: usize,
    pub(super) message: String,
}

/// Checks a parsed rule, and returns the variables it reads.
pub(super) fn check(
    expr: &IdedExpr,
    offset_of: &dyn Fn(u64) -> usize,
) -> Result<Variables, CheckError> {
    let mut checker = Checker {
        offset_of,
        scope: Vec::new(),
        reads: Variables::default(),
    };
    let ty = checker.expr(expr)?;
    if !matches!(ty, Type::Bool | Type::Dyn) {
        return Err(checker.error(
            expr,
            format!(
                "a rule must give true or false, and this one gives a {}",
                ty.describe()
            ),
        ));
    }
    Ok(checker.reads)
}

struct Checker<'a> {
    offset_of: &'a dyn Fn(u64) -> usize,
    /// The variables of the comprehensions around the node checked, innermost last.
    scope: Vec<(String, Type)>,
    reads: Variables,
}

/// The names CEL gives types, usable as values.
const TYPE_NAMES: [&str; 10] = [
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "list",
    "map",
    "null_type",
    "type",
];

/// The accessors of timestamps and durations, each with an optional time zone argument.
const TIME_ACCESSORS: [&str; 10] = [
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

impl Checker<'_> {
    fn error(&self, expr: &IdedExpr, message: String) -> CheckError {
        CheckError {
            at: (self.offset_of)(expr.id),
            message,
        }
    }

    fn expr(&mut self, expr: &IdedExpr) -> Result<Type, CheckError> {
        match &expr.expr {
            Expr::Unspecified => Ok(Type::Dyn),
            Expr::Literal(literal) => Ok(match literal {
                LiteralValue::Boolean(_) => Type::Bool,
                LiteralValue::Bytes(_) => Type::Bytes,
                LiteralValue::Double(_) => Type::Double,
                LiteralValue::Int(_) => Type::Int,
                LiteralValue::Null => Type::Null,
                LiteralValue::String(_) => Type::String,
                LiteralValue::UInt(_) => Type::Uint,
            }),
            Expr::Ident(name) => self.ident(expr, name),
            Expr::Select(select) => self.select(expr, select),
            Expr::List(list) => {
                let mut item: Option<Type> = None;
                for element in &list.elements {
                    let ty = self.expr(element)?;
                    item = Some(match item {
                        Some(known) if known == ty => known,
                        Some(_) => Type::Dyn,
                        None => ty,
                    });
                }
                Ok(Type::List(Box::new(item.unwrap_or(Type::Dyn))))
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(entry) = &entry.expr {
                        self.expr(&entry.key)?;
                        self.expr(&entry.value)?;
                    }
                }
                Ok(Type::Map(Box::new(Type::Dyn)))
            }
            Expr::Struct(_) => Err(self.error(
                expr,
                "message literals are not supported: rules read JSON".into(),
            )),
            Expr::Comprehension(comprehension) => self.comprehension(comprehension),
            Expr::Call(call) => self.call(expr, call),
        }
    }

    fn ident(&mut self, expr: &IdedExpr, name: &str) -> Result<Type, CheckError> {
        if let Some((_, ty)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(ty.clone());
        }
        if let Some(variable) = Variable::from_name(name) {
            self.reads.insert(variable);
            return Ok(match variable {
                Variable::Method | Variable::Tool | Variable::Direction => Type::String,
                Variable::Arguments | Variable::Result => Type::Map(Box::new(Type::Dyn)),
                Variable::Agent | Variable::Workspace | Variable::Organisation => Type::Caller,
                Variable::Now => Type::Timestamp,
            });
        }
        if TYPE_NAMES.contains(&name) {
            return Ok(Type::Kind);
        }
        let known: Vec<&str> = Variable::ALL.iter().map(|v| v.name()).collect();
        Err(self.error(
            expr,
            format!("unknown name `{name}`: a rule reads {}", known.join(", ")),
        ))
    }

    fn select(&mut self, expr: &IdedExpr, select: &SelectExpr) -> Result<Type, CheckError> {
        // A member of `arguments` or `result` read by name: only that member need be made.
        if let Expr::Ident(name) = &select.operand.expr
            && !self.scope.iter().any(|(n, _)| n == name)
            && let Some(variable @ (Variable::Arguments | Variable::Result)) =
                Variable::from_name(name)
        {
            self.reads.insert_member(variable, &select.field);
            return Ok(if select.test { Type::Bool } else { Type::Dyn });
        }
        let operand = self.expr(&select.operand)?;
        let field = select.field.as_str();
        let ty = match &operand {
            Type::Caller => match field {
                "id" | "name" => Type::String,
                "labels" => Type::Map(Box::new(Type::String)),
                "groups" => Type::List(Box::new(Type::String)),
                _ => {
                    return Err(self.error(
                        expr,
                        format!("no field `{field}`: the caller has id, name, labels and groups"),
                    ));
                }
            },
            Type::Map(value) => (**value).clone(),
            Type::Dyn => Type::Dyn,
            other => {
                return Err(self.error(
                    expr,
                    format!("a {} has no field `{field}`", other.describe()),
                ));
            }
        };
        Ok(if select.test { Type::Bool } else { ty })
    }

    fn comprehension(&mut self, c: &ComprehensionExpr) -> Result<Type, CheckError> {
        let range = self.expr(&c.iter_range)?;
        let (first, second) = match &range {
            Type::List(item) => (Type::Int, (**item).clone()),
            Type::Map(value) => (Type::String, (**value).clone()),
            Type::Dyn => (Type::Dyn, Type::Dyn),
            other => {
                return Err(self.error(
                    &c.iter_range,
                    format!("cannot iterate over a {}", other.describe()),
                ));
            }
        };
        // With one variable, it is a list's item or a map's key.
        let depth = self.scope.len();
        match &c.iter_var2 {
            Some(var2) => {
                self.scope.push((c.iter_var.clone(), first));
                self.scope.push((var2.clone(), second));
            }
            None => {
                let item = match range {
                    Type::List(_) => second,
                    _ => first,
                };
                self.scope.push((c.iter_var.clone(), item));
            }
        }
        let accu = self.expr(&c.accu_init)?;
        self.scope.push((c.accu_var.clone(), accu));
        let checked = (|| {
            self.expr(&c.loop_cond)?;
            self.expr(&c.loop_step)?;
            self.expr(&c.result)
        })();
        self.scope.truncate(depth);
        checked
    }

    fn call(&mut self, expr: &IdedExpr, call: &CallExpr) -> Result<Type, CheckError> {
        let target = match &call.target {
            Some(target) => Some(self.expr(target)?),
            None => None,
        };
        let mut args = Vec::with_capacity(call.args.len());
        for arg in &call.args {
            args.push(self.expr(arg)?);
        }
        let name = call.func_name.as_str();
        let fail = |checker: &Self, why: String| Err(checker.error(expr, why));
        let operands = |args: &[Type]| {
            args.iter()
                .map(Type::describe)
                .collect::<Vec<_>>()
                .join(" and ")
        };
        match (name, target.as_ref(), args.as_slice()) {
            (operators::LOGICAL_AND | operators::LOGICAL_OR, None, [a, b]) => {
                for (side, ty) in [(0, a), (1, b)] {
                    if !matches!(ty, Type::Bool | Type::Dyn) {
                        let at = call.args.get(side).unwrap_or(expr);
                        return Err(self.error(
                            at,
                            format!("`&&` and `||` take true or false, not a {}", ty.describe()),
                        ));
                    }
                }
                Ok(Type::Bool)
            }
            (operators::LOGICAL_NOT, None, [Type::Bool | Type::Dyn]) => Ok(Type::Bool),
            (operators::NOT_STRICTLY_FALSE, None, [_]) => Ok(Type::Bool),
            (operators::CONDITIONAL, None, [condition, yes, no]) => {
                if !matches!(condition, Type::Bool | Type::Dyn) {
                    return fail(self, "a condition must be true or false".into());
                }
                Ok(if yes == no { yes.clone() } else { Type::Dyn })
            }
            (operators::EQUALS | operators::NOT_EQUALS, None, [a, b]) => {
                if comparable(a, b) {
                    Ok(Type::Bool)
                } else {
                    fail(self, format!("cannot compare a {}", operands(&args)))
                }
            }
            (
                operators::LESS
                | operators::LESS_EQUALS
                | operators::GREATER
                | operators::GREATER_EQUALS,
                None,
                [a, b],
            ) => {
                let ordered = a.is_dyn()
                    || b.is_dyn()
                    || (a.is_number() && b.is_number())
                    || (a == b
                        && matches!(
                            a,
                            Type::String
                                | Type::Bytes
                                | Type::Bool
                                | Type::Timestamp
                                | Type::Duration
                        ));
                if ordered {
                    Ok(Type::Bool)
                } else {
                    fail(self, format!("cannot order a {}", operands(&args)))
                }
            }
            (operators::ADD, None, [a, b]) => match (a, b) {
                (Type::Dyn, _) | (_, Type::Dyn) => Ok(Type::Dyn),
                (a, b)
                    if a == b
                        && (a.is_number()
                            || matches!(a, Type::String | Type::Bytes | Type::Duration)) =>
                {
                    Ok(a.clone())
                }
                (Type::List(_), Type::List(_)) => Ok(Type::List(Box::new(Type::Dyn))),
                (Type::Timestamp, Type::Duration) | (Type::Duration, Type::Timestamp) => {
                    Ok(Type::Timestamp)
                }
                _ => fail(self, format!("cannot add a {}", operands(&args))),
            },
            (operators::SUBSTRACT, None, [a, b]) => match (a, b) {
                (Type::Dyn, _) | (_, Type::Dyn) => Ok(Type::Dyn),
                (a, b) if a == b && (a.is_number() || *a == Type::Duration) => Ok(a.clone()),
                (Type::Timestamp, Type::Timestamp) => Ok(Type::Duration),
                (Type::Timestamp, Type::Duration) => Ok(Type::Timestamp),
                _ => fail(self, format!("cannot subtract a {}", operands(&args))),
            },
            (operators::MULTIPLY | operators::DIVIDE | operators::MODULO, None, [a, b]) => {
                match (a, b) {
                    (Type::Dyn, _) | (_, Type::Dyn) => Ok(Type::Dyn),
                    (a, b) if a == b && a.is_number() => Ok(a.clone()),
                    _ => fail(
                        self,
                        format!("cannot do arithmetic on a {}", operands(&args)),
                    ),
                }
            }
            (operators::NEGATE, None, [a]) if matches!(a, Type::Int | Type::Double | Type::Dyn) => {
                Ok(a.clone())
            }
            (operators::INDEX, None, [container, key]) => match container {
                Type::List(item) if matches!(key, Type::Int | Type::Uint | Type::Dyn) => {
                    Ok((**item).clone())
                }
                Type::Map(value) => Ok((**value).clone()),
                Type::Dyn => Ok(Type::Dyn),
                _ => fail(
                    self,
                    format!(
                        "cannot index a {} with a {}",
                        container.describe(),
                        key.describe()
                    ),
                ),
            },
            (operators::IN, None, [_, collection]) => match collection {
                Type::List(_) | Type::Map(_) | Type::Dyn => Ok(Type::Bool),
                other => fail(
                    self,
                    format!("`in` looks in a list or a map, not a {}", other.describe()),
                ),
            },
            ("size", None, [a]) | ("size", Some(a), []) => match a {
                Type::String | Type::Bytes | Type::List(_) | Type::Map(_) | Type::Dyn => {
                    Ok(Type::Int)
                }
                other => fail(self, format!("a {} has no size", other.describe())),
            },
            ("contains" | "startsWith" | "endsWith" | "matches", Some(text), [pattern]) => {
                let strings = matches!(text, Type::String | Type::Dyn)
                    && matches!(pattern, Type::String | Type::Dyn);
                if strings {
                    Ok(Type::Bool)
                } else {
                    fail(
                        self,
                        format!(
                            "`{name}` works on strings, not a {}",
                            operands(&[text.clone(), pattern.clone()])
                        ),
                    )
                }
            }
            ("matches", None, [text, pattern])
                if matches!(text, Type::String | Type::Dyn)
                    && matches!(pattern, Type::String | Type::Dyn) =>
            {
                Ok(Type::Bool)
            }
            ("int", None, [_]) => Ok(Type::Int),
            ("uint", None, [_]) => Ok(Type::Uint),
            ("double", None, [_]) => Ok(Type::Double),
            ("string", None, [_]) => Ok(Type::String),
            ("bytes", None, [_]) => Ok(Type::Bytes),
            ("bool", None, [_]) => Ok(Type::Bool),
            ("dyn", None, [_]) => Ok(Type::Dyn),
            ("type", None, [_]) => Ok(Type::Kind),
            ("timestamp", None, [Type::String | Type::Int | Type::Timestamp | Type::Dyn]) => {
                Ok(Type::Timestamp)
            }
            ("duration", None, [Type::String | Type::Duration | Type::Dyn]) => Ok(Type::Duration),
            (accessor, Some(time), zone) if TIME_ACCESSORS.contains(&accessor) => {
                let time_ok = matches!(time, Type::Timestamp | Type::Duration | Type::Dyn);
                let zone_ok = match zone {
                    [] => true,
                    [zone] => matches!(zone, Type::String | Type::Dyn) && *time != Type::Duration,
                    _ => false,
                };
                if time_ok && zone_ok {
                    Ok(Type::Int)
                } else {
                    fail(
                        self,
                        format!(
                            "`{accessor}` reads a timestamp or a duration, with an optional time zone"
                        ),
                    )
                }
            }
            _ => {
                let known = matches!(
                    name,
                    "size"
                        | "contains"
                        | "startsWith"
                        | "endsWith"
                        | "matches"
                        | "int"
                        | "uint"
                        | "double"
                        | "string"
                        | "bytes"
                        | "bool"
                        | "dyn"
                        | "type"
                        | "timestamp"
                        | "duration"
                ) || TIME_ACCESSORS.contains(&name)
                    || name.starts_with('_')
                    || name.starts_with('@')
                    || name.ends_with('_');
                if known {
                    let mut all = Vec::new();
                    all.extend(target);
                    all.extend(args.iter().cloned());
                    fail(
                        self,
                        format!(
                            "`{}` does not take a {}",
                            display_name(name),
                            operands(&all)
                        ),
                    )
                } else {
                    fail(self, format!("unknown function `{name}`"))
                }
            }
        }
    }
}

/// An operator as written (`_==_` is `==`).
fn display_name(name: &str) -> &str {
    name.trim_matches('_').trim_start_matches('@')
}

/// Whether `==` may compare values of these types.
fn comparable(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Dyn | Type::Null, _) | (_, Type::Dyn | Type::Null) => true,
        (a, b) if a.is_number() && b.is_number() => true,
        (Type::List(_), Type::List(_)) => true,
        (Type::Map(_) | Type::Caller, Type::Map(_) | Type::Caller) => true,
        (a, b) => a == b,
    }
}
