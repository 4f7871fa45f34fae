//! One pass over a text for every enabled kind of personal data.
//!
//! All candidate patterns of the enabled kinds are compiled into one `regex-automata` meta regex with ASCII
//! classes only, so a text is read once whatever the number of kinds. Each candidate then goes through the
//! checks in [`validate`](super::validate); when a candidate fails them, the other patterns are tried
//! anchored at the same position before the search moves on.
//!
//! A long text is not read whole by the regex: every match holds a byte it needs (an `@` for an email,
//! a colon for IPv6, four digits close together for the rest), so a fast multi-byte search for those
//! bytes (`regex-automata`'s prefilter) marks the windows where a match can be, and the regex reads only
//! them. Prose with the odd number or version, the usual MCP text, is mostly skipped.

use std::fmt;
use std::ops::Range;

use regex_automata::meta::Regex;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{Anchored, Input, MatchKind, PatternID, Span};

use super::validate::{self, PhoneShape};
use super::{PiiKind, PiiKinds};

/// One piece of personal data found in a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What it is.
    pub kind: PiiKind,
    /// Where it is, in bytes.
    pub span: Range<usize>,
}

/// The candidate patterns, in priority order: at one position the first that validates wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidate {
    Email,
    Card,
    CardAmex,
    Ssn,
    Ipv4,
    Ipv6,
    Phone(PhoneShape),
}

impl Candidate {
    const ALL: [Self; 9] = [
        Self::Email,
        Self::Card,
        Self::CardAmex,
        Self::Ssn,
        Self::Ipv4,
        Self::Ipv6,
        Self::Phone(PhoneShape::International),
        Self::Phone(PhoneShape::NorthAmerican),
        Self::Phone(PhoneShape::National),
    ];

    fn kind(self) -> PiiKind {
        match self {
            Self::Email => PiiKind::Email,
            Self::Card | Self::CardAmex => PiiKind::CreditCard,
            Self::Ssn => PiiKind::Ssn,
            Self::Ipv4 | Self::Ipv6 => PiiKind::IpAddress,
            Self::Phone(_) => PiiKind::Phone,
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            // Lengths are bounded (64-byte local part, 253-byte domain) so a failed candidate costs little.
            Self::Email => r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9][A-Za-z0-9.\-]{0,252}",
            Self::Card => r"[0-9]{4}(?:[ \-]?[0-9]{4}){2,3}(?:[ \-]?[0-9]{1,4})?",
            Self::CardAmex => r"[0-9]{4}[ \-]?[0-9]{6}[ \-]?[0-9]{4,5}",
            Self::Ssn => r"[0-9]{3}[ .\-][0-9]{2}[ .\-][0-9]{4}",
            Self::Ipv4 => r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?:/[0-9]{1,2})?",
            Self::Ipv6 => r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]{0,37}",
            Self::Phone(PhoneShape::International) => {
                r"(?:\+|00)[1-9][0-9]{0,2}(?:[ .\-]?(?:\([0-9]{1,4}\)|[0-9]{1,4})){1,6}[ .\-]?[0-9]{2,4}"
            }
            Self::Phone(PhoneShape::NorthAmerican) => {
                r"(?:1[ .\-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .\-])[0-9]{3}[ .\-][0-9]{4}"
            }
            // Groups are separated, so that a digit run is never split (which would leave a digit behind).
            Self::Phone(PhoneShape::National) => {
                r"\(0[1-9][0-9]{0,4}\) ?[0-9]{2,8}(?:[ .\-][0-9]{2,8}){0,3}|0[1-9][0-9]{0,4}(?:[ .\-][0-9]{2,8}){1,4}"
            }
        }
    }

    /// Whether every match of this candidate's pattern holds `byte`'s class: `@` for an email, a
    /// colon for IPv6, a digit for the others. A text without any such byte cannot match.
    fn needs(self, byte: u8) -> bool {
        match self {
            Self::Email => byte == b'@',
            Self::Ipv6 => byte == b':',
            Self::Card | Self::CardAmex | Self::Ssn | Self::Ipv4 | Self::Phone(_) => {
                byte.is_ascii_digit()
            }
        }
    }

    fn validate(self, bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
        match self {
            Self::Email => validate::email(bytes, span),
            Self::Card | Self::CardAmex => validate::credit_card(bytes, span),
            Self::Ssn => validate::ssn(bytes, span),
            Self::Ipv4 => validate::ipv4(bytes, span),
            Self::Ipv6 => validate::ipv6(bytes, span),
            Self::Phone(shape) => validate::phone(bytes, span, shape),
        }
    }
}

/// The longest match of any pattern but the email's, in bytes (a test checks every pattern).
const SHORT_MATCH: usize = 64;

/// How far before the byte that triggers its window a match can start: an email's local part is at
/// most 64 bytes, and every other match is at most [`SHORT_MATCH`] long.
const BEFORE_TRIGGER: usize = 64;

/// How far after its `@` an email can end: the `@` and a domain of at most 253 bytes.
const EMAIL_AFTER_AT: usize = 254;

/// The fewest digits in a match of a pattern that needs digits (a test checks every pattern).
const MIN_DIGITS: usize = 4;

/// A text at most this long is scanned whole: windows would save little.
const SHORT_TEXT: usize = 2 * BEFORE_TRIGGER;

/// Where to search again after no candidate validated at `start`.
///
/// Every validator rejects a candidate that follows a word character (it would be glued to a word or to
/// a longer number), so when `start` is inside a word the search resumes after that word. This keeps
/// the scan linear on long digit runs and long local parts. Every pattern is ASCII, so the byte after a
/// match start is a character boundary.
fn resume_after_failure(bytes: &[u8], start: usize) -> usize {
    let is_word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    if !bytes.get(start).is_some_and(is_word) {
        return start + 1;
    }
    let rest = bytes.get(start..).unwrap_or_default();
    start
        + rest
            .iter()
            .position(|b| !is_word(b))
            .map_or(rest.len(), |i| i + 1)
}

/// Finds personal data of the kinds it was built for.
///
/// ```
/// use cerberus_core::guardrails::pii::{PiiKind, PiiKinds, PiiScanner};
/// let scanner = PiiScanner::new(PiiKinds::all());
/// let kinds: Vec<_> = scanner.find_all("mail a@example.com or call +44 20 7946 0958")
///     .into_iter().map(|f| f.kind).collect();
/// assert_eq!(kinds, [PiiKind::Email, PiiKind::Phone]);
/// ```
#[derive(Clone)]
pub struct PiiScanner {
    kinds: PiiKinds,
    /// `None` when no kind is enabled.
    regex: Option<Regex>,
    /// The candidate behind each pattern id.
    candidates: Vec<Candidate>,
    /// The bytes of which every match holds at least one (see [`Candidate::needs`]): a text without
    /// them is passed over without running the regex, as most keys and short values are.
    needed: [bool; 256],
    /// Finds the needed bytes in a long text, to mark its [`Windows`]; `None` when no kind is enabled.
    triggers: Option<Prefilter>,
}

impl fmt::Debug for PiiScanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiiScanner")
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl PiiScanner {
    /// A scanner for `kinds`.
    pub fn new(kinds: PiiKinds) -> Self {
        let candidates: Vec<Candidate> = Candidate::ALL
            .into_iter()
            .filter(|c| kinds.contains(c.kind()))
            .collect();
        let regex = (!candidates.is_empty()).then(|| {
            let patterns: Vec<&str> = candidates.iter().map(|c| c.pattern()).collect();
            #[expect(
                clippy::expect_used,
                reason = "the patterns are constants, and every combination is compiled by the tests"
            )]
            Regex::new_many(&patterns)
                .expect("the PII patterns compile")
        });
        let needed = std::array::from_fn(|byte| {
            u8::try_from(byte).is_ok_and(|byte| candidates.iter().any(|c| c.needs(byte)))
        });
        let needles: Vec<[u8; 1]> = (0..=u8::MAX)
            .filter(|byte| needed.get(usize::from(*byte)) == Some(&true))
            .map(|byte| [byte])
            .collect();
        let triggers = Prefilter::new(MatchKind::LeftmostFirst, &needles);
        Self {
            kinds,
            regex,
            candidates,
            needed,
            triggers,
        }
    }

    /// The kinds this scanner finds.
    pub fn kinds(&self) -> PiiKinds {
        self.kinds
    }

    /// Calls `found` for every piece of personal data in `text`, left to right, without overlaps.
    pub fn scan(&self, text: &str, mut found: impl FnMut(Finding)) {
        let Some(regex) = &self.regex else { return };
        let bytes = text.as_bytes();
        let Some(triggers) = self.triggers.as_ref().filter(|_| bytes.len() > SHORT_TEXT) else {
            if self.may_match(text) {
                self.scan_range(regex, bytes, 0..bytes.len(), &mut found);
            }
            return;
        };
        let mut at = 0;
        for window in Windows::new(triggers, bytes) {
            at = self.scan_range(regex, bytes, at.max(window.start)..window.end, &mut found);
        }
    }

    /// Whether `text` holds a byte that some match needs; without one, it holds no match.
    fn may_match(&self, text: &str) -> bool {
        text.bytes()
            .any(|b| self.needed.get(usize::from(b)) == Some(&true))
    }

    /// [`scan`](Self::scan) reading the whole text, without the check for needed bytes or windows.
    #[cfg(test)]
    fn scan_unfiltered(&self, text: &str, mut found: impl FnMut(Finding)) {
        if let Some(regex) = &self.regex {
            self.scan_range(regex, text.as_bytes(), 0..text.len(), &mut found);
        }
    }

    /// Reports the findings that start in `range` and end by its end, and returns where the search
    /// would go on (which may be past the range). Validators look at the bytes around a match, outside
    /// the range too.
    fn scan_range(
        &self,
        regex: &Regex,
        bytes: &[u8],
        range: Range<usize>,
        found: &mut impl FnMut(Finding),
    ) -> usize {
        let mut at = range.start;
        while at < range.end {
            let Some(m) = regex.search(&Input::new(bytes).range(at..range.end)) else {
                return range.end;
            };
            let start = m.start();
            let first = self.candidates.get(m.pattern().as_usize());
            let validated = first
                .and_then(|c| Some((*c, c.validate(bytes, m.range())?)))
                .or_else(|| self.retry_at(regex, bytes, start, m.pattern()));
            match validated {
                Some((candidate, span)) => {
                    at = span.end.max(start + 1);
                    found(Finding {
                        kind: candidate.kind(),
                        span,
                    });
                }
                None => at = resume_after_failure(bytes, start),
            }
        }
        at
    }

    /// Tries every other pattern anchored at `start`, in priority order.
    fn retry_at(
        &self,
        regex: &Regex,
        bytes: &[u8],
        start: usize,
        tried: PatternID,
    ) -> Option<(Candidate, Range<usize>)> {
        self.candidates
            .iter()
            .enumerate()
            .find_map(|(index, candidate)| {
                let pattern = PatternID::new(index).ok().filter(|p| *p != tried)?;
                let input = Input::new(bytes)
                    .range(start..)
                    .anchored(Anchored::Pattern(pattern));
                let m = regex.search(&input)?;
                Some((*candidate, candidate.validate(bytes, m.range())?))
            })
    }

    /// Every finding in `text`.
    pub fn find_all(&self, text: &str) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.scan(text, |f| findings.push(f));
        findings
    }

    /// Whether `text` holds any personal data of this scanner's kinds.
    pub fn contains_any(&self, text: &str) -> bool {
        let mut any = false;
        self.scan(text, |_| any = true);
        any
    }
}

/// The parts of a long text where a match can be, in order, apart and merged where they meet.
///
/// Every match holds a byte that triggers a window around it: an email its `@`, an IPv6 address a
/// colon, and every other match at least [`MIN_DIGITS`] digits within [`SHORT_MATCH`] bytes, the last
/// of which triggers. A window reaches [`BEFORE_TRIGGER`] bytes back and as far forward as a match
/// holding its trigger can end, so every match lies inside a window; windows that meet are merged, so
/// that a search restricted to one finds what a search of the whole text finds there.
///
/// Where triggers come thick (digit-heavy data), looking for each costs more than reading the text, so
/// past a budget of one trigger every 32 bytes the last window runs to the end of the text.
struct Windows<'a> {
    triggers: &'a Prefilter,
    bytes: &'a [u8],
    /// Where to look for the next trigger.
    at: usize,
    /// The last three digits seen, oldest first.
    digits: [Option<usize>; MIN_DIGITS - 1],
    /// Needed bytes found so far.
    found: usize,
    /// A window read ahead that did not meet the one before it.
    held: Option<Range<usize>>,
    /// Whether a window has run to the end of the text.
    done: bool,
}

impl<'a> Windows<'a> {
    fn new(triggers: &'a Prefilter, bytes: &'a [u8]) -> Self {
        Self {
            triggers,
            bytes,
            at: 0,
            digits: [None; MIN_DIGITS - 1],
            found: 0,
            held: None,
            done: false,
        }
    }

    /// The window of the next trigger, not merged.
    fn next_alone(&mut self) -> Option<Range<usize>> {
        let end = self.bytes.len();
        loop {
            if self.done {
                return None;
            }
            if self.found > 8 + self.at / 32 {
                self.done = true;
                return Some(self.at.saturating_sub(BEFORE_TRIGGER)..end);
            }
            let at = self
                .triggers
                .find(self.bytes, Span::from(self.at..end))?
                .start;
            self.at = at + 1;
            self.found += 1;
            let reach = match self.bytes.get(at)? {
                b'@' => EMAIL_AFTER_AT,
                b':' => SHORT_MATCH,
                _ => {
                    let oldest = self.digits.first().copied().flatten();
                    self.digits.rotate_left(1);
                    if let Some(last) = self.digits.last_mut() {
                        *last = Some(at);
                    }
                    if oldest.is_none_or(|oldest| at - oldest >= SHORT_MATCH) {
                        continue;
                    }
                    SHORT_MATCH
                }
            };
            return Some(at.saturating_sub(BEFORE_TRIGGER)..(at + reach).min(end));
        }
    }
}

impl Iterator for Windows<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        let mut window = self.held.take().or_else(|| self.next_alone())?;
        while let Some(next) = self.next_alone() {
            // Windows start in order: each starts the same distance before its trigger.
            if next.start <= window.end {
                window.end = window.end.max(next.end);
            } else {
                self.held = Some(next);
                break;
            }
        }
        Some(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PiiKind::*;

    fn scan(text: &str) -> Vec<(PiiKind, &str)> {
        PiiScanner::new(PiiKinds::all())
            .find_all(text)
            .into_iter()
            .map(|f| (f.kind, &text[f.span]))
            .collect()
    }

    #[test]
    fn every_subset_of_kinds_compiles_and_finds_only_its_kinds() {
        let text = "a@example.com 536-22-1234 4111 1111 1111 1111 10.1.2.3 (555) 234-5678";
        for bits in 0u8..32 {
            let kinds: PiiKinds = PiiKind::ALL
                .into_iter()
                .filter(|k| bits & (1 << (*k as u8)) != 0)
                .collect();
            let found: Vec<_> = PiiScanner::new(kinds)
                .find_all(text)
                .into_iter()
                .map(|f| f.kind)
                .collect();
            let expected: Vec<_> = [Email, Ssn, CreditCard, IpAddress, Phone]
                .into_iter()
                .filter(|k| kinds.contains(*k))
                .collect();
            assert_eq!(found, expected, "kinds {kinds:?}");
        }
    }

    #[test]
    fn finds_each_kind_in_prose() {
        assert_eq!(
            scan("Contact john.doe@example.com today."),
            [(Email, "john.doe@example.com")]
        );
        assert_eq!(scan("SSN: 536-22-1234."), [(Ssn, "536-22-1234")]);
        assert_eq!(
            scan("card 5555 5555 5555 4444 expires"),
            [(CreditCard, "5555 5555 5555 4444")]
        );
        assert_eq!(
            scan("amex 3782-822463-10005"),
            [(CreditCard, "3782-822463-10005")]
        );
        assert_eq!(
            scan("from 203.0.113.7 and 2001:db8::8a2e:370:7334."),
            [
                (IpAddress, "203.0.113.7"),
                (IpAddress, "2001:db8::8a2e:370:7334")
            ]
        );
    }

    #[test]
    fn finds_phone_numbers_in_common_formats() {
        for phone in [
            "(555) 234-5678",
            "555-234-5678",
            "555.234.5678",
            "555 234 5678",
            "1-555-234-5678",
            "+1 555 234 5678",
            "+1-555-234-5678",
            "+44 20 7946 0958",
            "+44 (0)20 7946 0958",
            "+33 1 23 45 67 89",
            "+49 30 12345678",
            "+91 98765 43210",
            "+14155552671",
            "020 7946 0958",
            "07700 900123",
            "06 12 34 56 78",
            "0044 20 7946 0958",
        ] {
            let text = format!("call {phone} now");
            assert_eq!(scan(&text), [(Phone, phone)], "{phone}");
        }
    }

    #[test]
    fn a_phone_number_ends_before_a_group_glued_to_a_word() {
        // The greedy pattern takes ` 00` as a last group; the number still ends at the space before it.
        assert_eq!(scan("+44 20 7946 0958 00A"), [(Phone, "+44 20 7946 0958")]);
        assert_eq!(scan("(555) 234-5678-x9"), [(Phone, "(555) 234-5678")]);
    }

    #[test]
    fn phone_numbers_do_not_fire_on_dates_versions_ssns_or_ips() {
        for text in [
            "2024-01-15",
            "15.01.2024",
            "01/15/2024",
            "2024-01-15T10:30:00Z",
            "01-02-2024",
            "version 1.2.3",
            "v10.0.19041.1",
            "build 2.14.0-rc.1",
            "5551234567",
            "12:30:45",
            "order 123456",
            "pi is 3.14159265",
            "1,234,567",
            "ISBN 978-3-16-148410-0",
            "zip 12345-6789",
        ] {
            assert_eq!(scan(text), [], "{text}");
        }
        assert_eq!(scan("536-22-1234"), [(Ssn, "536-22-1234")]);
        assert_eq!(scan("192.168.100.200"), [(IpAddress, "192.168.100.200")]);
    }

    #[test]
    fn near_misses_do_not_match() {
        for text in [
            "4111111111111112",
            "4111 1111 1111 11112",
            "000-12-3456",
            "123-45-6789",
            "536-22-12345",
            "1536-22-1234",
            "256.1.1.1",
            "1.2.3.4.5",
            "user@host",
            "user@example.invalidtld",
            "x4111111111111111",
            "4111111111111111x",
            "4111111111111111.5",
            "call 555-234-56789",
        ] {
            assert_eq!(scan(text), [], "{text}");
        }
    }

    #[test]
    fn finds_pii_at_string_edges_and_beside_unicode() {
        assert_eq!(scan("536-22-1234"), [(Ssn, "536-22-1234")]);
        assert_eq!(scan("é536-22-1234é"), [(Ssn, "536-22-1234")]);
        assert_eq!(scan("日本a@example.jp語"), [(Email, "a@example.jp")]);
        assert_eq!(
            scan("«4111111111111111»"),
            [(CreditCard, "4111111111111111")]
        );
        assert_eq!(scan("\n10.0.0.1\t"), [(IpAddress, "10.0.0.1")]);
    }

    #[test]
    fn an_email_with_digits_is_one_email() {
        assert_eq!(
            scan("5552345678@example.com"),
            [(Email, "5552345678@example.com")]
        );
        assert_eq!(
            scan("4111111111111111@nowhere.invalidtld"),
            [(CreditCard, "4111111111111111")]
        );
    }

    #[test]
    fn a_failed_candidate_does_not_hide_a_later_one() {
        assert_eq!(
            scan("4111111111111112 4111111111111111"),
            [(CreditCard, "4111111111111111")]
        );
        assert_eq!(scan("10:30:00 then 10.0.0.1"), [(IpAddress, "10.0.0.1")]);
    }

    #[test]
    fn long_hostile_inputs_stay_linear() {
        let text = format!("{}@{}", "a".repeat(20_000), "b.".repeat(20_000));
        assert_eq!(scan(&text), []);
        let digits = "1".repeat(20_000);
        assert_eq!(scan(&digits), []);
    }

    /// Pieces that make matches and near misses of every kind when glued together.
    fn piece() -> impl proptest::strategy::Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "a",
            "b.",
            "@",
            "example.com",
            " ",
            "-",
            ".",
            ":",
            "::",
            "+44",
            "(",
            ")",
            "0",
            "1",
            "5",
            "536",
            "22",
            "1234",
            "4111",
            "10.0.0.1",
            "fe80",
            "é",
            "\n",
            "_",
            "555",
            "2.4",
            "version 2024 ",
            "The quarterly report shows steady growth in every region; the team will review it. ",
        ])
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Passing over texts without a needed byte, and reading long texts only in their windows, never
        /// changes what a scanner of any kinds finds.
        #[test]
        fn needed_bytes_and_windows_change_no_finding(
            pieces in proptest::collection::vec(piece(), 0..160),
            bits in 0u8..32,
        ) {
            let text = pieces.concat();
            let kinds: PiiKinds = PiiKind::ALL
                .into_iter()
                .filter(|k| bits & (1 << (*k as u8)) != 0)
                .collect();
            let scanner = PiiScanner::new(kinds);
            let mut unfiltered = Vec::new();
            scanner.scan_unfiltered(&text, |f| unfiltered.push(f));
            proptest::prop_assert_eq!(scanner.find_all(&text), unfiltered);
        }

        /// Values of every pattern's shape, planted in long prose, are found in their windows just as
        /// in a reading of the whole text.
        #[test]
        fn planted_values_are_found_in_their_windows(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![3 => prose(), 1 => planted()], 1..40),
        ) {
            let text = pieces.concat();
            let scanner = PiiScanner::new(PiiKinds::all());
            let mut unfiltered = Vec::new();
            scanner.scan_unfiltered(&text, |f| unfiltered.push(f));
            proptest::prop_assert_eq!(scanner.find_all(&text), unfiltered);
        }
    }

    fn prose() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy as _;
        proptest::sample::select(vec![
            "The team will review the figures on Monday and send the summary to the board. ",
            "Growth was steady in every region, ",
            "version 2.4 ",
            "at 10:30 ",
            " ",
            "\n",
        ])
        .prop_map(str::to_owned)
    }

    /// Strings of a candidate pattern's shape (not always valid: the validators still judge them).
    fn planted() -> impl proptest::strategy::Strategy<Value = String> {
        let shapes: Vec<_> = Candidate::ALL
            .into_iter()
            .map(|c| proptest::string::string_regex(c.pattern()).unwrap())
            .collect();
        proptest::strategy::Union::new(shapes)
    }

    /// The fewest bytes of `set` in any match of `hir`.
    fn fewest(hir: &regex_syntax::hir::Hir, set: &dyn Fn(u8) -> bool) -> usize {
        use regex_syntax::hir::{Class, HirKind};
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => 0,
            HirKind::Literal(literal) => literal.0.iter().filter(|b| set(**b)).count(),
            HirKind::Class(Class::Unicode(class)) => usize::from(class.iter().all(|range| {
                (range.start()..=range.end()).all(|c| u8::try_from(c).is_ok_and(set))
            })),
            HirKind::Class(Class::Bytes(class)) => usize::from(
                class
                    .iter()
                    .all(|range| (range.start()..=range.end()).all(set)),
            ),
            HirKind::Repetition(repetition) => {
                repetition.min as usize * fewest(&repetition.sub, set)
            }
            HirKind::Capture(capture) => fewest(&capture.sub, set),
            HirKind::Concat(all) => all.iter().map(|h| fewest(h, set)).sum(),
            HirKind::Alternation(any) => any.iter().map(|h| fewest(h, set)).min().unwrap_or(0),
        }
    }

    /// The windows' reach rests on these facts about the patterns.
    #[test]
    fn every_match_holds_its_trigger_within_the_windows_reach() {
        let parse = |pattern: &str| regex_automata::util::syntax::parse(pattern).unwrap();
        for candidate in Candidate::ALL {
            let hir = parse(candidate.pattern());
            let longest = hir.properties().maximum_len().unwrap();
            match candidate {
                Candidate::Email => {
                    let (local, domain) = candidate.pattern().split_once('@').unwrap();
                    assert!(parse(local).properties().maximum_len().unwrap() <= BEFORE_TRIGGER);
                    assert!(parse(domain).properties().maximum_len().unwrap() < EMAIL_AFTER_AT);
                    assert_eq!(fewest(&hir, &|b| b == b'@'), 1);
                }
                Candidate::Ipv6 => {
                    assert!(longest <= SHORT_MATCH.min(BEFORE_TRIGGER), "{candidate:?}");
                    assert!(fewest(&hir, &|b| b == b':') >= 1);
                }
                _ => {
                    assert!(longest <= SHORT_MATCH.min(BEFORE_TRIGGER), "{candidate:?}");
                    let digits = fewest(&hir, &|b: u8| b.is_ascii_digit());
                    assert!(digits >= MIN_DIGITS, "{candidate:?}: {digits} digits");
                }
            }
            assert!(hir.properties().is_utf8() && hir.properties().look_set().is_empty());
        }
    }

    #[test]
    fn long_prose_is_read_only_around_its_numbers() {
        let prose = "The report for version 2.4 shows steady growth in every region; the board reviews it on Monday. ";
        let text = format!("{} call 555-234-5678 {}", prose.repeat(5), prose.repeat(5));
        let phone = text.find("555").unwrap()..text.find("5678").unwrap() + 4;
        let scanner = PiiScanner::new(PiiKinds::all());
        let triggers = scanner.triggers.as_ref().unwrap();
        let windows: Vec<_> = Windows::new(triggers, text.as_bytes()).collect();
        assert_eq!(windows.len(), 1, "{windows:?}");
        assert!(windows[0].start <= phone.start && phone.end <= windows[0].end);
        // The versions nearest the number are near enough to join it; the rest of the prose is skipped.
        assert!(
            windows[0].len() < text.len() / 5,
            "{windows:?} of {}",
            text.len()
        );
        assert_eq!(scan(&text), [(Phone, "555-234-5678")]);
        // Digits everywhere: the budget runs out, and the rest is one window.
        let digits = "1 2 3 4 ".repeat(100);
        let windows: Vec<_> = Windows::new(triggers, digits.as_bytes()).collect();
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].end, digits.len());
    }

    #[test]
    fn texts_without_a_needed_byte_are_passed_over() {
        let scanner = PiiScanner::new(PiiKinds::all());
        assert!(!scanner.may_match("The quarterly report, reviewed by the board."));
        let emails = PiiScanner::new([Email].into_iter().collect());
        assert!(emails.may_match("@"));
        assert!(!emails.may_match("7"));
    }
}
