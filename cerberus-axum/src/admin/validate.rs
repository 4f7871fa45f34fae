//! Checks on the values admin requests carry, each naming its field.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use super::error::ApiError;

/// The longest name of an organisation, workspace or agent access.
const MAX_NAME_CHARS: usize = 100;
/// The shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (argon2 has no limit, but a megabyte password is an attack).
const MAX_PASSWORD_CHARS: usize = 1024;

/// Characters no name or email may hold: the control characters (`char::is_control`).
const NO_CONTROL: &str = r"[^\x00-\x1f\x7f-\x9f]";
/// Characters of an email address: no control characters, white space or second `@`.
const EMAIL_CHAR: &str = r"[^\x00-\x1f\x7f-\x9f\s@]";

/// A display name in the OpenAPI document: what [`name`] accepts (1 to 100 characters, not all white
/// space, no control characters).
pub struct Name;

impl utoipa::PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "1 to 100 characters, not all white space, no control characters",
            ))
            .min_length(Some(1))
            .max_length(Some(MAX_NAME_CHARS))
            .pattern(Some(format!(
                r"^{NO_CONTROL}*[^\x00-\x1f\x7f-\x9f\s]{NO_CONTROL}*$"
            )))
            .into()
    }
}

impl utoipa::ToSchema for Name {}

/// An email address in the OpenAPI document: what [`email`] accepts (`local@domain` with a dot in the
/// domain, at most 254 characters, no white space).
pub struct Email;

impl utoipa::PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("`local@domain`, with a dot in the domain"))
            .max_length(Some(254))
            .pattern(Some(format!(
                r"^{EMAIL_CHAR}+@{EMAIL_CHAR}*\.{EMAIL_CHAR}*$"
            )))
            .into()
    }
}

impl utoipa::ToSchema for Email {}

/// A new password in the OpenAPI document: its length (what else [`password`] asks, that it be hard
/// to guess, a schema cannot say).
pub struct NewPassword;

impl utoipa::PartialSchema for NewPassword {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "12 to 1024 characters, and hard to guess: zxcvbn must score it 3 of 4 or more",
            ))
            .min_length(Some(MIN_PASSWORD_CHARS))
            .max_length(Some(MAX_PASSWORD_CHARS))
            .into()
    }
}

impl utoipa::ToSchema for NewPassword {}

/// Labels in the OpenAPI document: what [`cerberus_core::check_labels`] accepts.
pub struct LabelMap;

impl utoipa::PartialSchema for LabelMap {
    fn schema() -> RefOr<Schema> {
        use cerberus_core::{MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS};
        let key = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!(
                "^[A-Za-z0-9][A-Za-z0-9_./-]{{0,{}}}$",
                MAX_LABEL_KEY_CHARS - 1
            )));
        let value = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_LABEL_VALUE_CHARS))
            .pattern(Some(format!("^{NO_CONTROL}*$")));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "at most 64 labels; keys of 1 to 63 letters, digits, `_`, `-`, `.` and `/`, starting with a letter or digit; values of at most 256 characters, no control characters",
            ))
            .max_properties(Some(MAX_LABELS))
            .property_names(Some(key))
            .additional_properties(Some(value))
            .into()
    }
}

impl utoipa::ToSchema for LabelMap {}

/// A display name: 1 to 100 characters after trimming, no control characters.
pub fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::invalid(field, "cannot be empty"));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(
            field,
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "cannot contain control characters",
        ));
    }
    Ok(value.to_owned())
}

/// An email address, in the plain shape login needs (`local@domain`, at most 254 characters).
pub fn email(field: &str, value: &str) -> Result<String, ApiError> {
    let value = value.trim();
    let shaped = value.len() <= 254
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if shaped {
        Ok(value.to_owned())
    } else {
        Err(ApiError::invalid(field, "is not an email address"))
    }
}

/// A new password: 12 to 1024 characters, and not easy to guess (see [`password_problem`]). `related`
/// are the other values of the request (an email, a name), which the password should not build on.
pub fn password(field: &str, value: &str, related: &[&str]) -> Result<(), ApiError> {
    match password_problem(value, related) {
        Some(problem) => Err(ApiError::invalid(field, problem)),
        None => Ok(()),
    }
}

/// What is wrong with a new password, if anything: fewer than 12 or more than 1024 characters, or
/// easy to guess. Guessability is zxcvbn's estimate, which knows the common passwords of public
/// leaks, dictionary words, names, keyboard patterns, repeats, sequences and dates, and the
/// `related` values: a password it scores below 3 of 4 (guessed within about 10^8 tries) is refused,
/// with its warning.
pub fn password_problem(value: &str, related: &[&str]) -> Option<String> {
    let chars = value.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Some(format!(
            "must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Some(format!("must have at most {MAX_PASSWORD_CHARS} characters"));
    }
    let estimate = zxcvbn::zxcvbn(value, related);
    if estimate.score() >= zxcvbn::Score::Three {
        return None;
    }
    let warning = estimate
        .feedback()
        .and_then(|feedback| feedback.warning())
        .map(|warning| format!(": {warning}"))
        .unwrap_or_default();
    Some(format!("is too easy to guess{warning}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_emails_and_passwords() {
        assert_eq!(name("name", "  crm  ").unwrap(), "crm");
        assert!(name("name", "   ").is_err());
        assert!(
            name("name", &"x".repeat(101))
                .unwrap_err()
                .to_string()
                .starts_with("name:")
        );
        assert!(name("name", "a\u{0}b").is_err());
        assert_eq!(
            name("name", "o'brien; DROP TABLE x").unwrap(),
            "o'brien; DROP TABLE x"
        );
        assert!(email("email", "a@example.com").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "@example.com",
            "a b@example.com",
            "a@b@example.com",
        ] {
            assert!(email("email", bad).is_err(), "{bad}");
        }
        assert!(password("password", "short", &[]).is_err());
        assert!(password("password", "correct horse battery staple", &[]).is_ok());
        assert!(password("password", &"x".repeat(1025), &[]).is_err());
    }

    #[test]
    fn common_and_patterned_passwords_are_refused() {
        for weak in [
            "aaaaaaaaaaaa",
            "password1234",
            "123456789012",
            "qwertyuiopas",
            "Password123!",
            "abcdefghijkl",
            "iloveyou1234",
        ] {
            let problem = password_problem(weak, &[]);
            assert!(
                problem
                    .as_deref()
                    .is_some_and(|p| p.starts_with("is too easy")),
                "{weak}: {problem:?}"
            );
        }
        // A password built on the account's own email is weaker than it looks.
        assert!(password_problem("ann.lovelace2026", &[]).is_none());
        assert!(
            password_problem(
                "ann.lovelace2026",
                &["ann.lovelace2026@example.com", "ann.lovelace2026"]
            )
            .is_some()
        );
        assert!(password_problem("tq8#Vm2!rLx9", &[]).is_none());
    }
}
