//! Name patterns with `*` (any run of characters, possibly empty) and `?` (exactly one character).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;

/// A checked wildcard pattern.
///
/// ```
/// use cerberus_core::guardrails::wildcard::Wildcard;
/// let p: Wildcard = "fs_*_v?".parse()?;
/// assert!(p.matches("fs_read_v2"));
/// assert!(!p.matches("fs_read_v10"));
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Wildcard {
    pattern: Box<str>,
    /// How the pattern matches, worked out once.
    shape: Shape,
}

/// The common patterns (`*`, `name`, `name*`, `*name`, `*name*`) match by a comparison or a substring
/// search; any other runs the general matcher.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Shape {
    /// Only `*`s: every name.
    Any,
    /// No wildcard: the name itself. The pattern is the literal.
    Exact,
    /// `literal*`.
    Prefix(Box<str>),
    /// `*literal`.
    Suffix(Box<str>),
    /// `*literal*`.
    Contains(Box<str>),
    /// Anything else. The pattern as characters, so that `?` stands for one character, not one byte.
    Glob(Box<[char]>),
}

impl Shape {
    fn of(pattern: &str) -> Self {
        let literal = pattern.trim_matches('*');
        if literal.contains(['*', '?']) {
            return Self::Glob(pattern.chars().collect());
        }
        match (pattern.starts_with('*'), pattern.ends_with('*')) {
            _ if literal.is_empty() => Self::Any,
            (false, false) => Self::Exact,
            (false, true) => Self::Prefix(literal.into()),
            (true, false) => Self::Suffix(literal.into()),
            (true, true) => Self::Contains(literal.into()),
        }
    }
}

impl Wildcard {
    /// Whether `name` matches the whole pattern. Runs in O(pattern × name) at worst, with no
    /// backtracking blow-up, and allocates only for a general pattern on non-ASCII text.
    pub fn matches(&self, name: &str) -> bool {
        match &self.shape {
            Shape::Any => true,
            Shape::Exact => *name == *self.pattern,
            Shape::Prefix(literal) => name.starts_with(&**literal),
            Shape::Suffix(literal) => name.ends_with(&**literal),
            Shape::Contains(literal) => {
                memchr::memmem::find(name.as_bytes(), literal.as_bytes()).is_some()
            }
            Shape::Glob(chars) => {
                if self.pattern.is_ascii() && name.is_ascii() {
                    glob(self.pattern.as_bytes(), name.as_bytes(), b'*', b'?')
                } else {
                    let name: Vec<char> = name.chars().collect();
                    glob(chars, &name, '*', '?')
                }
            }
        }
    }

    /// A pattern known to be valid (non-empty, short), for constants.
    pub(crate) fn from_str_unchecked(pattern: &'static str) -> Self {
        Self {
            pattern: pattern.into(),
            shape: Shape::of(pattern),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

fn glob<T: Copy + PartialEq>(pattern: &[T], name: &[T], any_run: T, any_one: T) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    // The last `*` seen and the name position it was last tried at.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(&c) if c == any_run => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == any_one || Some(&c) == name.get(n) => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == any_run))
}

impl std::str::FromStr for Wildcard {
    type Err = String;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        if pattern.is_empty() {
            return Err("a pattern cannot be empty".into());
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!("a pattern can be at most {MAX_PATTERN_LEN} bytes"));
        }
        Ok(Self {
            pattern: pattern.into(),
            shape: Shape::of(pattern),
        })
    }
}

impl fmt::Debug for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.pattern, f)
    }
}

impl fmt::Display for Wildcard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl Serialize for Wildcard {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

impl<'de> Deserialize<'de> for Wildcard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(p: &str) -> Wildcard {
        p.parse().unwrap()
    }

    #[test]
    fn matches_like_a_shell_glob() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("fs_*", "fs_", true),
            ("fs_*", "fs_read", true),
            ("fs_*", "xfs_read", false),
            ("*_delete", "fs_delete", true),
            ("*_delete", "fs_delete_all", false),
            ("fs_*_all", "fs_delete_all", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("?", "é", true),
            ("??", "é", false),
            ("read_?", "read_1", true),
            ("read_?", "read_", false),
            ("exact", "exact", true),
            ("exact", "Exact", false),
            ("**x**", "yyxyy", true),
            ("*é*", "café au lait", true),
            ("*é", "café", true),
            ("ca*", "café", true),
            ("*delete*", "echo", false),
            ("*delete*", "bulk_delete_rows", true),
            ("**", "", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(w(pattern).matches(name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn common_patterns_take_the_short_paths() {
        assert_eq!(w("***").shape, Shape::Any);
        assert_eq!(w("echo").shape, Shape::Exact);
        assert_eq!(w("fs_*").shape, Shape::Prefix("fs_".into()));
        assert_eq!(w("**_delete").shape, Shape::Suffix("_delete".into()));
        assert_eq!(w("*drop*").shape, Shape::Contains("drop".into()));
        assert!(matches!(w("fs_*_all").shape, Shape::Glob(_)));
        assert!(matches!(w("*a?*").shape, Shape::Glob(_)));
    }

    #[test]
    fn rejects_empty_and_huge_patterns() {
        assert!("".parse::<Wildcard>().is_err());
        assert!("x".repeat(MAX_PATTERN_LEN + 1).parse::<Wildcard>().is_err());
    }

    fn reference(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..])),
            (Some('?'), Some(_)) => reference(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => reference(&p[1..], &n[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn agrees_with_a_recursive_reference(pattern in "[abé*?]{1,8}", name in "[abé]{0,10}") {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            prop_assert_eq!(w(&pattern).matches(&name), reference(&p, &n));
        }
    }
}
