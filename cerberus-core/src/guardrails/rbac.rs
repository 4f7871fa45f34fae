//! `rbac`: which tools, prompts and resources an agent may use.
//!
//! ```json
//! {"type": "rbac", "allow": ["fs_*", "search"], "deny": ["fs_delete*"],
//!  "prompts": {"allow": ["*"]}, "resources": {"allow": ["file:///public/*"]}}
//! ```
//!
//! A name matching a `deny` pattern is refused even if it also matches an `allow` pattern. A name
//! matching an `approve` pattern (and no `deny` pattern) is allowed one request at a time: each is
//! held until a person approves it ([`crate::approval`]). A name in none of the lists is refused
//! unless `unlisted` is `"allow"`, so an empty allow list allows nothing.
//! Tools are always governed; prompts and resources only when their lists are configured.
//!
//! Requests naming something refused (`tools/call`, `prompts/get`, `resources/read`,
//! `resources/subscribe`) are blocked with code `rbac_denied`. List results (`tools/list`,
//! `prompts/list`, `resources/list`, `resources/templates/list`) are filtered page by page, so an agent
//! never sees what it cannot use, and a filtered list is marked `cacheScope: "private"`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::guardrail::{Direction, GuardrailContext, GuardrailResult, SyncGuardrail};
use crate::guardrails::wildcard::Wildcard;
use crate::message::{MessageKind, methods};

/// The block code of a refused name.
pub const CODE: &str = "rbac_denied";

/// What happens to a name that matches neither list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unlisted {
    /// Refused: the allow list is exhaustive.
    #[default]
    Deny,
    /// Allowed: only the deny list refuses.
    Allow,
}

/// Allow and deny patterns for one kind of name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessList {
    /// Patterns of names allowed.
    #[serde(default)]
    pub allow: Vec<Wildcard>,
    /// Patterns of names refused; these win over `allow` and `approve`.
    #[serde(default)]
    pub deny: Vec<Wildcard>,
    /// Patterns of names allowed once a person approves each request; these win over `allow`.
    #[serde(default)]
    pub approve: Vec<Wildcard>,
    /// What happens to names in no list.
    #[serde(default)]
    pub unlisted: Unlisted,
}

impl AccessList {
    /// Whether `name` may be used.
    pub fn permits(&self, name: &str) -> bool {
        if self.deny.iter().any(|p| p.matches(name)) {
            return false;
        }
        self.allow.iter().any(|p| p.matches(name))
            || self.approve.iter().any(|p| p.matches(name))
            || self.unlisted == Unlisted::Allow
    }

    /// Whether a request naming `name` is held for approval (it matches `approve` and no `deny`).
    pub fn needs_approval(&self, name: &str) -> bool {
        self.approve.iter().any(|p| p.matches(name)) && !self.deny.iter().any(|p| p.matches(name))
    }
}

/// Settings of the `rbac` guardrail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacSettings {
    /// Tool name patterns allowed.
    #[serde(default)]
    pub allow: Vec<Wildcard>,
    /// Tool name patterns refused.
    #[serde(default)]
    pub deny: Vec<Wildcard>,
    /// Tool name patterns allowed once a person approves each call.
    #[serde(default)]
    pub approve: Vec<Wildcard>,
    /// Who approves them: `admin` (the default), `user` or `user_or_admin`.
    #[serde(default)]
    pub approve_by: crate::approval::ApproveBy,
    /// What happens to tools in neither list.
    #[serde(default)]
    pub unlisted: Unlisted,
    /// Prompt name patterns, if prompts are governed.
    #[serde(default)]
    pub prompts: Option<AccessList>,
    /// Resource URI patterns, if resources are governed.
    #[serde(default)]
    pub resources: Option<AccessList>,
}

/// The `rbac` guardrail.
#[derive(Clone, Debug)]
pub struct Rbac {
    tools: AccessList,
    approve_by: crate::approval::ApproveBy,
    prompts: Option<AccessList>,
    resources: Option<AccessList>,
}

/// What a list result holds and which member names each item.
struct ListShape {
    items: &'static str,
    name: &'static str,
    noun: &'static str,
}

impl Rbac {
    /// The guardrail for `settings`.
    pub fn new(settings: RbacSettings) -> Self {
        Self {
            tools: AccessList {
                allow: settings.allow,
                deny: settings.deny,
                approve: settings.approve,
                unlisted: settings.unlisted,
            },
            approve_by: settings.approve_by,
            prompts: settings.prompts,
            resources: settings.resources,
        }
    }

    /// The access list governing a request, and the name it targets.
    fn request_target<'m>(
        &self,
        ctx: &GuardrailContext<'m>,
    ) -> Option<(&AccessList, Option<&'m str>, &'static str)> {
        let message = ctx.message;
        match message.method()? {
            methods::TOOLS_CALL => Some((&self.tools, message.tool_name(), "tool")),
            methods::PROMPTS_GET => Some((self.prompts.as_ref()?, message.prompt_name(), "prompt")),
            methods::RESOURCES_READ | methods::RESOURCES_SUBSCRIBE => {
                Some((self.resources.as_ref()?, message.resource_uri(), "resource"))
            }
            _ => None,
        }
    }

    /// The access list and shape of a list result.
    fn list_target(&self, ctx: &GuardrailContext<'_>) -> Option<(&AccessList, ListShape)> {
        if ctx.message.kind() != MessageKind::Response {
            return None;
        }
        let shape = |items, name, noun| ListShape { items, name, noun };
        match ctx.request_method {
            Some(methods::TOOLS_LIST) => Some((&self.tools, shape("tools", "name", "tools"))),
            Some(methods::PROMPTS_LIST) => {
                Some((self.prompts.as_ref()?, shape("prompts", "name", "prompts")))
            }
            Some(methods::RESOURCES_LIST) => Some((
                self.resources.as_ref()?,
                shape("resources", "uri", "resources"),
            )),
            Some(methods::RESOURCES_TEMPLATES_LIST) => Some((
                self.resources.as_ref()?,
                shape("resourceTemplates", "uriTemplate", "resource templates"),
            )),
            Some(_) => None,
            // The answered method is unknown: a result that looks like a tool list is filtered as one,
            // so that a lost request id never leaks the full list.
            None => ctx
                .message
                .result()
                .and_then(|r| r.get("tools"))
                .filter(|tools| tools.is_array())
                .map(|_| (&self.tools, shape("tools", "name", "tools"))),
        }
    }
}

impl SyncGuardrail for Rbac {
    fn type_name(&self) -> &str {
        "rbac"
    }

    fn applies_to(&self, ctx: &GuardrailContext<'_>) -> bool {
        match ctx.direction {
            Direction::Request => {
                ctx.message.kind() == MessageKind::Request && self.request_target(ctx).is_some()
            }
            Direction::Response => self.list_target(ctx).is_some(),
        }
    }

    fn evaluate_sync(&self, ctx: &GuardrailContext<'_>) -> GuardrailResult {
        if ctx.direction == Direction::Request {
            let Some((list, name, noun)) = self.request_target(ctx) else {
                return GuardrailResult::Allow;
            };
            return match name {
                Some(name) if list.needs_approval(name) => GuardrailResult::Hold {
                    code: crate::approval::codes::REQUIRED.to_owned(),
                    reason: format!("{noun} `{name}` needs approval for each request"),
                    by: self.approve_by,
                },
                Some(name) if list.permits(name) => GuardrailResult::Allow,
                Some(name) => GuardrailResult::block(
                    CODE,
                    format!("{noun} `{name}` is not allowed for this agent"),
                ),
                None => GuardrailResult::block(CODE, format!("the request names no {noun}")),
            };
        }
        let Some((list, shape)) = self.list_target(ctx) else {
            return GuardrailResult::Allow;
        };
        filter_list(ctx, list, &shape)
    }
}

fn filter_list(
    ctx: &GuardrailContext<'_>,
    list: &AccessList,
    shape: &ListShape,
) -> GuardrailResult {
    let Some(Value::Object(result)) = ctx.message.result() else {
        return GuardrailResult::Allow;
    };
    let Some(Value::Array(items)) = result.get(shape.items) else {
        return GuardrailResult::Allow;
    };
    // An item without a readable name cannot be checked, so it is hidden.
    let permitted = |item: &Value| {
        item.get(shape.name)
            .and_then(Value::as_str)
            .is_some_and(|n| list.permits(n))
    };
    let hidden = items.iter().filter(|item| !permitted(item)).count();
    let public = result.get("cacheScope").and_then(Value::as_str) == Some("public");
    if hidden == 0 && !public {
        return GuardrailResult::Allow;
    }
    let mut result = result.clone();
    if let Some(Value::Array(items)) = result.get_mut(shape.items) {
        items.retain(permitted);
    }
    if public {
        // The list is now specific to this caller: no shared cache may serve it to another.
        result.insert("cacheScope".into(), Value::String("private".into()));
    }
    match ctx.message.with_payload(Value::Object(result)) {
        Ok(message) => GuardrailResult::Modify {
            message,
            reason: format!("hid {hidden} of {} {}", items.len(), shape.noun),
        },
        Err(e) => GuardrailResult::block(CODE, format!("could not filter the list: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, Message};
    use serde_json::json;

    fn rbac(settings: Value) -> Rbac {
        Rbac::new(serde_json::from_value(settings).unwrap())
    }

    fn decide(
        rbac: &Rbac,
        direction: Direction,
        method: Option<&str>,
        message: Value,
    ) -> GuardrailResult {
        let identity = Identity::new_random();
        let message = Message::from_value(message).unwrap();
        let mut ctx = GuardrailContext::new(direction, &identity, &message);
        ctx.request_method = method;
        if SyncGuardrail::applies_to(rbac, &ctx) {
            rbac.evaluate_sync(&ctx)
        } else {
            GuardrailResult::Allow
        }
    }

    fn call(rbac: &Rbac, tool: &str) -> GuardrailResult {
        decide(
            rbac,
            Direction::Request,
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {}}}),
        )
    }

    fn blocked(result: &GuardrailResult) -> bool {
        matches!(result, GuardrailResult::Block { code, .. } if code == CODE)
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = rbac(json!({"allow": ["fs_*"], "deny": ["fs_delete*"]}));
        assert_eq!(call(&r, "fs_read"), GuardrailResult::Allow);
        assert!(blocked(&call(&r, "fs_delete")));
        assert!(blocked(&call(&r, "fs_delete_all")));
        assert!(blocked(&call(&r, "shell")), "unlisted tools are refused");
    }

    #[test]
    fn an_empty_allow_list_allows_nothing_unless_said_otherwise() {
        assert!(blocked(&call(&rbac(json!({})), "anything")));
        let open = rbac(json!({"deny": ["rm"], "unlisted": "allow"}));
        assert_eq!(call(&open, "anything"), GuardrailResult::Allow);
        assert!(blocked(&call(&open, "rm")));
    }

    #[test]
    fn a_call_without_a_tool_name_is_refused() {
        let r = rbac(json!({"allow": ["*"]}));
        let result = decide(
            &r,
            Direction::Request,
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}),
        );
        assert!(blocked(&result));
    }

    #[test]
    fn the_reason_names_the_tool() {
        let GuardrailResult::Block { reason, .. } = call(&rbac(json!({})), "fs_delete") else {
            panic!()
        };
        assert_eq!(reason, "tool `fs_delete` is not allowed for this agent");
    }

    #[test]
    fn other_requests_pass() {
        let r = rbac(json!({}));
        for method in [
            "initialize",
            "tools/list",
            "ping",
            "prompts/get",
            "resources/read",
        ] {
            let result = decide(
                &r,
                Direction::Request,
                None,
                json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "x", "uri": "y"}}),
            );
            assert_eq!(result, GuardrailResult::Allow, "{method}");
        }
    }

    fn tools_page(names: &[&str], extra: Value) -> Value {
        let tools: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
            .collect();
        let mut result = json!({"tools": tools});
        result
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"jsonrpc": "2.0", "id": 2, "result": result})
    }

    fn names(result: &GuardrailResult) -> Vec<String> {
        let GuardrailResult::Modify { message, .. } = result else {
            panic!("expected modify, got {result:?}")
        };
        message.result().unwrap()["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn filters_every_page_of_tools_list_and_keeps_the_cursor() {
        let r = rbac(json!({"allow": ["fs_*"], "deny": ["fs_delete*"]}));
        let page1 = decide(
            &r,
            Direction::Response,
            Some("tools/list"),
            tools_page(
                &["fs_read", "shell", "fs_delete"],
                json!({"nextCursor": "p2"}),
            ),
        );
        assert_eq!(names(&page1), ["fs_read"]);
        let GuardrailResult::Modify { message, reason } = &page1 else {
            unreachable!()
        };
        assert_eq!(message.result().unwrap()["nextCursor"], "p2");
        assert_eq!(reason, "hid 2 of 3 tools");
        let page2 = decide(
            &r,
            Direction::Response,
            Some("tools/list"),
            tools_page(&["net", "fs_write"], json!({})),
        );
        assert_eq!(names(&page2), ["fs_write"]);
    }

    #[test]
    fn an_unfiltered_list_passes_untouched() {
        let r = rbac(json!({"allow": ["*"]}));
        let result = decide(
            &r,
            Direction::Response,
            Some("tools/list"),
            tools_page(&["a", "b"], json!({"cacheScope": "private"})),
        );
        assert_eq!(result, GuardrailResult::Allow);
    }

    #[test]
    fn a_public_list_becomes_private() {
        let r = rbac(json!({"allow": ["*"]}));
        let result = decide(
            &r,
            Direction::Response,
            Some("tools/list"),
            tools_page(&["a"], json!({"ttlMs": 60000, "cacheScope": "public"})),
        );
        let GuardrailResult::Modify { message, .. } = result else {
            panic!()
        };
        assert_eq!(message.result().unwrap()["cacheScope"], "private");
        assert_eq!(message.result().unwrap()["ttlMs"], 60000);
    }

    #[test]
    fn a_tool_list_answering_an_unknown_request_is_filtered_anyway() {
        let r = rbac(json!({"allow": ["a"]}));
        let result = decide(
            &r,
            Direction::Response,
            None,
            tools_page(&["a", "b"], json!({})),
        );
        assert_eq!(names(&result), ["a"]);
    }

    #[test]
    fn nameless_tools_are_hidden() {
        let r = rbac(json!({"allow": ["*"]}));
        let message = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "a"}, {"title": "no name"}, {"name": 5}]}});
        assert_eq!(
            names(&decide(
                &r,
                Direction::Response,
                Some("tools/list"),
                message
            )),
            ["a"]
        );
    }

    #[test]
    fn prompts_and_resources_are_governed_only_when_configured() {
        let r = rbac(
            json!({"allow": ["*"], "prompts": {"allow": ["greet*"]}, "resources": {"allow": ["file:///public/*"]}}),
        );
        let get = |name: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": name}});
        assert_eq!(
            decide(&r, Direction::Request, None, get("greeting")),
            GuardrailResult::Allow
        );
        assert!(blocked(&decide(
            &r,
            Direction::Request,
            None,
            get("secret")
        )));
        let read = |uri: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}});
        assert_eq!(
            decide(&r, Direction::Request, None, read("file:///public/a.txt")),
            GuardrailResult::Allow
        );
        assert!(blocked(&decide(
            &r,
            Direction::Request,
            None,
            read("file:///etc/passwd")
        )));

        let list = json!({"jsonrpc": "2.0", "id": 3, "result": {"resources": [{"uri": "file:///public/a", "name": "a"}, {"uri": "file:///etc/passwd", "name": "p"}]}});
        let GuardrailResult::Modify { message, .. } =
            decide(&r, Direction::Response, Some("resources/list"), list)
        else {
            panic!()
        };
        assert_eq!(
            message.result().unwrap()["resources"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let templates = json!({"jsonrpc": "2.0", "id": 3, "result": {"resourceTemplates": [{"uriTemplate": "file:///public/{name}"}, {"uriTemplate": "db://{table}"}]}});
        let GuardrailResult::Modify { message, .. } = decide(
            &r,
            Direction::Response,
            Some("resources/templates/list"),
            templates,
        ) else {
            panic!()
        };
        assert_eq!(
            message.result().unwrap()["resourceTemplates"],
            json!([{"uriTemplate": "file:///public/{name}"}])
        );
    }

    #[test]
    fn rejects_unknown_settings() {
        let err = serde_json::from_value::<RbacSettings>(json!({"alow": ["x"]})).unwrap_err();
        assert!(err.to_string().contains("unknown field `alow`"));
        assert!(serde_json::from_value::<RbacSettings>(json!({"allow": [""]})).is_err());
        assert!(serde_json::from_value::<RbacSettings>(json!({"unlisted": "maybe"})).is_err());
    }
}
