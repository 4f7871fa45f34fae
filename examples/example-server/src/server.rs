//! The example server's tools, resources and prompts.
#![allow(
    deprecated,
    reason = "logging and sampling are deprecated by SEP-2577, but the session-era conformance scenarios call them"
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock as Content,
    ListResourceTemplatesResult, ListResourcesResult, LoggingLevel,
    LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam,
    PromptMessage, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, Role, ServerCapabilities, ServerConfig,
    SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData, RoleServer, ServerHandler, prompt, prompt_handler, prompt_router, tool,
    tool_handler, tool_router,
};
use serde::Deserialize;

/// A 1×1 red PNG.
const RED_PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV file with a header and one silent sample.
const SILENT_WAV: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA==";

/// The example server. Each session gets its own.
#[derive(Debug, Clone)]
pub struct ExampleServer {
    subscriptions: Arc<Mutex<HashSet<String>>>,
}

impl ExampleServer {
    /// A server with no subscriptions.
    pub fn new() -> Self {
        Self {
            subscriptions: Arc::new(Mutex::new(HashSet::new())),
        }
    }
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct TextArgs {
    /// The text.
    text: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct NameArgs {
    /// A customer's name.
    name: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct PromptArgs {
    /// The prompt to send to the client's model.
    prompt: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct MessageArgs {
    /// The message to show the user.
    message: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct TwoArgs {
    /// First test argument.
    arg1: String,
    /// Second test argument.
    arg2: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "camelCase")]
struct ResourceArgs {
    /// URI of the resource to embed.
    resource_uri: String,
}

#[tool_router]
impl ExampleServer {
    #[tool(description = "Sends the text back")]
    async fn echo(&self, Parameters(args): Parameters<TextArgs>) -> String {
        args.text
    }

    #[tool(
        description = "Looks up a customer: the answer holds an email address, a phone number and an IP address"
    )]
    async fn lookup_customer(&self, Parameters(args): Parameters<NameArgs>) -> String {
        format!(
            "{}: email jane.doe@example.com, phone +1 (555) 234-5678, last login from 203.0.113.7",
            args.name
        )
    }

    #[tool(
        description = "Shows a customer's billing record: the answer holds a payment card number and an SSN"
    )]
    async fn billing_record(&self, Parameters(args): Parameters<NameArgs>) -> String {
        format!("{}: card 4111 1111 1111 1111, SSN 536-22-1234", args.name)
    }

    #[tool(description = "Lists recent orders as a Markdown table")]
    async fn list_orders(&self) -> String {
        let rows: Vec<String> = (1..=60)
            .map(|i| format!("| {i} | order-{i:04} | {}.00 |", i * 7))
            .collect();
        format!("| # | order | total |\n|---|---|---|\n{}", rows.join("\n"))
    }

    #[tool(description = "Deletes a customer (a tool most agents should not be allowed to call)")]
    async fn delete_customer(&self, Parameters(args): Parameters<NameArgs>) -> String {
        format!("{} would have been deleted", args.name)
    }

    #[tool(description = "Returns a simple text")]
    async fn test_simple_text(&self) -> CallToolResult {
        CallToolResult::success(vec![Content::text(
            "This is a simple text response for testing.",
        )])
    }

    #[tool(description = "Returns an image")]
    async fn test_image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![Content::image(RED_PIXEL_PNG, "image/png")])
    }

    #[tool(description = "Returns audio")]
    async fn test_audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![Content::audio(SILENT_WAV, "audio/wav")])
    }

    #[tool(description = "Returns an embedded resource")]
    async fn test_embedded_resource(&self) -> CallToolResult {
        CallToolResult::success(vec![Content::resource(text_contents(
            "test://embedded-resource",
            "text/plain",
            "This is an embedded resource content.",
        ))])
    }

    #[tool(description = "Returns text, an image and a resource")]
    async fn test_multiple_content_types(&self) -> CallToolResult {
        CallToolResult::success(vec![
            Content::text("Multiple content types test:"),
            Content::image(RED_PIXEL_PNG, "image/png"),
            Content::resource(text_contents(
                "test://mixed-content-resource",
                "application/json",
                r#"{"test":"data","value":123}"#,
            )),
        ])
    }

    #[tool(description = "Sends three log messages while it runs")]
    async fn test_tool_with_logging(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        for (i, message) in [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ]
        .iter()
        .enumerate()
        {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = ctx
                .peer
                .notify_logging_message(LoggingMessageNotificationParam::new(
                    LoggingLevel::Info,
                    serde_json::json!(message),
                ))
                .await;
        }
        CallToolResult::success(vec![Content::text(
            "Tool with logging executed successfully",
        )])
    }

    #[tool(description = "Always fails")]
    async fn test_error_handling(&self) -> CallToolResult {
        CallToolResult::error(vec![Content::text(
            "This tool intentionally returns an error for testing",
        )])
    }

    #[tool(description = "Reports progress 0, 50 and 100 of 100")]
    async fn test_tool_with_progress(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let token = ctx.meta.get_progress_token();
        for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), progress).with_total(100.0),
                    )
                    .await;
            }
        }
        CallToolResult::success(vec![Content::text(
            "Tool with progress executed successfully",
        )])
    }

    #[tool(description = "Asks the client's model through sampling")]
    async fn test_sampling(
        &self,
        Parameters(args): Parameters<PromptArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let request = rmcp::model::CreateMessageRequestParams::new(
            vec![rmcp::model::SamplingMessage::user_text(args.prompt)],
            100,
        );
        match ctx.peer.create_message(request).await {
            Ok(result) => {
                let content = serde_json::to_value(&result.message.content).unwrap_or_default();
                let text = content
                    .get("text")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default()
                    .to_owned();
                CallToolResult::success(vec![Content::text(format!("LLM response: {text}"))])
            }
            Err(e) => CallToolResult::error(vec![Content::text(format!("sampling failed: {e}"))]),
        }
    }

    #[tool(description = "Asks the user for a name and an email address through elicitation")]
    async fn test_elicitation(
        &self,
        Parameters(args): Parameters<MessageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"}
            },
            "required": ["username", "email"]
        });
        elicit(&ctx, &args.message, schema, |action, content| {
            format!("User response: <action: {action}, content: {content}>")
        })
        .await
    }

    #[tool(
        description = "Elicitation whose schema has a default for every primitive type (SEP-1034)"
    )]
    async fn test_elicitation_sep1034_defaults(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "John Doe"},
                "age": {"type": "integer", "default": 30},
                "score": {"type": "number", "default": 95.5},
                "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "default": true}
            }
        });
        elicit(
            &ctx,
            "Please confirm your details",
            schema,
            |action, content| format!("Elicitation completed: action={action}, content={content}"),
        )
        .await
    }

    #[tool(description = "Elicitation whose schema has all five kinds of enum (SEP-1330)")]
    async fn test_elicitation_sep1330_enums(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                "titledSingle": {"type": "string", "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]},
                "legacyEnum": {"type": "string", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"]},
                "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
                "titledMulti": {"type": "array", "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}
                ]}}
            }
        });
        elicit(&ctx, "Please choose", schema, |action, content| {
            format!("Elicitation completed: action={action}, content={content}")
        })
        .await
    }
}

/// Asks the client for input with a form of `schema`; the answer as `prefix` + action and content.
async fn elicit(
    ctx: &RequestContext<RoleServer>,
    message: &str,
    schema: serde_json::Value,
    describe: impl Fn(&str, &str) -> String,
) -> CallToolResult {
    let params = serde_json::json!({"mode": "form", "message": message, "requestedSchema": schema});
    let params: rmcp::model::ElicitRequestParams = match serde_json::from_value(params) {
        Ok(params) => params,
        Err(e) => {
            return CallToolResult::error(vec![Content::text(format!(
                "bad elicitation schema: {e}"
            ))]);
        }
    };
    match ctx.peer.create_elicitation(params).await {
        Ok(result) => {
            let answer = serde_json::to_value(&result).unwrap_or_default();
            let action = answer
                .get("action")
                .and_then(|a| a.as_str())
                .unwrap_or("unknown")
                .to_owned();
            let content = answer
                .get("content")
                .cloned()
                .unwrap_or(serde_json::Value::Null)
                .to_string();
            CallToolResult::success(vec![Content::text(describe(&action, &content))])
        }
        Err(e) => CallToolResult::error(vec![Content::text(format!("elicitation failed: {e}"))]),
    }
}

fn text_contents(uri: &str, mime: &str, text: &str) -> ResourceContents {
    ResourceContents::text(text, uri).with_mime_type(mime)
}

#[prompt_router]
impl ExampleServer {
    #[prompt(description = "A simple prompt")]
    async fn test_simple_prompt(&self) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            "This is a simple prompt for testing.",
        )]
    }

    #[prompt(description = "A prompt with two arguments")]
    async fn test_prompt_with_arguments(
        &self,
        Parameters(args): Parameters<TwoArgs>,
    ) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Prompt with arguments: arg1='{}', arg2='{}'",
                args.arg1, args.arg2
            ),
        )]
    }

    #[prompt(description = "A prompt embedding a resource")]
    async fn test_prompt_with_embedded_resource(
        &self,
        Parameters(args): Parameters<ResourceArgs>,
    ) -> Vec<PromptMessage> {
        vec![
            PromptMessage::new(
                Role::User,
                Content::resource(text_contents(
                    &args.resource_uri,
                    "text/plain",
                    "Embedded resource content for testing.",
                )),
            ),
            PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
        ]
    }

    #[prompt(description = "A prompt with an image")]
    async fn test_prompt_with_image(&self) -> Vec<PromptMessage> {
        vec![
            PromptMessage::new(Role::User, Content::image(RED_PIXEL_PNG, "image/png")),
            PromptMessage::new_text(Role::User, "Please analyze the image above."),
        ]
    }
}

#[tool_handler]
#[prompt_handler]
impl ServerHandler for ExampleServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_logging()
            .enable_completions()
            .build();
        let mut info = ServerConfig::default();
        info.capabilities = capabilities;
        info.instructions = Some("An example MCP server for trying Cerberus.".into());
        info
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resource = |uri: &str, name: &str, description: &str, mime: &str| {
            Resource::new(uri, name)
                .with_description(description)
                .with_mime_type(mime)
        };
        Ok(ListResourcesResult::with_all_items(vec![
            resource(
                "test://static-text",
                "static-text",
                "A static text resource",
                "text/plain",
            ),
            resource(
                "test://static-binary",
                "static-binary",
                "A static binary resource",
                "image/png",
            ),
            resource(
                "test://watched-resource",
                "watched-resource",
                "A resource to subscribe to",
                "text/plain",
            ),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new("test://template/{id}/data", "template-data")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => text_contents(
                uri,
                "text/plain",
                "This is the content of the static text resource.",
            ),
            "test://watched-resource" => {
                text_contents(uri, "text/plain", "Watched resource content.")
            }
            "test://static-binary" => {
                ResourceContents::blob(RED_PIXEL_PNG, uri).with_mime_type("image/png")
            }
            _ => match uri
                .strip_prefix("test://template/")
                .and_then(|rest| rest.strip_suffix("/data"))
            {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    let data = serde_json::json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                    text_contents(uri, "application/json", &data.to_string())
                }
                _ => {
                    return Err(ErrorData::resource_not_found(
                        format!("no resource {uri}"),
                        None,
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.insert(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.remove(&request.uri);
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let prefix = request.argument.value.to_lowercase();
        let values: Vec<String> = ["paris", "park", "party", "test", "testing"]
            .into_iter()
            .filter(|v| v.starts_with(&prefix))
            .map(str::to_owned)
            .collect();
        Ok(CompleteResult::new(
            CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?,
        ))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}
