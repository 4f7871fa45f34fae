//! `content_large_documents`, `content_structured_data`, `content_source_code`: what a message may carry.
//!
//! ```json
//! {"type": "content_large_documents", "max_bytes": 100000}
//! {"type": "content_structured_data", "max_rows": 500, "direction": "response"}
//! {"type": "content_source_code", "max_lines": 200}
//! ```
//!
//! Each refuses (BLOCK) a message whose `params`, `result` or `error` holds more than it allows:
//! - `content_large_documents`: a string (a text, a base64 blob, an argument) longer than `max_bytes`
//!   bytes; with `"measure": "message"`, the whole serialised message instead;
//! - `content_structured_data`: a table with more than `max_rows` data rows: CSV or TSV lines, a Markdown
//!   table, or a JSON array of records (objects or rows), including JSON held in a text item;
//! - `content_source_code`: a code block of more than `max_lines` lines, fenced (```` ``` ```` or `~~~`)
//!   or recognised as code line by line.
//!
//! `direction` is `request`, `response` or `both` (the default).
//!
//! A pipeline runs every `content_*` entry of a policy in one stage, [`ContentLimits`], at the place of
//! the first: one walk of the payload measures what each entry needs (and parses JSON held in a text
//! once), and each entry still gets its own trace entry, at its own level.

use std::num::NonZeroUsize;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use async_trait::async_trait;

use crate::guardrail::{GuardrailContext, GuardrailResult, SyncGuardrail};
use crate::guardrails::{Directions, EMBEDDED_JSON_DEPTH};
use crate::message::{JsonRef, Part};
use crate::policy::PolicyLevel;
use crate::trace::Trace;

/// What `content_large_documents` measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// The longest string in the payload.
    #[default]
    Document,
    /// The whole message as sent on the wire.
    Message,
}

/// Settings of `content_large_documents`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LargeDocumentsSettings {
    /// The largest size allowed, in bytes.
    pub max_bytes: NonZeroUsize,
    /// What is measured.
    #[serde(default)]
    pub measure: Measure,
    /// Which messages are inspected.
    #[serde(default)]
    pub direction: Directions,
}

/// Settings of `content_structured_data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructuredDataSettings {
    /// The most data rows a table may have.
    pub max_rows: NonZeroUsize,
    /// Which messages are inspected.
    #[serde(default)]
    pub direction: Directions,
}

/// Settings of `content_source_code`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCodeSettings {
    /// The most lines a code block may have.
    pub max_lines: NonZeroUsize,
    /// Which messages are inspected.
    #[serde(default)]
    pub direction: Directions,
}

/// The `content_large_documents` guardrail.
#[derive(Clone, Debug)]
pub struct LargeDocuments(pub LargeDocumentsSettings);

/// The `content_structured_data` guardrail.
#[derive(Clone, Debug)]
pub struct StructuredData(pub StructuredDataSettings);

/// The `content_source_code` guardrail.
#[derive(Clone, Debug)]
pub struct SourceCode(pub SourceCodeSettings);

impl SyncGuardrail for LargeDocuments {
    fn type_name(&self) -> &str {
        "content_large_documents"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.0.direction.includes(ctx.direction) && ctx.message.payload_member().is_some()
    }

    fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        let size = match self.0.measure {
            Measure::Message => ctx.message.to_bytes().len(),
            Measure::Document => ctx.message.payload_view().map_or(0, longest_string),
        };
        self.decide(size)
    }
}

impl LargeDocuments {
    /// The decision on a message whose measure (the longest string, or the message) is `size`.
    fn decide(&self, size: usize) -> GuardrailResult {
        let max = self.0.max_bytes.get();
        let what = match self.0.measure {
            Measure::Message => "message",
            Measure::Document => "document",
        };
        if size > max {
            GuardrailResult::block(
                "content_too_large",
                format!("a {size}-byte {what} exceeds max_bytes {max} (content_large_documents)"),
            )
        } else {
            GuardrailResult::Allow
        }
    }
}

fn longest_string(value: JsonRef<'_>) -> usize {
    most(&value, |part| match part {
        Part::Name(s) | Part::String(s) => s.len(),
        Part::Number(_) | Part::Array(_) => 0,
    })
}

/// The largest `measure` of any part of `value`.
fn most<'a>(value: &JsonRef<'a>, mut measure: impl FnMut(Part<'a>) -> usize) -> usize {
    let mut best = 0;
    let _: ControlFlow<()> = value.walk(&mut |part| {
        best = best.max(measure(part));
        ControlFlow::Continue(())
    });
    best
}

impl SyncGuardrail for StructuredData {
    fn type_name(&self) -> &str {
        "content_structured_data"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.0.direction.includes(ctx.direction) && ctx.message.payload_member().is_some()
    }

    fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        self.decide(ctx.message.payload_view().map_or(0, |p| most_rows(p, 0)))
    }
}

impl StructuredData {
    /// The decision on a payload whose largest table has `rows` rows.
    fn decide(&self, rows: usize) -> GuardrailResult {
        let max = self.0.max_rows.get();
        if rows > max {
            GuardrailResult::block(
                "structured_data_limit",
                format!("a table of {rows} rows exceeds max_rows {max} (content_structured_data)"),
            )
        } else {
            GuardrailResult::Allow
        }
    }
}

/// The most data rows of any table in `value`.
fn most_rows(value: JsonRef<'_>, depth: u8) -> usize {
    most(&value, |part| match part {
        Part::String(text) => match embedded_json(text, depth) {
            Some(inner) => most_rows(JsonRef::from(&inner), depth + 1),
            None => text_rows(text),
        },
        Part::Array(items) => {
            let records = items.len() > 0
                && (items.clone().all(|v| v.is_object()) || items.clone().all(|v| v.is_array()));
            if records { items.len() } else { 0 }
        }
        Part::Name(_) | Part::Number(_) => 0,
    })
}

/// The JSON document `text` holds, unless `depth` documents deep already.
fn embedded_json(text: &str, depth: u8) -> Option<Value> {
    (depth < EMBEDDED_JSON_DEPTH)
        .then(|| super::embedded_json(text))
        .flatten()
}

/// The most data rows of a Markdown table or a delimited (CSV, TSV, semicolon) block in `text`.
fn text_rows(text: &str) -> usize {
    if !has_line_break(text) {
        return 0;
    }
    markdown_rows(text).max(delimited_rows(text))
}

/// Whether `text` has more than one line: most texts do not, and are passed over at memchr's speed.
fn has_line_break(text: &str) -> bool {
    memchr::memchr(b'\n', text.as_bytes()).is_some()
}

fn is_table_separator(line: &str) -> bool {
    let cells: Vec<&str> = line
        .trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect();
    line.contains('-')
        && cells.iter().all(|c| {
            let dashes = c.trim_matches(':');
            !dashes.is_empty() && dashes.bytes().all(|b| b == b'-')
        })
}

fn markdown_rows(text: &str) -> usize {
    let mut best = 0;
    let mut rows: Option<usize> = None;
    for line in text.lines() {
        match rows.as_mut() {
            Some(n) if line.contains('|') && !line.trim().is_empty() => *n += 1,
            Some(n) => {
                best = best.max(*n);
                rows = None;
            }
            None if line.contains('|') && is_table_separator(line) => rows = Some(0),
            None => {}
        }
    }
    best.max(rows.unwrap_or(0))
}

fn delimited_rows(text: &str) -> usize {
    let mut best = 0;
    for delimiter in [',', '\t', ';'] {
        let mut run = 0usize;
        let mut fields = 0usize;
        for line in text.lines() {
            let count = line.matches(delimiter).count();
            if count > 0 && count == fields {
                run += 1;
            } else {
                best = best.max(run.saturating_sub(1));
                run = usize::from(count > 0);
                fields = count;
            }
        }
        best = best.max(run.saturating_sub(1));
    }
    best
}

impl SyncGuardrail for SourceCode {
    fn type_name(&self) -> &str {
        "content_source_code"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.0.direction.includes(ctx.direction) && ctx.message.payload_member().is_some()
    }

    fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        self.decide(ctx.message.payload_view().map_or(0, |p| longest_code(p, 0)))
    }
}

impl SourceCode {
    /// The decision on a payload whose longest code block has `lines` lines.
    fn decide(&self, lines: usize) -> GuardrailResult {
        let max = self.0.max_lines.get();
        if lines > max {
            GuardrailResult::block(
                "source_code_limit",
                format!(
                    "a code block of {lines} lines exceeds max_lines {max} (content_source_code)"
                ),
            )
        } else {
            GuardrailResult::Allow
        }
    }
}

fn longest_code(value: JsonRef<'_>, depth: u8) -> usize {
    most(&value, |part| match part {
        Part::String(text) if has_line_break(text) => match embedded_json(text, depth) {
            Some(inner) => longest_code(JsonRef::from(&inner), depth + 1),
            None => fenced_lines(text).max(unfenced_lines(text)),
        },
        _ => 0,
    })
}

/// The longest fenced block (an unclosed fence runs to the end of the text).
fn fenced_lines(text: &str) -> usize {
    let mut best = 0;
    let mut open: Option<(&str, usize)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let fence = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        match (open.as_mut(), fence) {
            (Some((marker, _)), Some(f)) if *marker == f => {
                best = best.max(open.map_or(0, |(_, n)| n));
                open = None;
            }
            (Some((_, n)), _) => *n += 1,
            (None, Some(f)) => open = Some((f, 0)),
            (None, None) => {}
        }
    }
    best.max(open.map_or(0, |(_, n)| n))
}

/// Line starts that mark code by themselves.
const CODE_KEYWORDS: [&str; 22] = [
    "def ",
    "class ",
    "fn ",
    "pub fn ",
    "pub struct ",
    "pub enum ",
    "function ",
    "import ",
    "#include ",
    "#include<",
    "package ",
    "impl ",
    "struct ",
    "#!/",
    "async def ",
    "async fn ",
    "public class ",
    "public static ",
    "private static ",
    "from __future__",
    "using namespace ",
    "#define ",
];

/// Line starts that mark code when the line also has code punctuation.
const CODE_STARTS: [&str; 22] = [
    "return", "let ", "const ", "var ", "if ", "if(", "for ", "for(", "while ", "while(", "} else",
    "elif ", "else:", "try:", "except", "await ", "use ", "enum ", "@", "//", "/*", "switch",
];

/// Whether a line reads as code on its own.
fn looks_like_code(line: &str) -> bool {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return false;
    }
    let ends = [";", "{", "}", "};", "});", ");", "=>", "):", ") {"]
        .iter()
        .any(|e| trimmed.ends_with(e));
    let keyword = CODE_KEYWORDS.iter().any(|k| trimmed.starts_with(k));
    let punctuated = trimmed.ends_with(':') || trimmed.contains(['(', '=', '{', ';']);
    ends || keyword || CODE_STARTS.iter().any(|s| trimmed.starts_with(s)) && punctuated
}

/// The longest run of lines that read as code, with indented lines and single blank lines inside a run
/// counted as part of it.
fn unfenced_lines(text: &str) -> usize {
    let mut best = 0;
    let mut run = 0usize;
    let mut blanks = 0usize;
    for line in text.lines() {
        if line.trim().is_empty() {
            blanks += 1;
            if blanks > 1 {
                best = best.max(run);
                run = 0;
            }
            continue;
        }
        let continues = run > 0 && line.starts_with([' ', '\t']);
        if looks_like_code(line) || continues {
            run += 1;
        } else {
            best = best.max(run);
            run = 0;
        }
        blanks = 0;
    }
    best.max(run)
}

/// One `content_*` entry of a policy.
#[derive(Clone, Debug)]
pub enum ContentLimit {
    /// `content_large_documents`.
    LargeDocuments(LargeDocuments),
    /// `content_structured_data`.
    StructuredData(StructuredData),
    /// `content_source_code`.
    SourceCode(SourceCode),
}

impl ContentLimit {
    fn guardrail(&self) -> &dyn SyncGuardrail {
        match self {
            Self::LargeDocuments(g) => g,
            Self::StructuredData(g) => g,
            Self::SourceCode(g) => g,
        }
    }
}

/// Every `content_*` entry of a policy, each with the level its settings came from, decided over
/// one walk of the payload.
#[derive(Debug)]
pub struct ContentLimits {
    limits: Vec<(ContentLimit, PolicyLevel)>,
}

/// What a walk measures, where asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Measures {
    longest_string: usize,
    rows: usize,
    code_lines: usize,
}

/// Which measures a walk takes.
#[derive(Clone, Copy, Debug)]
struct Wanted {
    strings: bool,
    rows: bool,
    code: bool,
}

impl ContentLimits {
    /// The stage of these entries, run in this order.
    pub fn new(limits: Vec<(ContentLimit, PolicyLevel)>) -> Self {
        Self { limits }
    }

    /// Decides every entry that applies, recording each in `trace` until one blocks.
    fn decide(&self, ctx: &GuardrailContext<'_>, mut trace: Option<&mut Trace>) -> GuardrailResult {
        let applying = || {
            self.limits
                .iter()
                .filter(|(limit, _)| limit.guardrail().applies_to(ctx))
        };
        let wanted = applying().fold(
            Wanted {
                strings: false,
                rows: false,
                code: false,
            },
            |wanted, (limit, _)| match limit {
                ContentLimit::LargeDocuments(g) => Wanted {
                    strings: wanted.strings || g.0.measure == Measure::Document,
                    ..wanted
                },
                ContentLimit::StructuredData(_) => Wanted {
                    rows: true,
                    ..wanted
                },
                ContentLimit::SourceCode(_) => Wanted {
                    code: true,
                    ..wanted
                },
            },
        );
        let mut measures = Measures::default();
        if let Some(payload) = ctx.message.payload_view() {
            measure(&payload, 0, wanted, &mut measures);
        }
        for (limit, level) in applying() {
            let result = match limit {
                ContentLimit::LargeDocuments(g) => g.decide(match g.0.measure {
                    Measure::Document => measures.longest_string,
                    Measure::Message => ctx.message.to_bytes().len(),
                }),
                ContentLimit::StructuredData(g) => g.decide(measures.rows),
                ContentLimit::SourceCode(g) => g.decide(measures.code_lines),
            };
            if let Some(trace) = trace.as_deref_mut() {
                trace.record(limit.guardrail().type_name().to_owned(), *level, &result);
            }
            if !matches!(result, GuardrailResult::Allow) {
                return result;
            }
        }
        GuardrailResult::Allow
    }
}

/// Takes the `wanted` measures of `value`, `depth` documents deep in JSON held in texts: the
/// longest string (of the payload itself, not of JSON in it), the most rows of a table, the most
/// lines of a code block; each as its own guardrail's walk would, in one walk.
fn measure(value: &JsonRef<'_>, depth: u8, wanted: Wanted, out: &mut Measures) {
    let _: ControlFlow<()> = value.walk(&mut |part| {
        match part {
            Part::Name(name) if wanted.strings => {
                out.longest_string = out.longest_string.max(name.len());
            }
            Part::String(text) => {
                if wanted.strings {
                    out.longest_string = out.longest_string.max(text.len());
                }
                let lines = wanted.code && has_line_break(text);
                if wanted.rows || lines {
                    match embedded_json(text, depth) {
                        Some(inner) => {
                            let inner_wanted = Wanted {
                                strings: false,
                                rows: wanted.rows,
                                code: lines,
                            };
                            measure(&JsonRef::from(&inner), depth + 1, inner_wanted, out);
                        }
                        None => {
                            if wanted.rows {
                                out.rows = out.rows.max(text_rows(text));
                            }
                            if lines {
                                out.code_lines = out
                                    .code_lines
                                    .max(fenced_lines(text).max(unfenced_lines(text)));
                            }
                        }
                    }
                }
            }
            Part::Array(items) if wanted.rows => {
                let records = items.len() > 0
                    && (items.clone().all(|v| v.is_object())
                        || items.clone().all(|v| v.is_array()));
                if records {
                    out.rows = out.rows.max(items.len());
                }
            }
            Part::Name(_) | Part::Array(_) | Part::Number(_) => {}
        }
        ControlFlow::Continue(())
    });
}

#[async_trait]
impl crate::guardrail::Guardrail for ContentLimits {
    fn type_name(&self) -> &str {
        "content"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        self.limits
            .iter()
            .any(|(limit, _)| limit.guardrail().applies_to(ctx))
    }

    async fn evaluate(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        self.decide(ctx, None)
    }

    async fn evaluate_traced(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> GuardrailResult {
        self.decide(ctx, Some(trace))
    }

    fn evaluate_now(
        &self,
        ctx: &GuardrailContext<'_>,
        _level: PolicyLevel,
        trace: &mut Trace,
    ) -> Option<GuardrailResult> {
        Some(self.decide(ctx, Some(trace)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, Identity, Message};
    use serde_json::json;

    /// Decides on a response holding `text`, as parsed from the wire (read from its tape) and as built
    /// from a JSON value, and checks that both decide alike.
    fn decide(guardrail: &dyn SyncGuardrail, text: &str) -> GuardrailResult {
        let value = json!({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}});
        let parsed = Message::parse(value.to_string()).unwrap();
        let built = Message::from_value(value).unwrap();
        let [from_wire, from_value] = [&parsed, &built].map(|message| {
            let identity = Identity::new_random();
            let ctx = GuardrailContext::new(Direction::Response, &identity, message);
            assert!(guardrail.applies_to(&ctx));
            guardrail.evaluate_sync(&ctx)
        });
        assert_eq!(
            from_wire, from_value,
            "a parsed and a built message decide alike"
        );
        from_value
    }

    fn code(result: &GuardrailResult) -> Option<&str> {
        match result {
            GuardrailResult::Block { code, .. } => Some(code),
            _ => None,
        }
    }

    fn settings<T: serde::de::DeserializeOwned>(v: Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn large_documents_by_longest_string_or_whole_message() {
        let g = LargeDocuments(settings(json!({"max_bytes": 10})));
        assert_eq!(decide(&g, "0123456789"), GuardrailResult::Allow);
        let GuardrailResult::Block { reason, .. } = decide(&g, "0123456789a") else {
            panic!()
        };
        assert_eq!(
            reason,
            "a 11-byte document exceeds max_bytes 10 (content_large_documents)"
        );
        assert_eq!(
            decide(&g, "é".repeat(6).as_str()).clone(),
            GuardrailResult::block(
                "content_too_large",
                "a 12-byte document exceeds max_bytes 10 (content_large_documents)"
            )
        );
        let whole = LargeDocuments(settings(json!({"max_bytes": 60, "measure": "message"})));
        assert_eq!(code(&decide(&whole, "short")), Some("content_too_large"));
    }

    #[test]
    fn direction_is_respected() {
        let g = LargeDocuments(settings(json!({"max_bytes": 1, "direction": "request"})));
        let identity = Identity::new_random();
        let message =
            Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "result": {"text": "long"}}))
                .unwrap();
        assert!(!g.applies_to(&GuardrailContext::new(
            Direction::Response,
            &identity,
            &message
        )));
    }

    #[test]
    fn counts_csv_tsv_and_markdown_rows() {
        let g = StructuredData(settings(json!({"max_rows": 3})));
        let csv = |n: usize| {
            std::iter::once("name,email,age".to_owned())
                .chain((0..n).map(|i| format!("u{i},x,{i}")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(decide(&g, &csv(3)), GuardrailResult::Allow);
        assert_eq!(code(&decide(&g, &csv(4))), Some("structured_data_limit"));
        let tsv = "a\tb\n1\t2\n3\t4\n5\t6\n7\t8";
        assert_eq!(code(&decide(&g, tsv)), Some("structured_data_limit"));
        let md =
            "Results:\n\n| a | b |\n|---|:-:|\n| 1 | 2 |\n| 3 | 4 |\n| 5 | 6 |\n\nThat is all.";
        assert_eq!(decide(&g, md), GuardrailResult::Allow);
        let bigger = md.replace("| 5 | 6 |", "| 5 | 6 |\n| 7 | 8 |");
        let GuardrailResult::Block { reason, .. } = decide(&g, &bigger) else {
            panic!()
        };
        assert_eq!(
            reason,
            "a table of 4 rows exceeds max_rows 3 (content_structured_data)"
        );
    }

    #[test]
    fn counts_json_records_including_embedded_json() {
        let g = StructuredData(settings(json!({"max_rows": 2})));
        let records = json!([{"a": 1}, {"a": 2}, {"a": 3}]).to_string();
        assert_eq!(code(&decide(&g, &records)), Some("structured_data_limit"));
        let matrix = json!({"rows": [[1, 2], [3, 4], [5, 6]]}).to_string();
        assert_eq!(code(&decide(&g, &matrix)), Some("structured_data_limit"));
        let scalars = json!([1, 2, 3, 4]).to_string();
        assert_eq!(
            decide(&g, &scalars),
            GuardrailResult::Allow,
            "a list of numbers is not a table"
        );
    }

    #[test]
    fn prose_with_commas_is_not_a_table() {
        let g = StructuredData(settings(json!({"max_rows": 2})));
        let prose = "Hello, world.\nThis line has two, no, three, commas.\nAnd this, one.\nFine.";
        assert_eq!(decide(&g, prose), GuardrailResult::Allow);
    }

    #[test]
    fn counts_fenced_and_unfenced_code() {
        let g = SourceCode(settings(json!({"max_lines": 3})));
        let fenced = "Here:\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```\nDone.";
        assert_eq!(decide(&g, fenced), GuardrailResult::Allow);
        let longer = fenced.replace("}\n```", "}\n// end\n```");
        assert_eq!(code(&decide(&g, &longer)), Some("source_code_limit"));
        let unclosed = "~~~\na\nb\nc\nd";
        assert_eq!(code(&decide(&g, unclosed)), Some("source_code_limit"));
        let python = "import os\n\ndef main():\n    path = os.getcwd()\n    return path\n";
        let GuardrailResult::Block { reason, .. } = decide(&g, python) else {
            panic!()
        };
        assert_eq!(
            reason,
            "a code block of 4 lines exceeds max_lines 3 (content_source_code)"
        );
    }

    #[test]
    fn prose_is_not_code() {
        let g = SourceCode(settings(json!({"max_lines": 2})));
        let prose = "The weather is fine.\nWe went for a walk;\nthen we had lunch.\nFor dinner, pasta.\nIf it rains, we stay in.";
        assert_eq!(decide(&g, prose), GuardrailResult::Allow);
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(serde_json::from_value::<LargeDocumentsSettings>(json!({"max_bytes": 0})).is_err());
        assert!(serde_json::from_value::<LargeDocumentsSettings>(json!({})).is_err());
        assert!(
            serde_json::from_value::<StructuredDataSettings>(json!({"max_rows": 5, "extra": 1}))
                .is_err()
        );
        assert!(serde_json::from_value::<SourceCodeSettings>(json!({"max_lines": "ten"})).is_err());
    }

    /// Payloads with what the limits measure: tables, code, long strings, JSON inside strings.
    fn payload() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::String),
            "(\\| ?[a-z]{0,3} ?\\|\n){0,6}".prop_map(Value::String),
            "(```\n)?([a-z]+\\(\\);\n|fn x\\(\\) \\{\n|\\}\n){0,8}(```)?".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{0,8}", inner.clone()), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                inner.prop_map(|v| Value::String(v.to_string())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn a_parsed_payload_measures_as_its_json_value(result in payload()) {
            let value = json!({"jsonrpc": "2.0", "id": 1, "result": result});
            let parsed = Message::parse(value.to_string()).unwrap();
            let built = Message::from_value(value).unwrap();
            let (wire, json) = (parsed.payload_view().unwrap(), built.payload_view().unwrap());
            proptest::prop_assert_eq!(longest_string(wire.clone()), longest_string(json.clone()));
            proptest::prop_assert_eq!(most_rows(wire.clone(), 0), most_rows(json.clone(), 0));
            proptest::prop_assert_eq!(longest_code(wire, 0), longest_code(json, 0));
        }

        #[test]
        fn one_walk_measures_as_the_three_walks(result in payload()) {
            let value = json!({"jsonrpc": "2.0", "id": 1, "result": result});
            let parsed = Message::parse(value.to_string()).unwrap();
            let payload = parsed.payload_view().unwrap();
            let mut measures = Measures::default();
            let wanted = Wanted { strings: true, rows: true, code: true };
            measure(&payload, 0, wanted, &mut measures);
            proptest::prop_assert_eq!(measures, Measures {
                longest_string: longest_string(payload.clone()),
                rows: most_rows(payload.clone(), 0),
                code_lines: longest_code(payload, 0),
            });
        }
    }

    #[test]
    fn the_stage_records_each_entry_until_one_blocks() {
        let limits = ContentLimits::new(vec![
            (
                ContentLimit::LargeDocuments(LargeDocuments(settings(json!({"max_bytes": 1000})))),
                PolicyLevel::Organisation,
            ),
            (
                ContentLimit::SourceCode(SourceCode(settings(
                    json!({"max_lines": 2, "direction": "request"}),
                ))),
                PolicyLevel::Workspace,
            ),
            (
                ContentLimit::StructuredData(StructuredData(settings(json!({"max_rows": 2})))),
                PolicyLevel::Agent,
            ),
            (
                ContentLimit::SourceCode(SourceCode(settings(json!({"max_lines": 1})))),
                PolicyLevel::Agent,
            ),
        ]);
        let table = "a,b\n1,2\n3,4\n5,6";
        let message = Message::from_value(json!({"jsonrpc": "2.0", "id": 1,
            "result": {"content": [{"type": "text", "text": table}]}}))
        .unwrap();
        let identity = Identity::new_random();
        let ctx = GuardrailContext::new(Direction::Response, &identity, &message);
        let mut trace = Trace::new();
        let result = crate::guardrail::Guardrail::evaluate_now(
            &limits,
            &ctx,
            PolicyLevel::Organisation,
            &mut trace,
        );
        assert_eq!(code(&result.unwrap()), Some("structured_data_limit"));
        let entries: Vec<(&str, PolicyLevel)> = trace
            .entries()
            .iter()
            .map(|e| (&*e.guardrail, e.level))
            .collect();
        // The request-only entry does not apply; the last one never runs.
        assert_eq!(
            entries,
            [
                ("content_large_documents", PolicyLevel::Organisation),
                ("content_structured_data", PolicyLevel::Agent),
            ]
        );
    }
}
