//! What every proxy request must pass before anything is forwarded.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use cerberus_core::WorkspaceId;

use super::{Endpoint, SUPPORTED_VERSIONS, VERSION_HEADER};
use crate::auth::bearer_token;
use crate::gateway::{Caller, Gateway};
use crate::wire;

/// A response refusing a request, boxed: it is large, and the rare path.
pub(super) type Refusal = Box<Response>;

fn refuse<T>(response: Response) -> Result<T, Refusal> {
    Err(Box::new(response))
}

/// Origin, host, credential and protocol version: the caller, or the response refusing it.
pub(super) async fn caller(
    gateway: &Gateway,
    headers: &HeaderMap,
    endpoint: &Endpoint,
) -> Result<Caller, Refusal> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        if !origin_allowed(gateway, origin) {
            return refuse(wire::http_error(
                StatusCode::FORBIDDEN,
                wire::INVALID_REQUEST,
                "this origin is not allowed",
            ));
        }
    }
    if let Some(host) = headers.get(header::HOST)
        && !host_allowed(gateway, host.to_str().unwrap_or_default())
    {
        return refuse(wire::http_error(
            StatusCode::FORBIDDEN,
            wire::INVALID_REQUEST,
            "this host is not allowed",
        ));
    }
    let caller = credential(gateway, headers, endpoint).await?;
    crate::telemetry::record_caller(&caller.route.identity);
    if let Some(version) = headers.get(&VERSION_HEADER) {
        let version = version.to_str().unwrap_or_default();
        if !SUPPORTED_VERSIONS.contains(&version) {
            return refuse(wire::http_error(
                StatusCode::BAD_REQUEST,
                wire::INVALID_REQUEST,
                &format!(
                    "unsupported MCP-Protocol-Version; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    }
    Ok(caller)
}

/// The caller of the request's `Authorization`: an agent key anywhere (on a workspace's own path,
/// a key of that workspace), or a person's access token on the path of a workspace that takes them.
async fn credential(
    gateway: &Gateway,
    headers: &HeaderMap,
    endpoint: &Endpoint,
) -> Result<Caller, Refusal> {
    let workspace = match &endpoint.workspace {
        None => None,
        Some(id) => match WorkspaceId::from_path(id) {
            Some(id) => Some(id),
            None => {
                return refuse(wire::http_error(
                    StatusCode::NOT_FOUND,
                    wire::INVALID_REQUEST,
                    "no MCP server at this path",
                ));
            }
        },
    };
    // The workspace as a protected resource, when it takes access tokens. When that cannot be
    // known (the database is down), a request without an agent key is refused with 503 (an access
    // token cannot be checked, and a challenge cannot be written); an agent key, which does not
    // depend on it, is checked as on any path.
    #[cfg(feature = "oauth")]
    let (protected, unknown) = match (gateway.oauth.as_deref(), workspace) {
        (Some(server), Some(workspace)) => match server.resource(workspace).await {
            Ok(resource) => (resource.map(|resource| (server, resource)), None),
            Err(refusal) => (None, Some((server, refusal))),
        },
        _ => (None, None),
    };
    #[cfg(feature = "oauth")]
    let unknown = |key: Option<&str>| -> Option<Refusal> {
        let (server, refusal) = unknown.as_ref()?;
        let agent_key = key.is_some_and(|key| !looks_like_jwt(key));
        (!agent_key).then(|| {
            gateway.metrics.observe_token(Err(refusal));
            Box::new(crate::oauth::refuse(
                server,
                endpoint.base,
                None,
                Some(refusal),
            )) as Refusal
        })
    };
    // A refusal with `message`; on a protected resource, a challenge naming its metadata, with
    // the error RFC 6750 names for what was given.
    let unauthorised = |message: &str, given: Given| -> Refusal {
        #[cfg(feature = "oauth")]
        if let Some((server, resource)) = &protected {
            use crate::oauth::TokenRefusal;
            let refusal = match given {
                Given::Nothing => None,
                Given::Malformed => Some(TokenRefusal::Malformed(message.to_owned())),
                Given::Wrong => Some(TokenRefusal::Invalid(message.to_owned())),
            };
            return Box::new(crate::oauth::refuse(
                server,
                endpoint.base,
                Some(resource),
                refusal.as_ref(),
            ));
        }
        let _ = given;
        Box::new(wire::unauthorised(message))
    };
    if headers.get_all(header::AUTHORIZATION).iter().count() > 1 {
        return Err(unauthorised(
            "more than one Authorization header",
            Given::Malformed,
        ));
    }
    let Some(authorization) = headers.get(header::AUTHORIZATION) else {
        #[cfg(feature = "oauth")]
        if let Some(refusal) = unknown(None) {
            return Err(refusal);
        }
        return Err(unauthorised(
            "missing Authorization: Bearer <agent access key>",
            Given::Nothing,
        ));
    };
    let Some(key) = authorization.to_str().ok().and_then(bearer_token) else {
        return Err(unauthorised(
            "Authorization must be `Bearer <credential>`",
            Given::Malformed,
        ));
    };
    #[cfg(feature = "oauth")]
    if let Some(refusal) = unknown(Some(key)) {
        return Err(refusal);
    }
    #[cfg(feature = "oauth")]
    if let Some((server, resource)) = &protected
        && looks_like_jwt(key)
    {
        let caller = server.authenticate(resource, key).await;
        gateway.metrics.observe_token(caller.as_ref().map(drop));
        return caller.map_err(|refusal| {
            Box::new(crate::oauth::refuse(
                server,
                endpoint.base,
                Some(resource),
                Some(&refusal),
            ))
        });
    }
    match gateway.authenticate(key).await {
        Ok(Some(caller))
            if workspace.is_none_or(|workspace| caller.route.identity.workspace == workspace) =>
        {
            Ok(caller)
        }
        Ok(_) => {
            #[cfg(feature = "oauth")]
            if protected.is_some() {
                return Err(unauthorised(
                    "neither an access token (a JWT) nor an agent access key of this MCP server",
                    Given::Wrong,
                ));
            }
            Err(unauthorised("invalid agent access key", Given::Wrong))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot look up an agent key");
            refuse(wire::http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                wire::UPSTREAM_UNAVAILABLE,
                "the gateway cannot check keys right now",
            ))
        }
    }
}

/// Whether `credential` has the shape of a JWT: three dot-separated parts. An agent key has no
/// dots (a configuration file's may be any text, and is looked up as a key unless it has that
/// shape).
#[cfg(feature = "oauth")]
fn looks_like_jwt(credential: &str) -> bool {
    credential.bytes().filter(|b| *b == b'.').count() == 2
        && !credential.starts_with(crate::auth::KEY_PREFIX)
}

/// What a request's `Authorization` held, for the challenge of its refusal.
#[derive(Clone, Copy)]
enum Given {
    /// No credential.
    Nothing,
    /// Not one `Bearer` credential (RFC 6750's `invalid_request`).
    Malformed,
    /// A credential that opens nothing (`invalid_token`).
    Wrong,
}

/// Content type and accepted types of a POST.
pub(super) fn post_headers(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.get_all(header::CONTENT_TYPE).iter().count() != 1 {
        return refuse(wire::http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            wire::INVALID_REQUEST,
            "exactly one Content-Type: application/json is required",
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !wire::essence(content_type).eq_ignore_ascii_case("application/json") {
        return refuse(wire::http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            wire::INVALID_REQUEST,
            "Content-Type must be application/json",
        ));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // One pass over the list for both types.
    let (mut json, mut event_stream) = (false, false);
    for part in split_ascii(accept, b',') {
        let media = wire::essence(part);
        let any = media == "*/*";
        json |= any || media.eq_ignore_ascii_case("application/json");
        event_stream |= any || media.eq_ignore_ascii_case("text/event-stream");
    }
    if !(json && event_stream) {
        return refuse(wire::http_error(
            StatusCode::NOT_ACCEPTABLE,
            wire::INVALID_REQUEST,
            "Accept must list application/json and text/event-stream",
        ));
    }
    Ok(())
}

/// The parts of `text` between ASCII `delimiter`s, as `str::split` gives them.
fn split_ascii(text: &str, delimiter: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let list = rest?;
        let (part, tail) =
            wire::split_once_ascii(list, delimiter).map_or((list, None), |(p, t)| (p, Some(t)));
        rest = tail;
        Some(part)
    })
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "::1") || host.starts_with("127.")
}

/// The host part of `host[:port]` (IPv6 literals keep their brackets).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .and_then(|end| authority.get(..=end))
            .unwrap_or(authority);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn origin_allowed(gateway: &Gateway, origin: &str) -> bool {
    let settings = &gateway.settings;
    if settings
        .allowed_origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    is_loopback_host(host_name(authority))
}

fn host_allowed(gateway: &Gateway, host: &str) -> bool {
    let settings = &gateway.settings;
    let name = host_name(host);
    if !settings.allowed_hosts.is_empty() {
        return settings
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name));
    }
    // Listening on loopback: only loopback names, so a DNS-rebound page cannot reach the gateway.
    !settings.listen.ip().is_loopback() || is_loopback_host(name)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn byte_splits_agree_with_the_standard_ones(text in "[a-cé,;: ]{0,24}") {
            for delimiter in [b',', b';', b':', b' '] {
                let standard: Vec<&str> = text.split(char::from(delimiter)).collect();
                prop_assert_eq!(split_ascii(&text, delimiter).collect::<Vec<_>>(), standard);
            }
        }
    }

    #[test]
    fn splits_host_and_port() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("example.com"), "example.com");
        assert!(is_loopback_host(host_name("127.0.0.1:1")));
        assert!(!is_loopback_host(host_name("evil.example:80")));
    }

    #[test]
    fn a_post_must_accept_both_json_and_an_event_stream() {
        let status = |accept: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            if let Some(accept) = accept {
                headers.insert(header::ACCEPT, accept.parse().unwrap());
            }
            post_headers(&headers).map_err(|refusal| refusal.status())
        };
        for accepted in [
            "application/json, text/event-stream",
            "text/event-stream;q=0.9,APPLICATION/JSON",
            "*/*",
            "text/html, */*;q=0.1",
        ] {
            assert_eq!(status(Some(accepted)), Ok(()), "{accepted}");
        }
        for refused in [
            None,
            Some(""),
            Some("application/json"),
            Some("text/event-stream"),
            Some("application/*, text/*"),
            Some("application/jsonx, text/event-stream"),
        ] {
            assert_eq!(
                status(refused),
                Err(StatusCode::NOT_ACCEPTABLE),
                "{refused:?}"
            );
        }
    }
}
