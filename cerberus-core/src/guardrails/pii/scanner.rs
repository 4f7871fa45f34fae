//! One pass over a text for every enabled kind of personal data.
//!
//! The candidates of the enabled kinds are searched in three streams (emails, IPv6 addresses, and the
//! numeric kinds: cards, SSNs, IPv4 addresses, phones), whose first findings are merged by position
//! and priority, so a text is read about once whatever the number of kinds. Each candidate then goes
//! through the checks in [`validate`](super::validate); when a numeric candidate fails them, the
//! patterns after it are tried anchored at the same position before the search moves on.
//!
//! Each stream is searched the way its matches allow:
//! - An email holds an `@` and an IPv6 address two colons close together. `memchr` finds those bytes,
//!   and the match is read around them by hand ([`email_match`], [`ipv6_match`], each checked against
//!   its pattern's regex by a property test): `regex-automata` finds the same match, but on the short
//!   strings of a JSON result its search costs several times the reading (on a result of 10,000
//!   records, a quarter of the PII pass went to those searches). A text without such a byte is not
//!   searched at all.
//! - A numeric candidate starts at a digit, `+` or `(` that does not follow a word. Those positions
//!   are found first, eight bytes at a time, and one leftmost-first regex over the numeric patterns
//!   runs anchored at each: it reads the candidates, and never the prose between them.
//!
//! The cost stays linear with a small constant on hostile input (`a:a:a:…`, `1.1.1.…`, `::::…`), where
//! every position starts a candidate that fails: after a failure, the search moves on to the next
//! position where some candidate can pass its checks, judged by its first byte and the byte before it
//! ([`Candidate::may_start`]), so runs of such positions are passed over without reading them again.
//!
//! A long text is not read whole: every match holds a byte it needs (an `@` for an email, a colon for
//! IPv6, four digits close together for the rest), so a fast multi-byte search for those bytes
//! (`regex-automata`'s prefilter) marks the windows where a match can be, and only they are searched.
//! Prose with the odd number or version, the usual MCP text, is mostly skipped.

use std::fmt;
use std::ops::Range;

use regex_automata::meta::Regex;
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{Anchored, Input, MatchKind, PatternID, Span};

use super::validate::{self, PhoneShape};
use super::{ContextWords, PiiKind, PiiKinds};

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

    /// Where this candidate stands among those that match at one position: lower wins.
    fn priority(self) -> usize {
        Self::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(Self::ALL.len())
    }

    /// Whether a match of this candidate starting at `start` could pass its checks, judged by its
    /// first byte and the byte before it. Never false where [`validate`](Self::validate) would accept:
    /// the first bytes are checked against the patterns, and the rest is the validators' own test.
    fn may_start(self, bytes: &[u8], start: usize) -> bool {
        let Some(&first) = bytes.get(start) else {
            return false;
        };
        match self {
            Self::Email => validate::is_local_part(first) && validate::email_left_ok(bytes, start),
            Self::Card | Self::CardAmex | Self::Ssn => {
                first.is_ascii_digit() && validate::numeric_left_ok(bytes, start)
            }
            Self::Ipv4 => first.is_ascii_digit() && validate::ipv4_left_ok(bytes, start),
            Self::Ipv6 => {
                (first.is_ascii_hexdigit() || first == b':') && validate::ipv6_left_ok(bytes, start)
            }
            Self::Phone(_) => {
                matches!(first, b'0'..=b'9' | b'+' | b'(') && validate::phone_left_ok(bytes, start)
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

/// Every stream of a scanner, as the bits of [`PiiScanner::scan_range`].
const ALL_STREAMS: u8 = 0b111;

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
    /// Emails, IPv6 addresses, and the numeric candidates, each searched apart; `None` where no kind
    /// of the group is enabled.
    streams: [Option<Stream>; 3],
    /// For each byte, the streams (a bit for each index of `streams`) of which every match may hold
    /// it (see [`Candidate::needs`]): a short text is searched only by the streams whose bytes it
    /// holds, and a text without any such byte, as most keys and short values are, is passed over.
    needed: [u8; 256],
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
        let streams = [
            Stream::leftmost(&candidates, Candidate::Email, email_match),
            Stream::leftmost(&candidates, Candidate::Ipv6, ipv6_match),
            Stream::numeric(&candidates),
        ];
        let needed = std::array::from_fn(|byte| {
            let needs = |stream: &Option<Stream>| {
                stream.as_ref().is_some_and(|s| {
                    u8::try_from(byte).is_ok_and(|byte| s.candidates.iter().any(|c| c.needs(byte)))
                })
            };
            (0..)
                .zip(&streams)
                .fold(0, |bits, (i, stream)| bits | (u8::from(needs(stream)) << i))
        });
        let needles: Vec<[u8; 1]> = (0..=u8::MAX)
            .filter(|byte| {
                needed
                    .get(usize::from(*byte))
                    .is_some_and(|bits| *bits != 0)
            })
            .map(|byte| [byte])
            .collect();
        let triggers = Prefilter::new(MatchKind::LeftmostFirst, &needles);
        Self {
            kinds,
            streams,
            needed,
            triggers,
        }
    }

    /// The kinds this scanner finds.
    pub fn kinds(&self) -> PiiKinds {
        self.kinds
    }

    /// Calls `found` for every piece of personal data in `text`, left to right, without overlaps.
    ///
    /// Characters that read as the ASCII ones the patterns look for (a fullwidth `@`, an en dash, a
    /// no-break space, fullwidth digits) count as those, and invisible ones (a zero-width space, a
    /// soft hyphen) as nothing; the spans found are in `text` as given, covering such characters.
    pub fn scan(&self, text: &str, found: impl FnMut(Finding)) {
        self.scan_with(text, None, found);
    }

    /// [`scan`](Self::scan), finding too the bare values that `context` words label (see
    /// [`ContextWords`]) among the kinds of this scanner.
    pub fn scan_with(
        &self,
        text: &str,
        context: Option<&ContextWords>,
        mut found: impl FnMut(Finding),
    ) {
        let context = context.filter(|c| !c.is_empty());
        if let Some(plain) = Lookalikes::replaced(text) {
            self.scan_labelled(&plain.text, None, context, |finding| {
                found(Finding {
                    kind: finding.kind,
                    span: plain.original(finding.span),
                });
            });
            return;
        }
        self.scan_labelled(text, None, context, found);
    }

    /// What a scan of `text` needs to know before it starts: for a short text, read in one pass,
    /// whether it is ASCII and which streams may find something in it.
    pub(crate) fn glance(&self, text: &str) -> Glance {
        if text.len() > SHORT_TEXT {
            return Glance {
                may_hold_any: self.may_hold_any(text),
                ascii_streams: None,
            };
        }
        let (streams, bytes) = text.bytes().fold((0, 0), |(streams, bytes), b| {
            let needed = self.needed.get(usize::from(b)).copied().unwrap_or(0);
            (streams | needed, bytes | b)
        });
        let ascii = bytes.is_ascii();
        Glance {
            may_hold_any: !ascii || streams != 0,
            ascii_streams: ascii.then_some(streams),
        }
    }

    /// [`scan_with`](Self::scan_with) of a text whose [`glance`](Self::glance) was taken.
    pub(crate) fn scan_glanced(
        &self,
        text: &str,
        glance: Glance,
        context: Option<&ContextWords>,
        found: impl FnMut(Finding),
    ) {
        match glance.ascii_streams {
            Some(streams) => {
                let context = context.filter(|c| !c.is_empty());
                self.scan_labelled(text, Some(streams), context, found);
            }
            None => self.scan_with(text, context, found),
        }
    }

    /// [`scan_plain`](Self::scan_plain) with the values `context` words label merged in, left to
    /// right; where one overlaps a finding of the patterns, the pattern's is kept.
    fn scan_labelled(
        &self,
        text: &str,
        streams: Option<u8>,
        context: Option<&ContextWords>,
        mut found: impl FnMut(Finding),
    ) {
        let mut labelled = Vec::new();
        if let Some(context) = context {
            context.scan(text, |f| {
                if self.kinds.contains(f.kind) {
                    labelled.push(f);
                }
            });
        }
        if labelled.is_empty() {
            return self.scan_plain(text, streams, found);
        }
        let mut labelled = labelled.into_iter().peekable();
        self.scan_plain(text, streams, |finding| {
            while let Some(before) = labelled.next_if(|l| l.span.start < finding.span.end) {
                if before.span.end <= finding.span.start {
                    found(before);
                }
            }
            found(finding);
        });
        labelled.for_each(found);
    }

    /// [`scan`](Self::scan) of a text without lookalike characters; `streams` are those that may
    /// find something in a short text, when already known.
    fn scan_plain(&self, text: &str, streams: Option<u8>, mut found: impl FnMut(Finding)) {
        let bytes = text.as_bytes();
        let Some(triggers) = self.triggers.as_ref().filter(|_| bytes.len() > SHORT_TEXT) else {
            let streams = streams.unwrap_or_else(|| self.streams_needed(bytes));
            if streams != 0 {
                self.scan_range(bytes, 0..bytes.len(), streams, &mut found);
            }
            return;
        };
        let mut at = 0;
        for window in Windows::new(triggers, bytes) {
            let range = at.max(window.start)..window.end;
            at = self.scan_range(bytes, range, ALL_STREAMS, &mut found);
        }
    }

    /// Whether `text` may hold personal data: `false` for an ASCII text without a byte that some
    /// match needs (a text with lookalike characters is not ASCII).
    pub(crate) fn may_hold_any(&self, text: &str) -> bool {
        !text.is_ascii() || self.may_match(text)
    }

    /// Whether `text` holds a byte that some match needs; without one, it holds no match.
    fn may_match(&self, text: &str) -> bool {
        self.streams_needed(text.as_bytes()) != 0
    }

    /// The streams (a bit for each) that may find something in `bytes`: those whose needed bytes it
    /// holds.
    fn streams_needed(&self, bytes: &[u8]) -> u8 {
        bytes.iter().fold(0, |streams, b| {
            streams | self.needed.get(usize::from(*b)).copied().unwrap_or(0)
        })
    }

    /// [`scan`](Self::scan) reading the whole text, without the check for needed bytes or windows.
    #[cfg(test)]
    fn scan_unfiltered(&self, text: &str, mut found: impl FnMut(Finding)) {
        self.scan_range(text.as_bytes(), 0..text.len(), ALL_STREAMS, &mut found);
    }

    /// Reports the findings that start in `range` and end by its end, searched by the `streams` (a bit
    /// for each), and returns where the search would go on. Validators look at the bytes around a
    /// match, outside the range too.
    ///
    /// Each stream's first finding from the current position is kept until a finding before it moves
    /// the position past its start, so each stream reads the range about once.
    fn scan_range(
        &self,
        bytes: &[u8],
        range: Range<usize>,
        streams: u8,
        found: &mut impl FnMut(Finding),
    ) -> usize {
        let mut at = range.start;
        let mut next: [Next; 3] = std::array::from_fn(|i| match streams & (1 << i) {
            0 => Next::Exhausted,
            _ => Next::Unknown,
        });
        loop {
            for (stream, next) in self.streams.iter().zip(next.iter_mut()) {
                let Some(stream) = stream else {
                    *next = Next::Exhausted;
                    continue;
                };
                let stale = match next {
                    Next::Unknown => true,
                    Next::At(hit) => hit.start < at,
                    Next::Exhausted => false,
                };
                if stale {
                    *next = stream
                        .first(bytes, at..range.end)
                        .map_or(Next::Exhausted, Next::At);
                }
            }
            let best = next
                .iter()
                .filter_map(|n| match n {
                    Next::At(hit) => Some(hit),
                    Next::Unknown | Next::Exhausted => None,
                })
                .min_by_key(|hit| (hit.start, hit.candidate.priority()));
            let Some(hit) = best else {
                return at.max(range.end);
            };
            at = hit.span.end.max(hit.start + 1);
            found(Finding {
                kind: hit.candidate.kind(),
                span: hit.span.clone(),
            });
        }
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

/// A text with its lookalike characters replaced by the ASCII ones they read as (or removed, when
/// invisible), and where each of its bytes came from.
struct Lookalikes {
    text: String,
    /// For each byte of `text`, where the character it came from starts in the original, and where
    /// it ends.
    from: Vec<(usize, usize)>,
}

impl Lookalikes {
    /// The ASCII byte `c` reads as (`Some(None)`: nothing, it is invisible), if it is a lookalike.
    fn ascii(c: char) -> Option<Option<u8>> {
        Some(match c {
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' | '\u{FF0D}' => Some(b'-'),
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => {
                Some(b' ')
            }
            '\u{FF20}' | '\u{FE6B}' => Some(b'@'),
            '\u{FF0E}' => Some(b'.'),
            '\u{FF0B}' => Some(b'+'),
            '\u{FF10}'..='\u{FF19}' => u8::try_from(u32::from(c) - 0xFF10 + u32::from(b'0')).ok(),
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => None,
            _ => return None,
        })
    }

    /// `text` with its lookalikes replaced, or `None` when it has none (as nearly every text): every
    /// lookalike starts with one of three bytes, found with `memchr`, and most texts have none of them.
    fn replaced(text: &str) -> Option<Self> {
        // ASCII text, nearly all of it, is told apart a word at a time.
        if text.is_ascii() {
            return None;
        }
        let has_any = memchr::memchr3_iter(0xC2, 0xE2, 0xEF, text.as_bytes()).any(|at| {
            text.get(at..)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| Self::ascii(c).is_some())
        });
        if !has_any {
            return None;
        }
        let mut plain = Self {
            text: String::with_capacity(text.len()),
            from: Vec::with_capacity(text.len()),
        };
        for (at, c) in text.char_indices() {
            let span = (at, at + c.len_utf8());
            match Self::ascii(c) {
                Some(Some(byte)) => {
                    plain.text.push(char::from(byte));
                    plain.from.push(span);
                }
                Some(None) => {}
                None => {
                    plain.text.push(c);
                    plain.from.extend(std::iter::repeat_n(span, c.len_utf8()));
                }
            }
        }
        Some(plain)
    }

    /// Where `span` of the replaced text lies in the original.
    fn original(&self, span: Range<usize>) -> Range<usize> {
        let start = self.from.get(span.start).map_or(0, |(start, _)| *start);
        let end = span
            .end
            .checked_sub(1)
            .and_then(|last| self.from.get(last))
            .map_or(start, |(_, end)| *end);
        start..end
    }
}

/// What [`PiiScanner::glance`] tells of a text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Glance {
    /// `false` when a scan cannot find anything: an ASCII text without a byte some match needs.
    pub(crate) may_hold_any: bool,
    /// For a short ASCII text, the streams (a bit for each) that may find something in it.
    ascii_streams: Option<u8>,
}

/// A stream's first finding from the current position, as far as it is known.
enum Next {
    /// Not searched for yet.
    Unknown,
    /// The first candidate from the position on that passed its checks.
    At(Hit),
    /// None in the rest of the range.
    Exhausted,
}

/// A candidate that passed its checks.
#[derive(Clone, Debug)]
struct Hit {
    /// Where its match starts (the finding may start later: an email's leading dots are left out).
    start: usize,
    candidate: Candidate,
    span: Range<usize>,
}

/// How a stream looks for its candidates.
#[derive(Clone)]
enum Search {
    /// The positions where a candidate may start are found first (a digit after a non-word byte, a
    /// `+`, a `(`: a few per sentence), and a leftmost-first regex over the stream's patterns is run
    /// anchored at each, reading only the candidate and never the prose around it.
    AtEachStart(Regex),
    /// The leftmost match of the stream's one pattern, found from a byte every match holds (the `@`
    /// of an email, the colons of an IPv6 address) by a hand-written search ([`email_match`],
    /// [`ipv6_match`]). Such bytes are rare in text, and `memchr` finds them.
    Leftmost(fn(&[u8], Range<usize>) -> Option<Range<usize>>),
}

/// A group of candidates searched together, and the search for their first finding.
#[derive(Clone)]
struct Stream {
    search: Search,
    /// The candidates, in priority order: the regex's pattern ids index them.
    candidates: Vec<Candidate>,
    /// The bytes a candidate of this stream can start with.
    first_bytes: [bool; 256],
    /// The ASCII range those bytes lie in, when it is narrow (the numeric candidates': `(` to `9`),
    /// for [`find_in_range`] to pass over prose eight bytes at a time.
    first_range: Option<(u8, u8)>,
    /// One candidate for each rule of where this stream's candidates may start: a position is
    /// judged once per rule, not once per candidate.
    starters: Vec<Candidate>,
}

impl Stream {
    /// A stream for the numeric candidates among `candidates`; `None` when there are none.
    fn numeric(candidates: &[Candidate]) -> Option<Self> {
        let numeric: Vec<Candidate> = candidates
            .iter()
            .copied()
            .filter(|c| !matches!(c, Candidate::Email | Candidate::Ipv6))
            .collect();
        if numeric.is_empty() {
            return None;
        }
        let patterns: Vec<&str> = numeric.iter().map(|c| c.pattern()).collect();
        #[expect(
            clippy::expect_used,
            reason = "the patterns are constants, and every combination is compiled by the tests"
        )]
        let regex = Regex::new_many(&patterns).expect("the PII patterns compile");
        Some(Self::new(numeric, Search::AtEachStart(regex)))
    }

    /// A stream for `candidate` alone, found by `find`; `None` when it is not among `candidates`.
    fn leftmost(
        candidates: &[Candidate],
        candidate: Candidate,
        find: fn(&[u8], Range<usize>) -> Option<Range<usize>>,
    ) -> Option<Self> {
        candidates
            .contains(&candidate)
            .then(|| Self::new(vec![candidate], Search::Leftmost(find)))
    }

    fn new(candidates: Vec<Candidate>, search: Search) -> Self {
        let first_bytes = std::array::from_fn(|byte| {
            // A space before: the most permissive left context.
            u8::try_from(byte)
                .is_ok_and(|byte| candidates.iter().any(|c| c.may_start(&[b' ', byte], 1)))
        });
        let firsts = || (0..=u8::MAX).filter(|b| first_bytes.get(usize::from(*b)) == Some(&true));
        let first_range = firsts()
            .min()
            .zip(firsts().max())
            .filter(|(lo, hi)| hi.is_ascii() && hi - lo < 0x20);
        // Cards and SSNs start where IPv4 addresses do and more (an IPv4 address not after a dot);
        // every phone shape starts alike.
        let rule = |c: &Candidate| match c {
            Candidate::Card | Candidate::CardAmex | Candidate::Ssn => 0,
            Candidate::Ipv4 => 1,
            Candidate::Phone(_) => 2,
            Candidate::Email => 3,
            Candidate::Ipv6 => 4,
        };
        let mut starters: Vec<Candidate> = Vec::new();
        for candidate in &candidates {
            if !starters.iter().any(|s| rule(s) == rule(candidate)) {
                starters.push(*candidate);
            }
        }
        if starters.iter().any(|s| rule(s) == 0) {
            starters.retain(|s| rule(s) != 1);
        }
        Self {
            search,
            candidates,
            first_bytes,
            first_range,
            starters,
        }
    }

    /// The first candidate in `range` that passes its checks, ending by the range's end.
    fn first(&self, bytes: &[u8], range: Range<usize>) -> Option<Hit> {
        let mut at = range.start;
        while at < range.end {
            let (start, end, pattern) = match &self.search {
                Search::Leftmost(find) => {
                    let span = find(bytes, at..range.end)?;
                    (span.start, span.end, PatternID::ZERO)
                }
                Search::AtEachStart(regex) => {
                    at = self.next_possible_start(bytes, at, range.end);
                    if at >= range.end {
                        return None;
                    }
                    let input = Input::new(bytes)
                        .range(at..range.end)
                        .anchored(Anchored::Yes);
                    let found = numeric_may_match(bytes, at)
                        .then(|| regex.search(&input))
                        .flatten();
                    let Some(found) = found else {
                        at = resume_after_failure(bytes, at);
                        continue;
                    };
                    (found.start(), found.end(), found.pattern())
                }
            };
            #[cfg(test)]
            tests::READ.with(|read| read.set(read.get() + (end - at)));
            let validated = self
                .candidates
                .get(pattern.as_usize())
                .and_then(|c| Some((*c, c.validate(bytes, start..end)?)))
                .or_else(|| self.retry_at(bytes, start, pattern));
            if let Some((candidate, span)) = validated {
                return Some(Hit {
                    start,
                    candidate,
                    span,
                });
            }
            at = resume_after_failure(bytes, start);
            if let Search::Leftmost(_) = self.search {
                // The anchored search moves to the next possible start itself, atop the loop.
                at = self.next_possible_start(bytes, at, range.end);
            }
        }
        None
    }

    /// Tries the patterns after `tried` that match at `start`, in priority order: the leftmost-first
    /// search chose `tried` as the first pattern matching there, so none before it does. Each try is
    /// an anchored search that stops within a few bytes when its pattern does not match.
    fn retry_at(
        &self,
        bytes: &[u8],
        start: usize,
        tried: PatternID,
    ) -> Option<(Candidate, Range<usize>)> {
        let Search::AtEachStart(regex) = &self.search else {
            return None;
        };
        let anchored = Input::new(bytes).range(start..);
        self.candidates
            .iter()
            .enumerate()
            .skip(tried.as_usize() + 1)
            .filter(|(_, candidate)| candidate.may_start(bytes, start))
            .find_map(|(index, candidate)| {
                let pattern = PatternID::new(index).ok()?;
                let m = regex.search(&anchored.clone().anchored(Anchored::Pattern(pattern)))?;
                #[cfg(test)]
                tests::READ.with(|read| read.set(read.get() + m.len()));
                Some((*candidate, candidate.validate(bytes, m.range())?))
            })
    }

    /// The first position from `from` on where one of this stream's candidates may start, or `end`.
    ///
    /// No candidate starts right after a letter, digit or `_` (a match glued to a word is not one),
    /// so the rest of a word is passed over as soon as one of its bytes could start a candidate.
    fn next_possible_start(&self, bytes: &[u8], from: usize, end: usize) -> usize {
        let mut at = from;
        while let Some(rest) = bytes.get(at..end) {
            let is_first = |b: &u8| self.first_bytes.get(usize::from(*b)) == Some(&true);
            let skip = match self.first_range {
                Some(range) => find_in_range(rest, range, is_first),
                None => rest.iter().position(is_first),
            };
            let Some(skip) = skip else {
                break;
            };
            at += skip;
            let glued = at
                .checked_sub(1)
                .and_then(|i| bytes.get(i))
                .is_some_and(|b| is_word(*b));
            if glued {
                // Nothing starts glued to a word; when this byte is part of the word, nothing starts
                // in the rest of it either.
                let in_word = rest.get(skip).is_some_and(|b| is_word(*b));
                let rest_of_word = match in_word {
                    true => rest
                        .iter()
                        .skip(skip + 1)
                        .take_while(|b| is_word(**b))
                        .count(),
                    false => 0,
                };
                at += 1 + rest_of_word;
                continue;
            }
            if self.starters.iter().any(|c| c.may_start(bytes, at)) {
                return at;
            }
            at += 1;
        }
        end
    }
}

/// The first byte of `bytes` in `lo..=hi` (ASCII) that `wanted` accepts.
///
/// Eight bytes at a time: a word's bytes are tested against the range at once, and only the few in
/// it are looked up one by one. Hand-written because `regex-automata`'s prefilter for the same set of
/// bytes measured slower here, where the next digit is usually a few dozen bytes away.
pub(super) fn find_in_range(
    bytes: &[u8],
    (lo, hi): (u8, u8),
    wanted: impl Fn(&u8) -> bool,
) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let (at_least_lo, above_hi) = (ONES * u64::from(0x80 - lo), ONES * u64::from(0x7F - hi));
    let (chunks, remainder) = bytes.as_chunks::<8>();
    let mut offset = 0;
    for chunk in chunks {
        let word = u64::from_le_bytes(*chunk);
        // Per byte b < 0x80: b + (0x80 - lo) has its high bit set when b >= lo, b + (0x7F - hi)
        // when b > hi; neither sum carries into the next byte. Bytes of 0x80 and more are left out.
        let low7 = word & !HIGH;
        let in_range = (low7 + at_least_lo) & !(low7 + above_hi) & !word & HIGH;
        if in_range != 0
            && let Some(i) = chunk.iter().position(&wanted)
        {
            return Some(offset + i);
        }
        offset += 8;
    }
    remainder.iter().position(wanted).map(|i| offset + i)
}

/// The leftmost match of [`Candidate::Email`]'s pattern in `range`, as the regex would find it.
///
/// A local part cannot hold an `@`, so the leftmost match belongs to the first `@` with a local-part
/// byte before it and a letter or digit after it, and starts as far back as the local part allows.
/// Hand-written because `regex-automata` spends most of a short text's search setting out from the
/// `@` it found; a test checks it against the regex on arbitrary text.
fn email_match(bytes: &[u8], range: Range<usize>) -> Option<Range<usize>> {
    let haystack = bytes.get(range.clone())?;
    let is_domain = |b: &&u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-');
    for at_sign in memchr::memchr_iter(b'@', haystack) {
        let local = haystack
            .get(..at_sign)?
            .iter()
            .rev()
            .take(64)
            .take_while(|b| validate::is_local_part(**b))
            .count();
        let after = haystack.get(at_sign + 1..).unwrap_or_default();
        if local == 0 || !after.first().is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        let domain = 1 + after.iter().skip(1).take(252).take_while(is_domain).count();
        return Some(range.start + at_sign - local..range.start + at_sign + 1 + domain);
    }
    None
}

/// The leftmost match of [`Candidate::Ipv6`]'s pattern in `range`, as the regex would find it.
///
/// A match's first colon is followed by at most four hex digits and a second colon; the leftmost match
/// belongs to the first colon so followed, starts up to four hex digits before it, and runs on over hex
/// digits, colons and dots for at most 37 bytes after the second colon. A test checks it against the
/// regex on arbitrary text.
fn ipv6_match(bytes: &[u8], range: Range<usize>) -> Option<Range<usize>> {
    let haystack = bytes.get(range.clone())?;
    let hex_after = |from: usize, most: usize| {
        haystack
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take(most)
            .take_while(|b| b.is_ascii_hexdigit())
            .count()
    };
    for colon in memchr::memchr_iter(b':', haystack) {
        let group = hex_after(colon + 1, 5);
        let second = colon + 1 + group;
        if group > 4 || haystack.get(second) != Some(&b':') {
            continue;
        }
        let before = haystack
            .get(..colon)?
            .iter()
            .rev()
            .take(4)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        let tail = haystack
            .get(second + 1..)
            .unwrap_or_default()
            .iter()
            .take(37)
            .take_while(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
            .count();
        return Some(range.start + colon - before..range.start + second + 1 + tail);
    }
    None
}

/// Whether a numeric pattern may match at `start`, judged by the digits there and the byte after
/// them: a card starts with five digits, or four, a space or hyphen and four more; an SSN with three
/// and a separator; an IPv4 address with one to three and a dot; a phone with `+`, `(`, or digits and
/// a separator: three (`555-`), or a leading `0` or `1` and fewer (`020 `, `1 (`, `1-555-`). Most
/// numbers in text (`10:30`, `12,345`, `$9.99`'s `9`, a date's `2024-03`, a time's `05:00`) fail
/// this, and are passed over without the regex, whose every search has a set-up cost of its own.
fn numeric_may_match(bytes: &[u8], start: usize) -> bool {
    let rest = bytes.get(start..).unwrap_or_default();
    let Some(&first) = rest.first() else {
        return false;
    };
    if !first.is_ascii_digit() {
        return true;
    }
    let leading_digits = |from: usize, most: usize| {
        rest.get(from..)
            .unwrap_or_default()
            .iter()
            .take(most)
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let digits = leading_digits(0, 5);
    let after = rest.get(digits).copied();
    let separated = matches!(after, Some(b' ' | b'.' | b'-'));
    match (first, digits) {
        (_, 5) => true,
        // A national phone's area code (`0201 `), a North American one after its `1` (`1555-`),
        // an international prefix and code before a bracket (`0044(`).
        (b'0', 4) => separated || after == Some(b'('),
        (b'1', 4) => separated,
        (_, 4) => matches!(after, Some(b' ' | b'-')) && leading_digits(5, 4) == 4,
        (_, 3) => separated || (first == b'0' && after == Some(b'(')),
        // `020 `, and the dot of an IPv4 address.
        (b'0', 2) => separated,
        // `1 (555)`, `1-555-`.
        (b'1', 1) => separated || after == Some(b'('),
        _ => after == Some(b'.'),
    }
}

/// A letter, a digit or `_`.
fn is_word(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
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
    fn lookalike_characters_hide_nothing() {
        for (text, kind, found) in [
            (
                "ssn 536\u{2013}22\u{2013}1234.",
                Ssn,
                "536\u{2013}22\u{2013}1234",
            ),
            (
                "ssn 536\u{2212}22\u{2212}1234",
                Ssn,
                "536\u{2212}22\u{2212}1234",
            ),
            (
                "card 4111\u{00A0}1111\u{00A0}1111\u{00A0}1111 ok",
                CreditCard,
                "4111\u{00A0}1111\u{00A0}1111\u{00A0}1111",
            ),
            (
                "mail jane\u{FF20}example.com",
                Email,
                "jane\u{FF20}example.com",
            ),
            (
                "mail jane@exa\u{200B}mple.com now",
                Email,
                "jane@exa\u{200B}mple.com",
            ),
            (
                "card \u{FF14}\u{FF11}\u{FF11}\u{FF11}111111111111",
                CreditCard,
                "\u{FF14}\u{FF11}\u{FF11}\u{FF11}111111111111",
            ),
        ] {
            assert_eq!(scan(text), [(kind, found)], "{text}");
        }
        // Typographic punctuation that hides nothing leaves the text as it is.
        assert_eq!(scan("\u{201C}quoted\u{201D} \u{2014} caf\u{e9}"), []);
        assert!(Lookalikes::replaced("\u{201C}quoted\u{201D} caf\u{e9}").is_none());
    }

    #[test]
    fn identifiers_and_the_tails_of_long_numbers_are_not_phones() {
        for text in [
            "order 08814-71071 shipped",
            "Order #02094-49231",
            "tracking: 0191 1525 44",
            "ticket 020 7946 0958",
            "invoice=07700 900123",
            "USPS 9400 1234 0785 0696 49 delivered",
            "USPS 9400 1339 1274 0028 1163 59",
        ] {
            assert_eq!(scan(text), [], "{text}");
        }
        // The same numbers after other words, and every shape after a number that ends a sentence.
        for (text, phone) in [
            ("call 020 7946 0958 now", "020 7946 0958"),
            ("orders: 07700 900123", "07700 900123"),
            ("room 12, 07700 900123", "07700 900123"),
            ("order 12 +44 20 7946 0958", "+44 20 7946 0958"),
            ("reference +44 20 7946 0958", "+44 20 7946 0958"),
            ("order (555) 234-5678", "(555) 234-5678"),
            ("ordered (555) 234-5678", "(555) 234-5678"),
        ] {
            assert_eq!(scan(text), [(Phone, phone)], "{text}");
        }
    }

    #[test]
    fn a_failed_candidate_does_not_hide_a_later_one() {
        assert_eq!(
            scan("4111111111111112 4111111111111111"),
            [(CreditCard, "4111111111111111")]
        );
        assert_eq!(scan("10:30:00 then 10.0.0.1"), [(IpAddress, "10.0.0.1")]);
    }

    thread_local! {
        /// The bytes the regexes' matches have covered on this thread: a floor on what they read.
        pub(super) static READ: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// How many bytes the regexes' matches covered, per byte of `text`.
    fn read_per_byte(text: &str) -> f64 {
        READ.with(|read| read.set(0));
        PiiScanner::new(PiiKinds::all()).find_all(text);
        READ.with(std::cell::Cell::get) as f64 / text.len() as f64
    }

    #[test]
    fn long_hostile_inputs_stay_linear() {
        let text = format!("{}@{}", "a".repeat(20_000), "b.".repeat(20_000));
        assert_eq!(scan(&text), []);
        let digits = "1".repeat(20_000);
        assert_eq!(scan(&digits), []);
    }

    /// Inputs where a candidate starts, and fails, at nearly every byte. With one regex for every
    /// kind, `::::` and `a:a:` had the regex cover each byte about forty and twenty times over.
    #[test]
    fn failing_candidates_at_every_byte_are_read_about_once() {
        for unit in [
            "::", "a:", "1:", "ff:", "1a:", "a@", "1@", "a.a@a.a", "1.1.", "0.", "1234-", "4111 ",
            "+1 ", "(0", "1-",
        ] {
            let text = unit.repeat(100_000 / unit.len());
            let read = read_per_byte(&text);
            assert!(read < 6.0, "{unit:?}: {read:.1} bytes covered per byte");
        }
    }

    /// The scanner's contract, spelled out slowly: at each position, the first candidate in priority
    /// order that matches there and passes its checks is a finding, and the search goes on after it.
    fn reference(text: &str, kinds: PiiKinds) -> Vec<Finding> {
        let candidates: Vec<Candidate> = Candidate::ALL
            .into_iter()
            .filter(|c| kinds.contains(c.kind()))
            .collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        let patterns: Vec<&str> = candidates.iter().map(|c| c.pattern()).collect();
        let regex = Regex::new_many(&patterns).unwrap();
        let bytes = text.as_bytes();
        let (mut at, mut findings) = (0, Vec::new());
        while at < bytes.len() {
            let found = candidates
                .iter()
                .enumerate()
                .find_map(|(index, candidate)| {
                    let input = Input::new(bytes)
                        .range(at..)
                        .anchored(Anchored::Pattern(PatternID::new(index).unwrap()));
                    let m = regex.search(&input)?;
                    Some((candidate.kind(), candidate.validate(bytes, m.range())?))
                });
            match found {
                Some((kind, span)) => {
                    at = span.end.max(at + 1);
                    findings.push(Finding { kind, span });
                }
                None => at += 1,
            }
        }
        findings
    }

    /// What a hand-written search finds in `text` from `from` on, and what `candidate`'s regex finds.
    fn search_and_regex(
        candidate: Candidate,
        search: fn(&[u8], Range<usize>) -> Option<Range<usize>>,
        text: &str,
        from: usize,
    ) -> (Option<Range<usize>>, Option<Range<usize>>) {
        let bytes = text.as_bytes();
        let from = from.min(bytes.len());
        let regex = Regex::new(candidate.pattern()).unwrap();
        let expected = regex
            .find(Input::new(bytes).range(from..))
            .map(|m| m.range());
        (search(bytes, from..bytes.len()), expected)
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

    #[test]
    fn numeric_may_match_turns_away_times_and_dates_but_no_phone_prefix() {
        for may in [
            "0044(20)7946 0958",
            "001(555) 123-4567",
            "0201 7946 0958",
            "020 7946 0958",
            "1 (555) 123-4567",
            "1(555) 123-4567",
            "1-555-123-4567",
            "1555-123-4567",
            "0.0.0.0",
            "536-22-1234",
        ] {
            assert!(numeric_may_match(may.as_bytes(), 0), "{may}");
        }
        for not in [
            "05:00Z",
            "00Z",
            "2024-03-12",
            "12T04",
            "10:30",
            "1,234",
            "1/2",
            "0)",
        ] {
            assert!(!numeric_may_match(not.as_bytes(), 0), "{not}");
        }
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

        /// Values labelled by context words join the patterns' findings in order and without
        /// overlaps, and take none of them away.
        #[test]
        fn labelled_values_merge_into_the_findings(
            pieces in proptest::collection::vec(proptest::prop_oneof![
                piece(),
                proptest::sample::select(vec![
                    "SSN ", "ssn: ", "phone ", "Mobile: ", "536221234", "2125550143",
                    "12125550143", "078-05-1121 ", "(212) 555-0143",
                ]),
            ], 0..80),
            bits in 0u8..32,
        ) {
            let text = pieces.concat();
            let kinds: PiiKinds = PiiKind::ALL
                .into_iter()
                .filter(|k| bits & (1 << (*k as u8)) != 0)
                .collect();
            let scanner = PiiScanner::new(kinds);
            let mut context = ContextWords::new();
            context.add(PiiKind::Ssn, super::super::SSN_WORDS);
            context.add(PiiKind::Phone, super::super::PHONE_WORDS);
            let mut merged = Vec::new();
            scanner.scan_with(&text, Some(&context), |f| merged.push(f));
            for pair in merged.windows(2) {
                proptest::prop_assert!(pair[0].span.end <= pair[1].span.start, "{text:?}: {merged:?}");
            }
            proptest::prop_assert!(merged.iter().all(|f| kinds.contains(f.kind)));
            for finding in scanner.find_all(&text) {
                proptest::prop_assert!(merged.contains(&finding), "{text:?}: {finding:?}");
            }
        }

        /// A scan after a glance finds what a plain scan finds, and a glance never says a text
        /// holds nothing when a scan finds something in it.
        #[test]
        fn a_glanced_scan_finds_what_a_scan_finds(
            pieces in proptest::collection::vec(piece(), 0..24),
            lookalike in proptest::bool::ANY,
            bits in 0u8..32,
        ) {
            let mut text = pieces.concat();
            if lookalike {
                text = text.replace('@', "\u{FF20}");
            }
            let kinds: PiiKinds = PiiKind::ALL
                .into_iter()
                .filter(|k| bits & (1 << (*k as u8)) != 0)
                .collect();
            let scanner = PiiScanner::new(kinds);
            let glance = scanner.glance(&text);
            let mut glanced = Vec::new();
            scanner.scan_glanced(&text, glance, None, |f| glanced.push(f));
            let found = scanner.find_all(&text);
            proptest::prop_assert!(glance.may_hold_any || found.is_empty(), "{:?}", text);
            proptest::prop_assert_eq!(glanced, found);
        }

        /// The quick judgement of where a numeric pattern may match never turns one away.
        #[test]
        fn numeric_may_match_allows_every_numeric_pattern(
            value in proptest::prop_oneof![planted(), "[0-9][0-9 .()+-]{0,20}"],
        ) {
            let bytes = value.as_bytes();
            let numeric = Candidate::ALL
                .into_iter()
                .filter(|c| !matches!(c, Candidate::Email | Candidate::Ipv6));
            let patterns: Vec<&str> = numeric.map(|c| c.pattern()).collect();
            let regex = Regex::new_many(&patterns).unwrap();
            if regex.is_match(Input::new(bytes).anchored(Anchored::Yes)) {
                proptest::prop_assert!(numeric_may_match(bytes, 0), "{value:?}");
            }
        }

        /// Reading an email from its `@` finds the match the email pattern's regex finds, from any
        /// position.
        #[test]
        fn email_match_is_the_regex_match(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "a", "B7", ".", "-", "_%+", "@", "@@", " ", "é", "example.com", "-x.",
                "local.part.that.is.rather.long.and.goes.on", "ab.c-d",
            ]), 0..40),
            from in 0usize..60,
        ) {
            let text = pieces.concat();
            let (found, expected) = search_and_regex(Candidate::Email, email_match, &text, from);
            proptest::prop_assert_eq!(found, expected, "{:?}", text);
        }

        /// Reading an IPv6 address from its colons finds the match the IPv6 pattern's regex finds,
        /// from any position.
        #[test]
        fn ipv6_match_is_the_regex_match(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "a", "F", "0", "12", "fe80", "12345", ":", "::", ".", " ", "g", "é", "1.2.3.4",
                "2001:db8", "T12:34:56Z",
            ]), 0..40),
            from in 0usize..60,
        ) {
            let text = pieces.concat();
            let (found, expected) = search_and_regex(Candidate::Ipv6, ipv6_match, &text, from);
            proptest::prop_assert_eq!(found, expected, "{:?}", text);
        }

        /// Looking for bytes in a range eight at a time finds what looking at each byte finds.
        #[test]
        fn find_in_range_finds_the_first_wanted_byte(
            bytes in proptest::collection::vec(proptest::sample::select(
                vec![b'a', b' ', b'(', b')', b'+', b',', b'0', b'5', b'9', b':', b'\'', 0x7F, 0x80, 0xC3, 0xFF]), 0..40),
        ) {
            let wanted = |b: &u8| b.is_ascii_digit() || *b == b'+' || *b == b'(';
            proptest::prop_assert_eq!(find_in_range(&bytes, (b'(', b'9'), wanted), bytes.iter().position(wanted));
        }

        /// Passing over positions where no candidate can start, and the hand-written email and IPv6
        /// searches, find what trying every candidate at every position finds.
        #[test]
        fn findings_are_those_of_every_candidate_tried_everywhere(
            pieces in proptest::collection::vec(piece(), 0..120),
            bits in 0u8..32,
        ) {
            let text = pieces.concat();
            let kinds: PiiKinds = PiiKind::ALL
                .into_iter()
                .filter(|k| bits & (1 << (*k as u8)) != 0)
                .collect();
            let mut unfiltered = Vec::new();
            PiiScanner::new(kinds).scan_unfiltered(&text, |f| unfiltered.push(f));
            proptest::prop_assert_eq!(unfiltered, reference(&text, kinds));
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

    /// The bytes a match of `hir` can start with, and whether it can be empty.
    fn first_bytes(hir: &regex_syntax::hir::Hir) -> (Vec<u8>, bool) {
        use regex_syntax::hir::{Class, HirKind};
        match hir.kind() {
            HirKind::Empty | HirKind::Look(_) => (Vec::new(), true),
            HirKind::Literal(literal) => (literal.0.first().copied().into_iter().collect(), false),
            HirKind::Class(Class::Unicode(class)) => (
                class
                    .iter()
                    .flat_map(|r| r.start()..=r.end())
                    .filter_map(|c| u8::try_from(c).ok())
                    .collect(),
                false,
            ),
            HirKind::Class(Class::Bytes(class)) => (
                class.iter().flat_map(|r| r.start()..=r.end()).collect(),
                false,
            ),
            HirKind::Repetition(repetition) => {
                let (bytes, empty) = first_bytes(&repetition.sub);
                (bytes, empty || repetition.min == 0)
            }
            HirKind::Capture(capture) => first_bytes(&capture.sub),
            HirKind::Concat(all) => {
                let mut bytes = Vec::new();
                for part in all {
                    let (first, empty) = first_bytes(part);
                    bytes.extend(first);
                    if !empty {
                        return (bytes, false);
                    }
                }
                (bytes, true)
            }
            HirKind::Alternation(any) => {
                let parts: Vec<_> = any.iter().map(first_bytes).collect();
                let empty = parts.iter().any(|(_, empty)| *empty);
                (parts.into_iter().flat_map(|(b, _)| b).collect(), empty)
            }
        }
    }

    /// `may_start` rests on the first bytes it allows being all a pattern can start with.
    #[test]
    fn may_start_allows_every_first_byte_of_its_pattern() {
        for candidate in Candidate::ALL {
            let hir = regex_automata::util::syntax::parse(candidate.pattern()).unwrap();
            let (firsts, empty) = first_bytes(&hir);
            assert!(!empty, "{candidate:?}");
            for byte in firsts {
                // A space before: the most permissive left context.
                assert!(
                    candidate.may_start(&[b' ', byte], 1),
                    "{candidate:?} starting with {:?}",
                    char::from(byte)
                );
            }
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
        assert!(!emails.may_hold_any("name"));
        // A fullwidth at sign reads as `@`.
        assert!(emails.may_hold_any("a\u{FF20}example.com"));
    }
}
