//! The intermediary headers of protocol 2026-07-28 (SEP-2243): `Mcp-Method`, `Mcp-Name` and
//! `Mcp-Param-*` mirror parts of the body so that load balancers can route without parsing it.
//!
//! The gateway checks them against the body it received (a mismatch is HTTP 400 with JSON-RPC -32020),
//! and when a guardrail changes the body (a redacted argument, a redacted URI) it recomputes them from
//! the body it sends, so that the upstream's own check passes and no redacted value travels on in a
//! header. `Mcp-Param-*` names come from `x-mcp-header` annotations in the tool's input schema, which
//! the gateway does not need: a header mirrors the argument whose value it carries, so the arguments
//! holding that value before the pipeline are the ones to read again after it.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cerberus_core::{Message, methods};
use serde_json::Value;

const METHOD_HEADER: HeaderName = HeaderName::from_static("mcp-method");
const NAME_HEADER: HeaderName = HeaderName::from_static("mcp-name");
const PARAM_PREFIX: &str = "mcp-param-";
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// The mirrored headers of one request, checked against its body, and what each was read from.
#[derive(Debug, Default)]
pub(super) struct Mirrors {
    method: Option<HeaderValue>,
    name: Option<(HeaderValue, String)>,
    params: Vec<ParamMirror>,
}

/// One `Mcp-Param-*` header and the argument paths whose value it carries.
#[derive(Debug)]
struct ParamMirror {
    header: HeaderName,
    value: HeaderValue,
    paths: Vec<Vec<String>>,
}

impl Mirrors {
    /// Reads the mirrored headers of a single-message request; an error says which does not match.
    pub(super) fn read(headers: &HeaderMap, message: &Message) -> Result<Self, String> {
        let mut mirrors = Self::default();
        if let Some(value) = single(headers, &METHOD_HEADER)? {
            if value.to_str().ok() != message.method() {
                return Err("Mcp-Method does not match the body's method".into());
            }
            mirrors.method = Some(value.clone());
        }
        if let Some(value) = single(headers, &NAME_HEADER)? {
            let decoded = decode(value).ok_or("Mcp-Name is not validly encoded")?;
            if Some(decoded.as_str()) != mirrored_name(message) {
                return Err("Mcp-Name does not match the body".into());
            }
            mirrors.name = Some((value.clone(), decoded));
        }
        // The arguments as a JSON object are built only for a request that mirrors some.
        let mut arguments = None;
        for header in headers.keys() {
            if !header.as_str().starts_with(PARAM_PREFIX) {
                continue;
            }
            let Some(value) = single(headers, header)? else {
                continue;
            };
            let decoded =
                decode(value).ok_or_else(|| format!("{header} is not validly encoded"))?;
            let mut paths = Vec::new();
            if let Some(arguments) = *arguments.get_or_insert_with(|| message.arguments()) {
                paths_with_value(arguments, &decoded, &mut Vec::new(), &mut paths);
            }
            if paths.is_empty() {
                return Err(format!("{header} matches no argument of the body"));
            }
            mirrors.params.push(ParamMirror {
                header: header.clone(),
                value: value.clone(),
                paths,
            });
        }
        Ok(mirrors)
    }

    /// The mirrored headers for the upstream request that carries `sent`: the client's own when the
    /// body is unchanged, recomputed from `sent` when a guardrail changed it.
    pub(super) fn for_upstream(
        &self,
        sent: Option<&Message>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let mut out = Vec::with_capacity(2 + self.params.len());
        if let Some(method) = &self.method {
            out.push((METHOD_HEADER, method.clone()));
        }
        let changed = sent.filter(|m| m.is_modified());
        if let Some((value, decoded)) = &self.name {
            let value = match changed.and_then(mirrored_name) {
                Some(name) if name != decoded => encode(name)?,
                _ => value.clone(),
            };
            out.push((NAME_HEADER, value));
        }
        for param in &self.params {
            let Some(message) = changed else {
                out.push((param.header.clone(), param.value.clone()));
                continue;
            };
            let arguments = message.arguments();
            let mut values = param.paths.iter().map(|path| {
                arguments
                    .and_then(|a| value_at(a, path))
                    .and_then(primitive_text)
            });
            let first = values.next().flatten();
            if values.any(|other| other != first) {
                return Err(format!(
                    "a guardrail changed the arguments that {} mirrors in different ways",
                    param.header
                ));
            }
            // An argument a guardrail removed takes its header with it.
            if let Some(text) = first {
                out.push((param.header.clone(), encode(&text)?));
            }
        }
        Ok(out)
    }
}

/// The header's only value: a mirrored header given twice could route one way and dispatch another.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("{name} is given more than once"));
    }
    Ok(first)
}

/// What `Mcp-Name` mirrors for the body's method.
fn mirrored_name(message: &Message) -> Option<&str> {
    let key = match message.method()? {
        methods::TOOLS_CALL | methods::PROMPTS_GET => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return None,
    };
    message.param_str(key)
}

/// A header value as the text it stands for (`=?base64?…?=` wraps text that is not plain ASCII).
fn decode(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    match text
        .strip_prefix(BASE64_PREFIX)
        .and_then(|inner| inner.strip_suffix(BASE64_SUFFIX))
    {
        Some(inner) => String::from_utf8(STANDARD.decode(inner).ok()?).ok(),
        None => Some(text.to_owned()),
    }
}

/// Text as a header value, wrapped in `=?base64?…?=` where it could not travel as it is.
fn encode(text: &str) -> Result<HeaderValue, String> {
    let padded = text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']);
    let printable = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    let looks_wrapped = text.starts_with(BASE64_PREFIX) && text.ends_with(BASE64_SUFFIX);
    let value = if printable && !padded && !looks_wrapped {
        HeaderValue::from_str(text)
    } else {
        HeaderValue::from_str(&format!(
            "{BASE64_PREFIX}{}{BASE64_SUFFIX}",
            STANDARD.encode(text)
        ))
    };
    value.map_err(|e| format!("cannot write a mirrored header: {e}"))
}

/// A primitive argument as header text (strings, numbers, booleans; nothing else is mirrored).
fn primitive_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn value_at<'v>(arguments: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(arguments, |value, key| value.get(key))
}

/// Every path of object keys below `value` that leads to a primitive whose text is `wanted`.
fn paths_with_value(
    value: &Value,
    wanted: &str,
    path: &mut Vec<String>,
    found: &mut Vec<Vec<String>>,
) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                path.push(key.clone());
                paths_with_value(member, wanted, path, found);
                path.pop();
            }
        }
        primitive => {
            if !path.is_empty() && primitive_text(primitive).as_deref() == Some(wanted) {
                found.push(path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn call(arguments: Value) -> Message {
        Message::from_value(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "lookup", "arguments": arguments}}))
        .unwrap()
    }

    fn text(pairs: &[(HeaderName, HeaderValue)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn unchanged_bodies_keep_the_clients_headers() {
        let message = call(json!({"region": "eu", "limit": 5}));
        let sent = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "lookup"),
            ("mcp-param-region", "eu"),
            ("mcp-param-limit", "5"),
        ]);
        let mirrors = Mirrors::read(&sent, &message).unwrap();
        let out = text(&mirrors.for_upstream(Some(&message)).unwrap());
        assert_eq!(out.len(), 4);
        assert!(out.contains(&("mcp-param-limit".into(), "5".into())));
    }

    #[test]
    fn mismatches_are_refused() {
        let message = call(json!({"region": "eu", "nested": {"zone": "b"}}));
        for (pairs, why) in [
            (vec![("mcp-method", "tools/list")], "Mcp-Method"),
            (vec![("mcp-name", "other")], "Mcp-Name"),
            (vec![("mcp-param-region", "us")], "no argument"),
            (vec![("mcp-param-zone", "a")], "no argument"),
            (
                vec![("mcp-param-region", "eu"), ("mcp-param-region", "eu")],
                "more than once",
            ),
            (vec![("mcp-name", "=?base64?!!?=")], "encoded"),
        ] {
            let err = Mirrors::read(&headers(&pairs), &message).unwrap_err();
            assert!(err.contains(why), "{pairs:?}: {err}");
        }
        // Nested arguments and base64-wrapped names are mirrors too.
        let ok = headers(&[("mcp-param-zone", "b"), ("mcp-name", "=?base64?bG9va3Vw?=")]);
        assert!(Mirrors::read(&ok, &message).is_ok());
    }

    #[test]
    fn changed_bodies_get_headers_recomputed_from_what_is_sent() {
        let original = call(json!({"email": "jane@example.com", "note": "caf\u{e9}"}));
        let sent = headers(&[
            ("mcp-param-email", "jane@example.com"),
            (
                "mcp-param-note",
                &format!("=?base64?{}?=", STANDARD.encode("caf\u{e9}")),
            ),
        ]);
        let mirrors = Mirrors::read(&sent, &original).unwrap();
        let redacted = call(json!({"email": "[REDACTED:EMAIL]", "note": "caf\u{e9}"}));
        let out = text(&mirrors.for_upstream(Some(&redacted)).unwrap());
        assert!(out.contains(&("mcp-param-email".into(), "[REDACTED:EMAIL]".into())));
        assert!(out.contains(&(
            "mcp-param-note".into(),
            format!("=?base64?{}?=", STANDARD.encode("caf\u{e9}"))
        )));
        // A removed argument loses its header.
        let removed = call(json!({"note": "caf\u{e9}"}));
        let out = text(&mirrors.for_upstream(Some(&removed)).unwrap());
        assert!(out.iter().all(|(name, _)| name != "mcp-param-email"));
    }

    #[test]
    fn a_changed_name_is_mirrored_again() {
        let original = Message::from_value(json!({"jsonrpc": "2.0", "id": 1,
            "method": "resources/read", "params": {"uri": "crm://jane@example.com"}}))
        .unwrap();
        let mirrors = Mirrors::read(
            &headers(&[("mcp-name", "crm://jane@example.com")]),
            &original,
        )
        .unwrap();
        let redacted = original
            .edited(|o| {
                o.insert("params".into(), json!({"uri": "crm://[REDACTED:EMAIL]"}));
            })
            .unwrap();
        let out = text(&mirrors.for_upstream(Some(&redacted)).unwrap());
        assert_eq!(out, [("mcp-name".into(), "crm://[REDACTED:EMAIL]".into())]);
    }

    #[test]
    fn ambiguous_changes_fail_closed() {
        let original = call(json!({"a": "x", "b": "x"}));
        let mirrors = Mirrors::read(&headers(&[("mcp-param-a", "x")]), &original).unwrap();
        let changed = call(json!({"a": "y", "b": "x"}));
        assert!(mirrors.for_upstream(Some(&changed)).is_err());
        // The same change on both is no ambiguity.
        let both = call(json!({"a": "y", "b": "y"}));
        assert_eq!(
            text(&mirrors.for_upstream(Some(&both)).unwrap()),
            [("mcp-param-a".into(), "y".into())]
        );
    }

    #[test]
    fn encodes_what_cannot_travel_plain() {
        assert_eq!(encode("plain text").unwrap(), "plain text");
        assert_eq!(encode(" lead").unwrap(), "=?base64?IGxlYWQ=?=");
        assert_eq!(
            encode("=?base64?x?=").unwrap(),
            "=?base64?PT9iYXNlNjQ/eD89?="
        );
        for text in ["caf\u{e9}", "tab\there", " x "] {
            assert_eq!(decode(&encode(text).unwrap()).unwrap(), text);
        }
    }
}
