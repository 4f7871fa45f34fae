//! A labelled corpus of personal data and hard negatives, generated the same on every run.
//!
//! Every sentence holds one piece of personal data (labelled with its kind and span), one hard
//! negative (a value that looks like personal data but is not: a date, a version, an order id, an
//! ISBN, a tracking number, a card number that fails its checksum, …), or both. The benchmarks build
//! their texts and messages from these sentences, and `benches/presidio/compare` scores Cerberus and
//! Presidio on them.

use std::ops::Range;

use cerberus_core::guardrails::pii::PiiKind;
use serde_json::{Value, json};

use crate::Lcg;

/// A piece of personal data in a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// What it is.
    pub kind: PiiKind,
    /// Where it is, in bytes.
    pub span: Range<usize>,
}

/// One sentence of the corpus.
#[derive(Clone, Debug)]
pub struct Sentence {
    /// The text.
    pub text: String,
    /// The personal data in it (at most one piece).
    pub labels: Vec<Label>,
    /// The kind of hard negative it holds (`version`, `tracking`, …), if any.
    pub negative: Option<&'static str>,
}

impl Sentence {
    /// The sentence as JSON: `{"text", "labels": [{"kind", "start", "end"}], "negative"}`.
    pub fn to_json(&self) -> Value {
        let labels: Vec<Value> = self
            .labels
            .iter()
            .map(|l| json!({"kind": l.kind.type_name(), "start": l.span.start, "end": l.span.end}))
            .collect();
        json!({"text": self.text, "labels": labels, "negative": self.negative})
    }
}

/// What a sentence holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// Personal data or a hard negative, about half each: the corpus the accuracy is measured on.
    Either,
    /// A hard negative only: numeric-dense text without personal data.
    Negative,
    /// Personal data and a hard negative.
    Both,
}

/// Sentences holding what `holds` says, without end.
pub fn stream(holds: Holds) -> impl Iterator<Item = Sentence> {
    let mut rng = Lcg(0xC0FFEE);
    (0usize..).map(move |i| {
        let (pii, negative) = match holds {
            Holds::Either => (i % 2 == 0, i % 2 == 1),
            Holds::Negative => (false, true),
            Holds::Both => (true, true),
        };
        sentence(&mut rng, pii, negative)
    })
}

/// The first `count` sentences of [`stream`].
pub fn sentences(count: usize, holds: Holds) -> Vec<Sentence> {
    stream(holds).take(count).collect()
}

/// Prose of at least `len` bytes made of `holds` sentences, one after the other.
pub fn text(len: usize, holds: Holds) -> String {
    let mut text = String::with_capacity(len + 256);
    for sentence in stream(holds) {
        if text.len() >= len {
            break;
        }
        text.push_str(&sentence.text);
        text.push(' ');
    }
    text
}

/// A `tools/call` result of `count` text content items, each one sentence of [`Holds::Either`]: what
/// search results and table-like answers look like.
pub fn short_strings_result(count: usize) -> Vec<u8> {
    let content: Vec<Value> = sentences(count, Holds::Either)
        .into_iter()
        .map(|s| json!({"type": "text", "text": s.text}))
        .collect();
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"content": content}}))
        .unwrap_or_default()
}

/// A `tools/call` result whose `structuredContent` holds `count` customer records (about 100 bytes
/// each, with personal data in every one): an id, an email address, a phone number, a timestamp
/// and an amount.
pub fn records_result(count: usize) -> Vec<u8> {
    let mut rng = Lcg(0xFEED);
    let records: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "id": 100_000 + i,
                "email": email(&mut rng),
                "phone": phone(&mut rng),
                "created": format!("2024-{:02}-{:02}T{:02}:{:02}:00Z", 1 + rng.below(12), 1 + rng.below(28), rng.below(24), rng.below(60)),
                "amount": f64::from(u32::try_from(rng.below(100_000)).unwrap_or(0)) / 100.0,
            })
        })
        .collect();
    let text = format!("{count} records");
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "content": [{"type": "text", "text": text}],
            "structuredContent": {"records": records},
        },
    }))
    .unwrap_or_default()
}

const FIRST_NAMES: [&str; 8] = [
    "jane", "john", "maria", "wei", "amir", "olga", "kofi", "lucia",
];
const LAST_NAMES: [&str; 8] = [
    "doe", "smith", "garcia", "chen", "haddad", "ivanova", "mensah", "rossi",
];
const DOMAINS: [&str; 6] = [
    "example.com",
    "mail.example.co.uk",
    "corp.example.org",
    "example.io",
    "uni.example.edu",
    "example.de",
];

/// Sentences around a value: `{}` is where it goes.
const FRAMES: [&str; 12] = [
    "Please forward the quarterly report to {} before Friday.",
    "The customer called about {} and asked for an update.",
    "According to the log, {} was recorded during the review.",
    "Status changed to pending after {} appeared in the ticket.",
    "We confirmed {} with the account team this morning.",
    "Note: {} is listed in the onboarding notes.",
    "The invoice mentions {} next to the total amount.",
    "Escalated by support; reference {} in any reply.",
    "Shipping label printed, {} attached to the parcel record.",
    "During the audit the team found {} in the export.",
    "Reminder to check {} once the migration finishes.",
    "The summary lists {}, with no further action needed.",
];

fn sentence(rng: &mut Lcg, pii: bool, negative: bool) -> Sentence {
    let frame = rng.pick(&FRAMES);
    let (before, after) = frame.split_once("{}").unwrap_or((frame, ""));
    let mut text = String::from(before);
    let mut labels = Vec::new();
    let mut negative_kind = None;
    if negative {
        let (kind, value) = hard_negative(rng);
        negative_kind = Some(kind);
        text.push_str(&value);
        if pii {
            text.push_str(" and ");
        }
    }
    if pii {
        let (kind, value) = personal_data(rng);
        let start = text.len();
        text.push_str(&value);
        labels.push(Label {
            kind,
            span: start..text.len(),
        });
    }
    text.push_str(after);
    Sentence {
        text,
        labels,
        negative: negative_kind,
    }
}

fn personal_data(rng: &mut Lcg) -> (PiiKind, String) {
    match rng.below(5) {
        0 => (PiiKind::Email, email(rng)),
        1 => (PiiKind::Phone, phone(rng)),
        2 => (PiiKind::Ssn, ssn(rng)),
        3 => (PiiKind::CreditCard, card(rng, true)),
        _ => (PiiKind::IpAddress, ip(rng)),
    }
}

fn digits(rng: &mut Lcg, count: usize) -> String {
    (0..count)
        .map(|_| char::from(b'0' + u8::try_from(rng.below(10)).unwrap_or(0)))
        .collect()
}

fn email(rng: &mut Lcg) -> String {
    let (first, last) = (rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
    let domain = rng.pick(&DOMAINS);
    match rng.below(3) {
        0 => format!("{first}.{last}@{domain}"),
        1 => format!("{first}{}@{domain}", rng.below(100)),
        _ => format!("{}+alerts@{domain}", &first[..1]),
    }
}

fn phone(rng: &mut Lcg) -> String {
    let area = 200 + rng.below(800);
    let exchange = 200 + rng.below(800);
    let line = digits(rng, 4);
    match rng.below(8) {
        0 => format!("({area}) {exchange}-{line}"),
        1 => format!("{area}-{exchange}-{line}"),
        2 => format!("{area}.{exchange}.{line}"),
        3 => format!("+1 {area} {exchange} {line}"),
        4 => format!("+44 20 7946 {}", digits(rng, 4)),
        5 => format!("07700 900{}", digits(rng, 3)),
        6 => format!(
            "+33 6 {} {} {} {}",
            digits(rng, 2),
            digits(rng, 2),
            digits(rng, 2),
            digits(rng, 2)
        ),
        _ => format!("+49 30 {}", digits(rng, 7)),
    }
}

fn ssn(rng: &mut Lcg) -> String {
    let area = loop {
        let area = 1 + rng.below(899);
        if area != 666 {
            break area;
        }
    };
    let group = 1 + rng.below(99);
    let serial = 1 + rng.below(9_999);
    let separator = if rng.below(4) == 0 { ' ' } else { '-' };
    format!("{area:03}{separator}{group:02}{separator}{serial:04}")
}

/// A card number of a real network, its Luhn digit right (`valid`) or wrong.
fn card(rng: &mut Lcg, valid: bool) -> String {
    let (prefix, len) = match rng.below(5) {
        0 => ("51", 16),
        1 => ("55", 16),
        2 => ("37", 15),
        3 => ("6011", 16),
        _ => ("4", 16),
    };
    let mut number = format!("{prefix}{}", digits(rng, len - prefix.len() - 1));
    let check = luhn_digit(&number);
    number.push(char::from(
        b'0' + if valid { check } else { (check + 1) % 10 },
    ));
    let separator = rng.pick(&[" ", "-", ""]);
    let groups: &[usize] = if len == 15 { &[4, 6, 5] } else { &[4, 4, 4, 4] };
    let mut out = String::new();
    let mut at = 0;
    for (i, group) in groups.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(number.get(at..at + group).unwrap_or_default());
        at += group;
    }
    out
}

/// The Luhn check digit to append to `digits`.
fn luhn_digit(digits: &str) -> u8 {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    u8::try_from((10 - sum % 10) % 10).unwrap_or(0)
}

fn ip(rng: &mut Lcg) -> String {
    match rng.below(4) {
        0 => format!(
            "2001:db8:{:x}::{:x}:{:x}",
            rng.below(0xffff),
            rng.below(0xffff),
            1 + rng.below(0xfffe)
        ),
        1 => format!(
            "10.{}.{}.{}/24",
            rng.below(256),
            rng.below(256),
            rng.below(256)
        ),
        _ => format!(
            "{}.{}.{}.{}",
            1 + rng.below(223),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
    }
}

/// A value that looks like personal data and is not, and what it is.
fn hard_negative(rng: &mut Lcg) -> (&'static str, String) {
    let year = 2000 + rng.below(27);
    let (month, day) = (1 + rng.below(12), 1 + rng.below(28));
    let (hour, minute, second) = (rng.below(24), rng.below(60), rng.below(60));
    match rng.below(14) {
        0 => ("date", format!("{year}-{month:02}-{day:02}")),
        1 => ("date", format!("{month:02}/{day:02}/{year}")),
        2 => (
            "timestamp",
            format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        ),
        3 => (
            "timestamp",
            format!("{hour:02}:{minute:02}:{second:02}.{}", digits(rng, 3)),
        ),
        4 => {
            let word = rng.pick(&["version", "Version", "release", "build", "ver"]);
            (
                "version",
                format!(
                    "{word} {}.{}.{}.{}",
                    rng.below(20),
                    rng.below(30),
                    rng.below(10),
                    rng.below(200)
                ),
            )
        }
        5 => (
            "version",
            format!("v{}.{}.{}", rng.below(20), rng.below(30), rng.below(10)),
        ),
        6 => (
            "order id",
            format!("order {}-{}", digits(rng, 5), digits(rng, 5)),
        ),
        7 => ("order id", format!("ORD-{year}-{}", digits(rng, 6))),
        8 => {
            let value = match rng.below(3) {
                0 => format!("1Z{}AA{}", digits(rng, 3), digits(rng, 11)),
                1 => format!(
                    "9400 1{} {} {} {} {}",
                    digits(rng, 3),
                    digits(rng, 4),
                    digits(rng, 4),
                    digits(rng, 4),
                    digits(rng, 2)
                ),
                _ => format!("tracking {}", digits(rng, 20)),
            };
            ("tracking", value)
        }
        9 => (
            "isbn",
            format!(
                "ISBN 978-{}-{}-{}-{}",
                rng.below(10),
                digits(rng, 2),
                digits(rng, 6),
                rng.below(10)
            ),
        ),
        10 => ("invalid card", card(rng, false)),
        11 => (
            "amount",
            format!(
                "${},{}.{:02}",
                1 + rng.below(999),
                digits(rng, 3),
                rng.below(100)
            ),
        ),
        12 => (
            "mac address",
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                rng.below(256),
                rng.below(256),
                rng.below(256),
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
        ),
        _ => (
            "count",
            format!(
                "{},{},{} rows",
                1 + rng.below(99),
                digits(rng, 3),
                digits(rng, 3)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};

    use super::*;

    #[test]
    fn labels_point_at_values_and_shapes_hold_what_they_say() {
        for sentence in sentences(400, Holds::Either) {
            for label in &sentence.labels {
                assert!(
                    sentence
                        .text
                        .get(label.span.clone())
                        .is_some_and(|v| !v.is_empty())
                );
            }
            assert!(sentence.labels.is_empty() != sentence.negative.is_none());
        }
        assert!(
            sentences(200, Holds::Negative)
                .iter()
                .all(|s| s.labels.is_empty())
        );
        assert!(
            sentences(200, Holds::Both)
                .iter()
                .all(|s| s.labels.len() == 1 && s.negative.is_some())
        );
        assert_eq!(text(10_000, Holds::Both), text(10_000, Holds::Both));
    }

    /// The accuracy `docs/benchmarks.md` quotes for the default corpus of `benches/presidio/compare`:
    /// every labelled value found, and nothing else.
    #[test]
    fn the_scanner_finds_every_labelled_value_and_nothing_else() {
        let scanner = PiiScanner::new(PiiKinds::all());
        for sentence in sentences(2_000, Holds::Either) {
            let found: Vec<Label> = scanner
                .find_all(&sentence.text)
                .into_iter()
                .map(|f| Label {
                    kind: f.kind,
                    span: f.span,
                })
                .collect();
            assert_eq!(found, sentence.labels, "{}", sentence.text);
        }
    }
}
