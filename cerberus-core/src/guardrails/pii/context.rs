//! Context words: bare numbers that are personal data only when a word before them says so.
//!
//! Nine digits in a row are an order number as often as a social security number, and ten as often
//! an id as a phone number, so the scanner's patterns leave bare digit runs alone. With context words
//! on (the `context` setting of `pii_ssn` and `pii_phone`, off by default), such a run counts when one
//! of its kind's words ends shortly before it, with no other number between: `SSN: 536221234`,
//! `social security number is 536221234`, `mobile 2125550143`. The idea is Presidio's, kept to the two
//! kinds whose values have a bare form that the patterns cannot take on their own.
//!
//! The pass reads the whole text, eight bytes at a time to its next digit, and runs only where
//! context words are on.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::scanner::find_in_range;
use super::validate;
use super::{Finding, PiiKind};
use crate::policy::PolicyError;

/// How far before a value its word may end: room for `number is: ` and the like.
pub const CONTEXT_REACH: usize = 24;

/// The longest context word accepted, in bytes.
pub const LONGEST_CONTEXT_WORD: usize = 32;

/// How many digits a bare value has: nine for an SSN, ten or eleven for a phone number.
const BARE_DIGITS: std::ops::RangeInclusive<usize> = 9..=11;

/// The built-in words of `pii_ssn`.
pub const SSN_WORDS: [&str; 5] = ["ssn", "ssns", "ss#", "social security", "social sec"];

/// The built-in words of `pii_phone`.
pub const PHONE_WORDS: [&str; 11] = [
    "phone",
    "phones",
    "telephone",
    "tel",
    "mobile",
    "cell",
    "cellphone",
    "fax",
    "call",
    "sms",
    "whatsapp",
];

/// The `context` setting of a `pii_*` entry.
///
/// ```json
/// {"type": "pii_ssn", "action": "redact", "context": true}
/// {"type": "pii_phone", "context": ["phone", "contact number", "numéro"]}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PiiContext {
    /// `true` for the kind's built-in words ([`SSN_WORDS`], [`PHONE_WORDS`]); `false`, the default,
    /// for none.
    BuiltIn(bool),
    /// These words instead, compared ignoring ASCII case.
    Words(Vec<String>),
}

impl Default for PiiContext {
    fn default() -> Self {
        Self::BuiltIn(false)
    }
}

impl PiiContext {
    /// Whether no context word is set.
    pub fn is_off(&self) -> bool {
        *self == Self::BuiltIn(false)
    }

    /// The words this setting gives `kind`: none for a kind without a bare form.
    pub fn words(&self, kind: PiiKind) -> Vec<String> {
        let built_in: &[&str] = match kind {
            PiiKind::Ssn => &SSN_WORDS,
            PiiKind::Phone => &PHONE_WORDS,
            PiiKind::CreditCard | PiiKind::Email | PiiKind::IpAddress => &[],
        };
        match self {
            Self::BuiltIn(false) => Vec::new(),
            Self::BuiltIn(true) => built_in.iter().map(|w| (*w).to_owned()).collect(),
            Self::Words(_) if built_in.is_empty() => Vec::new(),
            Self::Words(words) => words.clone(),
        }
    }

    /// Checks the setting for `kind`: an error when the kind has no bare form, the list is empty, or
    /// a word is empty, longer than [`LONGEST_CONTEXT_WORD`] or holds a digit (no number can follow
    /// such a word with no digit between).
    pub fn check(&self, kind: PiiKind) -> Result<(), PolicyError> {
        if self.is_off() {
            return Ok(());
        }
        if !matches!(kind, PiiKind::Ssn | PiiKind::Phone) {
            return Err(PolicyError::new(
                "context",
                format!(
                    "context words apply to pii_ssn and pii_phone, not {}",
                    kind.type_name()
                ),
            ));
        }
        let Self::Words(words) = self else {
            return Ok(());
        };
        if words.is_empty() {
            return Err(PolicyError::new(
                "context",
                "give at least one word, or `true` for the built-in ones",
            ));
        }
        for (i, word) in words.iter().enumerate() {
            let problem = if word.trim().is_empty() {
                "is empty"
            } else if word.len() > LONGEST_CONTEXT_WORD {
                "is longer than 32 bytes"
            } else if word.bytes().any(|b| b.is_ascii_digit()) {
                "holds a digit"
            } else {
                continue;
            };
            return Err(PolicyError::new(
                format!("context[{i}]"),
                format!("the word {problem}"),
            ));
        }
        Ok(())
    }
}

/// The context words of the kinds that have them, and the pass that finds the values they label.
#[derive(Clone, Debug, Default)]
pub struct ContextWords {
    labels: Vec<Label>,
}

/// One kind's words.
#[derive(Clone, Debug)]
struct Label {
    kind: PiiKind,
    words: Vec<Box<[u8]>>,
}

impl ContextWords {
    /// No words: finds nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `words` for `kind` (only [`PiiKind::Ssn`] and [`PiiKind::Phone`] have a bare form; the
    /// words of other kinds are never looked for).
    pub fn add(&mut self, kind: PiiKind, words: impl IntoIterator<Item = impl AsRef<str>>) {
        let words = words
            .into_iter()
            .filter(|w| !w.as_ref().trim().is_empty())
            .map(|w| Box::<[u8]>::from(w.as_ref().trim().as_bytes()));
        match self.labels.iter_mut().find(|l| l.kind == kind) {
            Some(label) => label.words.extend(words),
            None => self.labels.push(Label {
                kind,
                words: words.collect(),
            }),
        }
    }

    /// Whether no word is set.
    pub fn is_empty(&self) -> bool {
        self.labels.iter().all(|l| l.words.is_empty())
    }

    /// Calls `found` for every bare value in `text` that one of its kind's words labels, left to
    /// right.
    pub fn scan(&self, text: &str, mut found: impl FnMut(Finding)) {
        if self.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let mut at = 0;
        while let Some(start) = bytes
            .get(at..)
            .and_then(|rest| find_in_range(rest, (b'0', b'9'), u8::is_ascii_digit))
            .map(|skip| at + skip)
        {
            let end = bytes
                .get(start..)
                .and_then(|rest| rest.iter().position(|b| !b.is_ascii_digit()))
                .map_or(bytes.len(), |len| start + len);
            at = end;
            if !BARE_DIGITS.contains(&(end - start)) {
                continue;
            }
            let labelled = self.labels.iter().find_map(|label| {
                let span = bare(label.kind, bytes, start..end)?;
                labelled_by(bytes, start, &label.words).then_some((label.kind, span))
            });
            if let Some((kind, span)) = labelled {
                found(Finding { kind, span });
            }
        }
    }
}

/// The bare value of `kind` that `run`, a maximal run of digits, is, if any.
fn bare(kind: PiiKind, bytes: &[u8], run: Range<usize>) -> Option<Range<usize>> {
    match kind {
        PiiKind::Ssn => validate::bare_ssn(bytes, run),
        PiiKind::Phone => validate::bare_phone(bytes, run),
        PiiKind::CreditCard | PiiKind::Email | PiiKind::IpAddress => None,
    }
}

/// Whether one of `words` ends at most [`CONTEXT_REACH`] bytes before `start`, as a whole word (not
/// inside a longer one), with no digit between it and `start`.
fn labelled_by(bytes: &[u8], start: usize, words: &[Box<[u8]>]) -> bool {
    // The word must label this number, not an earlier one: it starts after the last digit before the
    // number, and no further back than a word can reach.
    let reach = start.saturating_sub(CONTEXT_REACH + LONGEST_CONTEXT_WORD);
    let Some(head) = bytes.get(reach..start) else {
        return false;
    };
    let floor = head
        .iter()
        .rposition(u8::is_ascii_digit)
        .map_or(0, |i| i + 1);
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    // Positions in `head`; `bytes` is read for the byte before it.
    let before = |i: usize| match i.checked_sub(1) {
        Some(i) => head.get(i).copied(),
        None => reach.checked_sub(1).and_then(|i| bytes.get(i)).copied(),
    };
    let ends = head.len().saturating_sub(CONTEXT_REACH).max(floor)..=head.len();
    ends.into_iter().any(|end| {
        let Some(last) = end.checked_sub(1).and_then(|i| head.get(i)) else {
            return false;
        };
        words.iter().any(|word| {
            if !word.last().is_some_and(|w| w.eq_ignore_ascii_case(last)) {
                return false;
            }
            let Some(word_start) = end.checked_sub(word.len()).filter(|s| *s >= floor) else {
                return false;
            };
            let glued_before = word.first().is_some_and(is_word)
                && before(word_start).is_some_and(|b| is_word(&b));
            let glued_after = is_word(last) && head.get(end).is_some_and(is_word);
            !glued_before
                && !glued_after
                && head
                    .get(word_start..end)
                    .is_some_and(|candidate| candidate.eq_ignore_ascii_case(word))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in() -> ContextWords {
        let mut words = ContextWords::new();
        words.add(PiiKind::Ssn, SSN_WORDS);
        words.add(PiiKind::Phone, PHONE_WORDS);
        words
    }

    fn found(words: &ContextWords, text: &str) -> Vec<(PiiKind, String)> {
        let mut all = Vec::new();
        words.scan(text, |f| all.push((f.kind, text[f.span].to_owned())));
        all
    }

    #[test]
    fn a_word_before_a_bare_number_labels_it() {
        let words = built_in();
        for (text, kind, value) in [
            ("SSN: 536221234", PiiKind::Ssn, "536221234"),
            ("ssn#536221234.", PiiKind::Ssn, "536221234"),
            (
                "Social Security number is 536221234",
                PiiKind::Ssn,
                "536221234",
            ),
            ("her SS# = 536221234", PiiKind::Ssn, "536221234"),
            ("mobile 2125550143", PiiKind::Phone, "2125550143"),
            ("Phone (cell): 12125550143", PiiKind::Phone, "12125550143"),
            ("tel. 02079460958", PiiKind::Phone, "02079460958"),
        ] {
            assert_eq!(found(&words, text), [(kind, value.to_owned())], "{text}");
        }
    }

    #[test]
    fn a_bare_number_without_its_word_or_shape_is_left_alone() {
        let words = built_in();
        for text in [
            // No word, or the word of the other kind.
            "order 536221234",
            "phone 536221234",
            "SSN 2125550143",
            // The word is part of a longer one, or too far away.
            "classnote 536221234",
            "SSN on file, as noted in the summary above: 536221234",
            // Another number sits between the word and this one.
            "SSN 1 and 536221234",
            // Not a value the SSA could issue, not a North American number, glued to a word.
            "SSN 000221234",
            "SSN 123456789",
            "phone 1125550143",
            "phone 2120550143",
            "SSN 536221234x",
            "SSN 5362212345",
            "ssn 1.536221234",
        ] {
            assert_eq!(found(&words, text), [], "{text}");
        }
    }

    #[test]
    fn own_words_replace_the_built_in_ones() {
        let mut words = ContextWords::new();
        let own = PiiContext::Words(vec!["Numéro".into(), "contact number".into()]);
        own.check(PiiKind::Phone).unwrap();
        words.add(PiiKind::Phone, own.words(PiiKind::Phone));
        assert_eq!(found(&words, "phone 2125550143"), []);
        assert_eq!(found(&words, "numéro: 2125550143").len(), 1);
        assert_eq!(found(&words, "CONTACT NUMBER 2125550143").len(), 1);
    }

    #[test]
    fn bad_settings_are_refused_with_their_place() {
        let error = PiiContext::BuiltIn(true).check(PiiKind::Email).unwrap_err();
        assert_eq!(error.path, "context");
        assert!(PiiContext::BuiltIn(false).check(PiiKind::Email).is_ok());
        assert!(PiiContext::BuiltIn(true).words(PiiKind::Email).is_empty());
        let empty = PiiContext::Words(Vec::new())
            .check(PiiKind::Ssn)
            .unwrap_err();
        assert_eq!(empty.path, "context");
        for (word, problem) in [
            (" ", "is empty"),
            ("form 1040", "holds a digit"),
            (&"x".repeat(33)[..], "longer"),
        ] {
            let error = PiiContext::Words(vec!["ssn".into(), word.into()])
                .check(PiiKind::Ssn)
                .unwrap_err();
            assert_eq!(error.path, "context[1]");
            assert!(error.message.contains(problem), "{}", error.message);
        }
    }

    #[test]
    fn the_setting_reads_as_a_flag_or_a_list() {
        let flag: PiiContext = serde_json::from_str("true").unwrap();
        assert_eq!(flag, PiiContext::BuiltIn(true));
        let list: PiiContext = serde_json::from_str(r#"["ssn"]"#).unwrap();
        assert_eq!(list, PiiContext::Words(vec!["ssn".into()]));
        assert!(serde_json::from_str::<PiiContext>("3").is_err());
    }
}
