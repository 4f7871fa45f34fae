//! Checks a regex candidate must pass to count as personal data, and the boundaries around it.
//!
//! The candidate regexes are deliberately loose and fast; everything that needs arithmetic or context
//! (Luhn, issuer ranges, invalid SSN blocks, octet ranges, public suffixes, digit counts) lives here.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::ops::Range;

/// The byte at `index`, if any.
fn at(bytes: &[u8], index: usize) -> Option<u8> {
    bytes.get(index).copied()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The byte before `start`, if any.
fn before(bytes: &[u8], start: usize) -> Option<u8> {
    start.checked_sub(1).and_then(|i| at(bytes, i))
}

/// Whether a numeric token may start at `start`: not glued to a word or a `+`, and not continuing
/// another number (`1.2` followed by `.3`).
pub(super) fn numeric_left_ok(bytes: &[u8], start: usize) -> bool {
    match before(bytes, start) {
        None => true,
        Some(b) if is_word(b) || b == b'+' => false,
        Some(b'.' | b'-' | b',') => !start
            .checked_sub(2)
            .and_then(|i| at(bytes, i))
            .is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    }
}

/// Whether a phone number may start at `start`: what [`numeric_left_ok`] asks, except that a comma
/// before it is always taken as a separator.
pub(super) fn phone_left_ok(bytes: &[u8], start: usize) -> bool {
    match before(bytes, start) {
        Some(b',') => true,
        _ => numeric_left_ok(bytes, start),
    }
}

/// Whether an email address may start at `start`: a local-part character before it would mean the
/// real local part starts earlier.
pub(super) fn email_left_ok(bytes: &[u8], start: usize) -> bool {
    !before(bytes, start).is_some_and(is_local_part)
}

/// Whether an IPv4 address may start at `start`: a number may not, nor may a fifth octet.
pub(super) fn ipv4_left_ok(bytes: &[u8], start: usize) -> bool {
    before(bytes, start) != Some(b'.') && numeric_left_ok(bytes, start)
}

/// Whether an IPv6 address may start at `start`: not glued to a word or another group.
pub(super) fn ipv6_left_ok(bytes: &[u8], start: usize) -> bool {
    !before(bytes, start).is_some_and(|b| is_word(b) || b == b':')
}

/// A numeric token must not be glued to a word or continue another number (`1.2.3.4.5`, `4111-1111-…-9`).
pub(super) fn numeric_boundaries(bytes: &[u8], span: &Range<usize>) -> bool {
    let left_ok = numeric_left_ok(bytes, span.start);
    let right_ok = match at(bytes, span.end) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'.' | b'-' | b',') => !at(bytes, span.end + 1).is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    };
    left_ok && right_ok
}

fn digits(text: &[u8]) -> Vec<u8> {
    text.iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| b - b'0')
        .collect()
}

fn number(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |n, &d| {
        n.saturating_mul(10).saturating_add(u32::from(d))
    })
}

/// The separators between digit groups, which must all be the same character.
fn consistent_separator(text: &[u8]) -> Option<Option<u8>> {
    let mut separators = text.iter().filter(|b| !b.is_ascii_digit());
    match separators.next() {
        None => Some(None),
        Some(&first) => separators.all(|&b| b == first).then_some(Some(first)),
    }
}

/// A US social security number: `ddd-dd-dddd` (or spaces or dots, consistently), excluding numbers the
/// SSA never issues and well-known sample numbers.
pub(super) fn ssn(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let text = bytes.get(span.clone())?;
    if !numeric_boundaries(bytes, &span) || consistent_separator(text)?.is_none() {
        return None;
    }
    ssn_digits(&digits(text)).then_some(span)
}

/// Whether nine digits make a social security number the SSA could have issued, and not a
/// well-known sample.
fn ssn_digits(d: &[u8]) -> bool {
    let (Some(area), Some(group), Some(serial)) = (d.get(0..3), d.get(3..5), d.get(5..9)) else {
        return false;
    };
    let (area, group, serial) = (number(area), number(group), number(serial));
    let invalid_block = area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0;
    let all_same = d.iter().all(|&x| Some(&x) == d.first());
    const SAMPLES: [u32; 5] = [
        123_456_789,
        78_051_120,
        219_099_999,
        457_555_462,
        987_654_321,
    ];
    let sample = SAMPLES.contains(&number(d));
    d.len() == 9 && !invalid_block && !all_same && !sample
}

/// A social security number written as nine bare digits (`536221234`), which only context words
/// make one: the same checks as [`ssn`] but for the separators.
pub(super) fn bare_ssn(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let text = bytes.get(span.clone())?;
    let bare = text.len() == 9 && text.iter().all(u8::is_ascii_digit);
    (bare && numeric_boundaries(bytes, &span) && ssn_digits(&digits(text))).then_some(span)
}

/// A phone number written as bare digits, which only context words make one: ten digits of a North
/// American number (area code and exchange starting 2-9), the same after a country code `1`, or a
/// national number of ten or eleven digits after a trunk `0`.
pub(super) fn bare_phone(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let text = bytes.get(span.clone())?;
    if !text.iter().all(u8::is_ascii_digit) || !numeric_boundaries(bytes, &span) {
        return None;
    }
    let d = digits(text);
    let north_american = |d: &[u8]| {
        d.len() == 10 && d.first().is_some_and(|&a| a >= 2) && d.get(3).is_some_and(|&e| e >= 2)
    };
    let shaped = match d.as_slice() {
        [1, rest @ ..] => north_american(rest),
        [0, first, ..] => *first != 0 && (10..=11).contains(&d.len()),
        d => north_american(d),
    };
    shaped.then_some(span)
}

/// A payment card number: 13 to 19 digits in a usual grouping, a real issuer prefix, a valid Luhn sum.
///
/// The candidate regex may take one digit group too many (`4111 1111 1111 1111 0`), so shorter
/// groupings of the same candidate are tried, longest first.
pub(super) fn credit_card(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let mut end = span.end;
    loop {
        let candidate = span.start..end;
        if let Some(found) = credit_card_exact(bytes, candidate) {
            return Some(found);
        }
        let text = bytes.get(span.start..end)?;
        let last_separator = text.iter().rposition(|b| !b.is_ascii_digit())?;
        if text
            .iter()
            .take(last_separator)
            .filter(|b| b.is_ascii_digit())
            .count()
            < 13
        {
            return None;
        }
        end = span.start + last_separator;
    }
}

fn credit_card_exact(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    let text = bytes.get(span.clone())?;
    if !numeric_boundaries(bytes, &span) {
        return None;
    }
    let separator = consistent_separator(text)?;
    if let Some(sep) = separator {
        let groups: Vec<usize> = text.split(|&b| b == sep).map(<[u8]>::len).collect();
        let usual = match groups.as_slice() {
            [4, 6, 4 | 5] => true,
            [4, rest @ ..] => match rest.split_last() {
                Some((last, middle)) => {
                    !middle.is_empty() && middle.iter().all(|&g| g == 4) && (1..=4).contains(last)
                }
                None => false,
            },
            _ => false,
        };
        if !usual {
            return None;
        }
    }
    let d = digits(text);
    (issuer_accepts(&d) && luhn(&d)).then_some(span)
}

/// Whether the issuer identification number (the leading digits) belongs to a card network that issues
/// numbers of this length.
fn issuer_accepts(d: &[u8]) -> bool {
    let len = d.len();
    let prefix = |n: usize| d.get(..n).map_or(0, number);
    let (p1, p2, p3, p4, p6) = (prefix(1), prefix(2), prefix(3), prefix(4), prefix(6));
    let visa = p1 == 4 && matches!(len, 13 | 16 | 19);
    let mastercard = ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16;
    let amex = matches!(p2, 34 | 37) && len == 15;
    let discover =
        (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || (622_126..=622_925).contains(&p6))
            && (16..=19).contains(&len);
    let diners = ((300..=305).contains(&p3) || p4 == 3095 || matches!(p2, 36 | 38 | 39))
        && (14..=19).contains(&len);
    let jcb = (3528..=3589).contains(&p4) && (16..=19).contains(&len);
    let unionpay = p2 == 62 && (16..=19).contains(&len);
    let maestro = (p2 == 50 || (56..=69).contains(&p2)) && (13..=19).contains(&len);
    let mir = (2200..=2204).contains(&p4) && (16..=19).contains(&len);
    let rupay = matches!(p2, 60 | 65 | 81 | 82) && len == 16;
    visa || mastercard || amex || discover || diners || jcb || unionpay || maestro || mir || rupay
}

/// The Luhn checksum.
pub(super) fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let doubled = x * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                x
            }
        })
        .sum();
    !d.is_empty() && sum.is_multiple_of(10)
}

/// Whether `b` may be part of an email's local part.
pub(super) fn is_local_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// An email address: a sane local part and a domain whose suffix is on the public suffix list.
pub(super) fn email(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    // A local-part character before the match means the real local part is longer than 64 bytes.
    if !email_left_ok(bytes, span.start) {
        return None;
    }
    let text = bytes.get(span.clone())?;
    let at_sign = text.iter().position(|&b| b == b'@')?;
    let (local, domain) = (text.get(..at_sign)?, text.get(at_sign + 1..)?);
    // Leading dots are punctuation before the address, trailing dots and hyphens after it.
    let lead = local.iter().take_while(|&&b| b == b'.').count();
    let local = local.get(lead..)?;
    let trail = domain
        .iter()
        .rev()
        .take_while(|&&b| b == b'.' || b == b'-')
        .count();
    let domain = domain.get(..domain.len() - trail)?;
    // The regex stops at 253 domain bytes; more domain characters after it mean an overlong domain.
    if trail == 0 && at(bytes, span.end).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let local_ok =
        !local.is_empty() && local.last() != Some(&b'.') && !local.windows(2).any(|w| w == b"..");
    let labels_ok = domain.split(|&b| b == b'.').all(|label| {
        (1..=63).contains(&label.len())
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    });
    if !local_ok || !labels_ok || !domain.contains(&b'.') {
        return None;
    }
    // Most addresses are written in lower case already, and need no copy.
    let lower = match domain.iter().any(u8::is_ascii_uppercase) {
        true => Cow::Owned(domain.to_ascii_lowercase()),
        false => Cow::Borrowed(domain),
    };
    // The suffix, not the registrable domain: a domain that is itself a public suffix (`ru.net`,
    // `co.uk`) has no registrable part, and an address there is still an address to protect.
    let known = psl::suffix(&lower).is_some_and(|suffix| suffix.is_known());
    let private = lower
        .rsplit(|&b| b == b'.')
        .next()
        .is_some_and(|tld| PRIVATE_TLDS.contains(&tld));
    (known || private).then_some(span.start + lead..span.end - trail)
}

/// Top-level names outside the public suffix list under which organisations still run mail: the
/// special-use names (RFC 2606, RFC 6761, RFC 6762), ICANN's private-use `.internal`, and the names
/// intranets commonly use. An address at `bob@corp.internal` is a person's address all the same.
const PRIVATE_TLDS: [&[u8]; 10] = [
    b"example",
    b"test",
    b"invalid",
    b"local",
    b"internal",
    b"corp",
    b"home",
    b"lan",
    b"intranet",
    b"localdomain",
];

/// Words that make the dotted number after them a version, not an address: `version 10.4.2.1`,
/// `Release: 2.0.1.3`, `build=1.2.3.4` (a `v` glued to it, `v10.4.2.1`, is a word already).
const VERSION_WORDS: [&[u8]; 4] = [b"version", b"ver", b"release", b"build"];

/// Words that make the national number after them (trunk `0`, no country code) an identifier, not
/// a phone number: `order 08814-71071`, `Tracking: 0191 1525 44`, `ticket #020 7946 0958`.
const IDENTIFIER_WORDS: [&[u8]; 10] = [
    b"order",
    b"tracking",
    b"invoice",
    b"ticket",
    b"receipt",
    b"sku",
    b"serial",
    b"isbn",
    b"case",
    b"po",
];

/// Whether the word before `start`, across blanks and one `:`, `=` or `#`, is one of `words`
/// (ASCII, any case, at most [`LONGEST_WORD`] letters). It looks at most a few bytes back, whatever
/// the text.
fn after_word(bytes: &[u8], start: usize, words: &[&[u8]]) -> bool {
    const MAX_BLANKS: usize = 8;
    let Some(head) = bytes.get(..start) else {
        return false;
    };
    // At most MAX_BLANKS blanks are dropped: after more, no word is found.
    fn trim(mut head: &[u8]) -> &[u8] {
        for _ in 0..MAX_BLANKS {
            match head.split_last() {
                Some((b' ' | b'\t', rest)) => head = rest,
                _ => break,
            }
        }
        head
    }
    let mut head = trim(head);
    if let Some((b':' | b'=' | b'#', rest)) = head.split_last() {
        head = trim(rest);
    }
    let letters = head
        .iter()
        .rev()
        .take(LONGEST_WORD + 1)
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    letters <= LONGEST_WORD
        && head
            .get(head.len() - letters..)
            .is_some_and(|word| words.iter().any(|w| word.eq_ignore_ascii_case(w)))
}

/// The longest word of [`VERSION_WORDS`] and [`IDENTIFIER_WORDS`] (`tracking`).
const LONGEST_WORD: usize = 8;

/// An IPv4 address, optionally with a `/prefix`, whose octets are at most 255, unless a word before it
/// says it is a version.
pub(super) fn ipv4(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    if !ipv4_left_ok(bytes, span.start)
        || !numeric_boundaries(bytes, &span)
        || after_word(bytes, span.start, &VERSION_WORDS)
    {
        return None;
    }
    let text = bytes.get(span.clone())?;
    let (address, prefix) = match text.iter().position(|&b| b == b'/') {
        Some(slash) => (text.get(..slash)?, Some(text.get(slash + 1..)?)),
        None => (text, None),
    };
    let octets_ok = address
        .split(|&b| b == b'.')
        .all(|octet| number(&digits(octet)) <= 255);
    let prefix_ok = prefix.is_none_or(|p| number(&digits(p)) <= 32);
    (octets_ok && prefix_ok).then_some(span)
}

/// An IPv6 address (full, compressed or with an embedded IPv4 tail) with at least a few groups, so that
/// `a::b` in source code or `10:30:00` in a timestamp does not count.
pub(super) fn ipv6(bytes: &[u8], span: Range<usize>) -> Option<Range<usize>> {
    if !ipv6_left_ok(bytes, span.start) {
        return None;
    }
    let text = bytes.get(span.clone())?;
    let mut end = text.len() - text.iter().rev().take_while(|&&b| b == b'.').count();
    let trimmed = text.get(..end)?;
    if trimmed.ends_with(b":") && !trimmed.ends_with(b"::") {
        end -= 1;
    }
    let candidate = text.get(..end)?;
    if at(bytes, span.start + end).is_some_and(|b| is_word(b) || (b == b':' && end == text.len())) {
        return None;
    }
    let address: Ipv6Addr = std::str::from_utf8(candidate).ok()?.parse().ok()?;
    let groups = candidate
        .split(|&b| b == b':')
        .filter(|g| !g.is_empty())
        .count();
    let has_digit = candidate.iter().any(u8::is_ascii_digit);
    let enough =
        groups >= 3 || (candidate.windows(2).any(|w| w == b"::") && groups >= 2 && has_digit);
    (enough && !address.is_unspecified() && !address.is_loopback())
        .then_some(span.start..span.start + end)
}

/// The phone number shapes the scanner looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PhoneShape {
    /// `+CC …` or `00CC …`.
    International,
    /// North American `(NXX) NXX-XXXX` and its variants.
    NorthAmerican,
    /// A national number with a trunk `0`: `020 7946 0958`, `06 12 34 56 78`.
    National,
}

/// A phone number of `shape` with a plausible number of digits and the separators of a written
/// number. A number starting with a digit `0` (a national number, or an international one written
/// `00…`) is not one when it is the tail of a longer grouped number (`9400 1234 0191 1525 44`); a
/// national number is not one after a word that labels it an identifier (`order 08814-71071`).
pub(super) fn phone(bytes: &[u8], span: Range<usize>, shape: PhoneShape) -> Option<Range<usize>> {
    if !phone_left_ok(bytes, span.start) {
        return None;
    }
    let continues_a_number = matches!(before(bytes, span.start), Some(b' ' | b'-' | b'.'))
        && span
            .start
            .checked_sub(2)
            .and_then(|i| at(bytes, i))
            .is_some_and(|b| b.is_ascii_digit());
    if at(bytes, span.start) == Some(b'0') && continues_a_number {
        return None;
    }
    if shape == PhoneShape::National && after_word(bytes, span.start, &IDENTIFIER_WORDS) {
        return None;
    }
    let right_ok = |end: usize| match at(bytes, end) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'.' | b'-' | b'/' | b':') => !at(bytes, end + 1).is_some_and(|b| b.is_ascii_digit()),
        Some(_) => true,
    };
    // The pattern is greedy: when its last group runs into a word (`+44 20 7946 0958 00A`), the number
    // may still end at an earlier separator.
    let mut end = span.end;
    loop {
        let candidate = span.start..end;
        if right_ok(end) && phone_shape(bytes.get(candidate.clone())?, shape) {
            return Some(candidate);
        }
        end = bytes
            .get(span.start + 1..end)?
            .iter()
            .rposition(|b| matches!(b, b' ' | b'.' | b'-'))
            .map(|at| span.start + 1 + at)?;
    }
}

/// Whether a candidate's digits and separators fit the phone shape it was found as.
fn phone_shape(text: &[u8], shape: PhoneShape) -> bool {
    let count = text.iter().filter(|b| b.is_ascii_digit()).count();
    let separated = text
        .iter()
        .any(|b| matches!(b, b' ' | b'.' | b'-' | b'(' | b')'));
    // Groups separated only by dots and of at most three digits read as an IP address or a version.
    let dotted_only = text
        .iter()
        .all(|b| b.is_ascii_digit() || *b == b'.' || *b == b'+');
    match shape {
        PhoneShape::International if text.first() == Some(&b'+') => (8..=15).contains(&count),
        PhoneShape::International => separated && (8..=15).contains(&count.saturating_sub(2)),
        PhoneShape::NorthAmerican => count == 10 || count == 11,
        PhoneShape::National => separated && (10..=11).contains(&count) && !dotted_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(text: &str) -> Range<usize> {
        0..text.len()
    }

    #[test]
    fn luhn_matches_known_numbers() {
        for valid in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "79927398713",
        ] {
            assert!(luhn(&digits(valid.as_bytes())), "{valid}");
        }
        for invalid in ["4111111111111112", "79927398710", "1234567812345678"] {
            assert!(!luhn(&digits(invalid.as_bytes())), "{invalid}");
        }
    }

    #[test]
    fn ssn_rules() {
        for valid in [
            "078-05-1121",
            "536-22-1234",
            "536 22 1234",
            "536.22.1234",
            "899-99-9998",
        ] {
            assert!(ssn(valid.as_bytes(), whole(valid)).is_some(), "{valid}");
        }
        for invalid in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "111-11-1111",
            "123-45-6789",
            "078-05-1120",
            "219-09-9999",
            "536-22 1234",
            "536.22-1234",
        ] {
            assert!(
                ssn(invalid.as_bytes(), whole(invalid)).is_none(),
                "{invalid}"
            );
        }
    }

    #[test]
    fn card_issuers_and_groupings() {
        for valid in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2221000000000009",
            "2720999999999996",
            "378282246310005",
            "3782 822463 10005",
            "6011111111111117",
            "3530111333300000",
            "36227206271667",
            "4222222222222",
        ] {
            assert!(
                credit_card(valid.as_bytes(), whole(valid)).is_some(),
                "{valid}"
            );
        }
        for invalid in [
            "4111111111111112",
            "4111 1111-1111 1111",
            "41111 11111 11111 1",
            "2721000000000004",
            "1234567812345670",
            "0000000000000000",
            "9111111111111111",
        ] {
            assert!(
                credit_card(invalid.as_bytes(), whole(invalid)).is_none(),
                "{invalid}"
            );
        }
    }

    #[test]
    fn email_suffixes() {
        for valid in [
            "john@example.com",
            "a.b+tag@mail.example.co.uk",
            "x@sub.domain.io",
            "UPPER@EXAMPLE.ORG",
            // The whole domain is a public suffix (found by the planted-value property test).
            "a@ru.net",
            "b@co.uk",
            // Private and special-use names (found by the log test: `bob@corp.example`).
            "bob@corp.example",
            "ops@mail.corp.internal",
            "it@printer.local",
        ] {
            assert_eq!(
                email(valid.as_bytes(), whole(valid)),
                Some(whole(valid)),
                "{valid}"
            );
        }
        for invalid in [
            "john@localhost.invalidtld",
            "icon@2x.pngz",
            "a..b@example.com",
            "a.@example.com",
            "x@-bad.com",
        ] {
            assert!(
                email(invalid.as_bytes(), whole(invalid)).is_none(),
                "{invalid}"
            );
        }
        let dotted = "..john@example.com.";
        assert_eq!(email(dotted.as_bytes(), whole(dotted)), Some(2..18));
    }

    #[test]
    fn ip_addresses() {
        for valid in ["192.168.1.1", "10.0.0.0/8", "255.255.255.255"] {
            assert!(ipv4(valid.as_bytes(), whole(valid)).is_some(), "{valid}");
        }
        for invalid in ["256.1.1.1", "1.2.3.999", "10.0.0.0/33"] {
            assert!(
                ipv4(invalid.as_bytes(), whole(invalid)).is_none(),
                "{invalid}"
            );
        }
        // A version is not an address; the same number after another word is.
        for (text, address) in [
            ("upgrade to version 10.4.2.1 today", false),
            ("Version: 10.4.2.1", false),
            ("RELEASE 2.0.1.3", false),
            ("build=1.2.3.4", false),
            ("ver 10.4.2.1", false),
            ("v10.4.2.1", false),
            ("server 10.4.2.1", true),
            ("conversion 10.4.2.1", true),
            ("prebuild 10.4.2.1", true),
            ("versions 10.4.2.1", true),
            ("xversion 10.4.2.1", true),
            ("build   =   1.2.3.4", false),
            ("10.4.2.1", true),
            (": 10.4.2.1", true),
        ] {
            let start = text.find(|c: char| c.is_ascii_digit()).unwrap();
            let end = text[start..]
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .map_or(text.len(), |i| start + i);
            assert_eq!(
                ipv4(text.as_bytes(), start..end).is_some(),
                address,
                "{text}"
            );
        }
        for valid in [
            "2001:db8::8a2e:370:7334",
            "fe80::1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "::ffff:192.0.2.1",
        ] {
            assert!(ipv6(valid.as_bytes(), whole(valid)).is_some(), "{valid}");
        }
        for invalid in [
            "10:30:00",
            "a::b",
            "::1",
            "::",
            "00:1A:2B:3C:4D:5E",
            "std::vec",
        ] {
            assert!(
                ipv6(invalid.as_bytes(), whole(invalid)).is_none(),
                "{invalid}"
            );
        }
    }
}
