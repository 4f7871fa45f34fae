//! How the gateway reaches a workspace's MCP server: over Streamable HTTP, or as a child process
//! speaking stdio. One checking path turns a definition (from the configuration file or the admin API)
//! into an [`Upstream`] the proxy can use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cerberus_core::store::UpstreamDefinition;

/// A definition the gateway cannot use, with the field named.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
#[non_exhaustive]
pub struct InvalidUpstream {
    /// The field at fault, relative to the upstream (`url`, `headers.X-Key`, `command`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl InvalidUpstream {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A workspace's MCP server reached over Streamable HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpUpstream {
    /// The Streamable HTTP endpoint, parsed once: an absolute `http` or `https` URL.
    pub url: http::Uri,
    /// Headers sent with every upstream request (an upstream credential, for example), parsed once
    /// and marked sensitive, so that they never show in debug output.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Whether the addresses it connects to are checked against the gateway's
    /// [`EgressPolicy`](crate::egress::EgressPolicy): true unless the operator set it in the
    /// configuration file ([`Upstream::set_by_operator`]).
    pub egress_checked: bool,
}

/// A workspace's MCP server run by the gateway as a child process speaking stdio, one per session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StdioUpstream {
    /// The program (a bare name is looked up on `PATH`).
    pub command: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables set for it (the gateway's own environment is not passed on).
    pub env: BTreeMap<String, String>,
    /// Its working directory.
    pub cwd: Option<PathBuf>,
}

/// How the gateway reaches a workspace's MCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upstream {
    /// Over Streamable HTTP.
    Http(HttpUpstream),
    /// As a child process over stdio.
    Stdio(StdioUpstream),
}

impl Upstream {
    /// The upstream `definition` describes, checked: an absolute `http` or `https` URL without
    /// credentials and headers that are valid HTTP, or a command that is not blank. A relative
    /// command path (`bin/server`, not a bare `server`, which is looked up on `PATH`) and a relative
    /// working directory are relative to `base`.
    pub fn from_definition(
        definition: &UpstreamDefinition,
        base: &Path,
    ) -> Result<Self, InvalidUpstream> {
        match definition {
            UpstreamDefinition::Http { url, headers } => {
                let url = upstream_url(url).map_err(|why| InvalidUpstream::new("url", why))?;
                let mut parsed = Vec::with_capacity(headers.len());
                for (written, value) in headers {
                    let header = http::HeaderName::from_bytes(written.as_bytes())
                        .ok()
                        .zip(http::HeaderValue::from_str(value).ok());
                    let Some((name, mut value)) = header else {
                        return Err(InvalidUpstream::new(
                            format!("headers.{written}"),
                            "not a valid HTTP header",
                        ));
                    };
                    if RESERVED_HEADERS.contains(&name.as_str()) {
                        return Err(InvalidUpstream::new(
                            format!("headers.{written}"),
                            "the gateway sets this header itself (it frames the request, belongs to one \
                             connection or carries the MCP session)",
                        ));
                    }
                    value.set_sensitive(true);
                    parsed.push((name, value));
                }
                Ok(Self::Http(HttpUpstream {
                    url,
                    headers: parsed,
                    egress_checked: true,
                }))
            }
            UpstreamDefinition::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                if command.trim().is_empty() {
                    return Err(InvalidUpstream::new("command", "cannot be empty"));
                }
                let command = PathBuf::from(command);
                let command = if command.components().count() > 1 && command.is_relative() {
                    base.join(command)
                } else {
                    command
                };
                Ok(Self::Stdio(StdioUpstream {
                    command,
                    args: args.clone(),
                    env: env.clone(),
                    cwd: cwd.as_ref().map(|cwd| base.join(cwd)),
                }))
            }
        }
    }
}

/// Headers an upstream definition may not set, lower-case: the message's framing and type, headers of one
/// connection (hop-by-hop), and those the gateway manages for MCP. A definition that set `Host` or
/// `Transfer-Encoding` had the upstream receive two of them, or a length and chunks at once.
const RESERVED_HEADERS: [&str; 17] = [
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "trailer",
    "connection",
    "keep-alive",
    "upgrade",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "expect",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

impl Upstream {
    /// This upstream as one the operator set in the configuration file: its addresses are not checked
    /// against the egress policy.
    pub fn set_by_operator(mut self) -> Self {
        if let Self::Http(http) = &mut self {
            http.egress_checked = false;
        }
        self
    }
}

/// An upstream's Streamable HTTP endpoint: an absolute `http` or `https` URL with a host, and no
/// credentials in it (they go in `headers`).
fn upstream_url(url: &str) -> Result<http::Uri, String> {
    if !url.contains("://") {
        return Err("must be an http or https URL".into());
    }
    let parsed: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) {
        return Err("must be an http or https URL".into());
    }
    let Some(authority) = parsed.authority() else {
        return Err("not a URL: it names no host".into());
    };
    if authority.as_str().contains('@') {
        return Err("must not contain credentials: send them in `headers`".into());
    }
    if authority.host().is_empty() {
        return Err("not a URL: it names no host".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(url: &str) -> Result<Upstream, InvalidUpstream> {
        Upstream::from_definition(
            &UpstreamDefinition::Http {
                url: url.to_owned(),
                headers: BTreeMap::new(),
            },
            Path::new("."),
        )
    }

    #[test]
    fn only_absolute_http_urls_without_credentials_are_upstreams() {
        assert!(http("http://127.0.0.1:3901/mcp").is_ok());
        assert!(http("https://mcp.example.com/v1?x=1").is_ok());
        for (url, why) in [
            ("127.0.0.1:3901/mcp", "must be an http or https URL"),
            ("ftp://example.com/mcp", "must be an http or https URL"),
            (
                "https://user:pw@example.com/mcp",
                "must not contain credentials: send them in `headers`",
            ),
        ] {
            assert_eq!(http(url), Err(InvalidUpstream::new("url", why)), "{url}");
        }
    }

    #[test]
    fn relative_commands_and_directories_are_relative_to_the_base() {
        let definition = UpstreamDefinition::Stdio {
            command: "bin/server".into(),
            args: vec!["--stdio".into()],
            env: BTreeMap::new(),
            cwd: Some("work".into()),
        };
        let Ok(Upstream::Stdio(stdio)) =
            Upstream::from_definition(&definition, Path::new("/etc/cerberus"))
        else {
            panic!("a stdio upstream")
        };
        assert_eq!(stdio.command, Path::new("/etc/cerberus/bin/server"));
        assert_eq!(stdio.cwd.as_deref(), Some(Path::new("/etc/cerberus/work")));
        let bare = UpstreamDefinition::Stdio {
            command: "npx".into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
        };
        let Ok(Upstream::Stdio(stdio)) = Upstream::from_definition(&bare, Path::new("/etc")) else {
            panic!("a stdio upstream")
        };
        assert_eq!(
            stdio.command,
            Path::new("npx"),
            "a bare name is looked up on PATH"
        );
    }
}
