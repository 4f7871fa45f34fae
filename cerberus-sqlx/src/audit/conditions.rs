//! A `WHERE` clause built up condition by condition, whose parameters number themselves.

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use crate::rows::storable;

/// One bound value.
#[derive(Debug)]
enum Param {
    Text(String),
    Number(i64),
}

/// Conditions joined by `AND`, and their values in parameter order.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// The number the next parameter gets (`$n`).
    pub(crate) fn next(&self) -> usize {
        self.params.len() + 1
    }

    /// Adds `clause`, in which `$?` stands for a text parameter's number; the text is searched for as
    /// it is stored ([`storable`]).
    pub(crate) fn text(&mut self, clause: &str, value: impl Into<String>) -> &mut Self {
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.next())));
        self.params
            .push(Param::Text(storable(&value.into()).into_owned()));
        self
    }

    /// Adds `clause`, in which `$?` stands for a number parameter's number.
    pub(crate) fn number(&mut self, clause: &str, value: i64) -> &mut Self {
        self.clauses
            .push(clause.replace("$?", &format!("${}", self.next())));
        self.params.push(Param::Number(value));
        self
    }

    /// Adds the clause `make(n, m)` of a number parameter `$n` and a text parameter `$m`, each of which
    /// it may use more than once.
    pub(crate) fn number_and_text(
        &mut self,
        make: impl FnOnce(usize, usize) -> String,
        number: i64,
        text: impl Into<String>,
    ) -> &mut Self {
        let n = self.next();
        self.clauses.push(make(n, n + 1));
        self.params.push(Param::Number(number));
        self.params
            .push(Param::Text(storable(&text.into()).into_owned()));
        self
    }

    /// Adds a clause with no parameter.
    pub(crate) fn fixed(&mut self, clause: &str) -> &mut Self {
        self.clauses.push(clause.to_owned());
        self
    }

    /// The clauses joined by `AND` (`TRUE` when there are none).
    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "1 = 1".to_owned()
        } else {
            self.clauses.join(" AND ")
        }
    }

    /// Binds every parameter to `query`, in order.
    pub(crate) fn bind<'q>(
        &'q self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for param in &self.params {
            query = match param {
                Param::Text(text) => query.bind(text.as_str()),
                Param::Number(number) => query.bind(*number),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_order() {
        let mut conditions = Conditions::default();
        conditions
            .text("organisation_id = $?", "acme")
            .fixed("target IS NOT NULL")
            .number("occurred_at >= $?", 5);
        assert_eq!(
            conditions.sql(),
            "organisation_id = $1 AND target IS NOT NULL AND occurred_at >= $2"
        );
        assert_eq!(conditions.next(), 3);
    }
}
