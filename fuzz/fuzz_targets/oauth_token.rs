//! OAuth access tokens, as any client may send them to a workspace's own MCP path: whatever the
//! header, claims and signature hold, `ResourceServer::authenticate` refuses or accepts, never
//! panics. The input is either a token as text, or (after a leading `0xff`) a header and claims
//! written as JSON and a signature, separated by `0xff` and encoded into a token here, so that the
//! fuzzer explores the JSON inside rather than base64. The provider's issuer is fixed and its keys
//! (one EC P-256 and one RSA key, no private part needed) are served on loopback, so tokens that
//! name it reach the key lookup and the signature check.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cerberus_axum::config::GatewayConfig;
use cerberus_axum::oauth::ResourceServer;
use cerberus_core::audit::NullAuditSink;
use cerberus_core::{GuardrailRegistry, WorkspaceId};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = r#"{"keys": [
  {"kty": "EC", "crv": "P-256", "kid": "ec", "use": "sig",
   "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
  {"kty": "RSA", "kid": "rsa", "use": "sig", "e": "AQAB",
   "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
]}"#;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: Arc<ResourceServer>,
    workspace: WorkspaceId,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let keys = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
            let address = listener.local_addr().expect("an address");
            let router = axum::Router::new().route(
                "/jwks",
                axum::routing::get(|| async {
                    ([(axum::http::header::CONTENT_TYPE, "application/json")], JWKS)
                }),
            );
            tokio::spawn(async move { axum::serve(listener, router).await });
            format!("http://{address}/jwks")
        });
        let config = format!(
            r#"
[oauth]
public_url = "https://mcp.example.com"

[[organisations]]
name = "acme"

[[workspaces]]
name = "tools"
organisation = "acme"
upstream = {{ url = "http://127.0.0.1:9/mcp" }}

[[identity_providers]]
name = "fuzz"
organisation = "acme"
issuer = "https://issuer.example.com"
jwks_uri = "{keys}"
workspaces = ["tools"]
required_scopes = ["mcp"]
"#
        );
        let config = GatewayConfig::parse(
            &config,
            std::path::Path::new("/nonexistent"),
            &GuardrailRegistry::default(),
        )
        .expect("the fixture's configuration");
        let workspace = config.workspaces[0].id;
        let (gateway, _router) = runtime.block_on(async {
            cerberus_axum::serve::build(&config, GuardrailRegistry::default(), Arc::new(NullAuditSink))
                .expect("the fixture's gateway")
        });
        let server = gateway.oauth.clone().expect("identity providers");
        Fixture {
            runtime,
            server,
            workspace,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let token = match data.split_first() {
        Some((0xff, rest)) => {
            let mut parts = rest.splitn(3, |b| *b == 0xff);
            let header = parts.next().unwrap_or_default();
            let claims = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims),
                URL_SAFE_NO_PAD.encode(signature)
            )
        }
        _ => match std::str::from_utf8(data) {
            Ok(text) => text.to_owned(),
            Err(_) => return,
        },
    };
    let fixture = fixture();
    let _ = fixture
        .runtime
        .block_on(fixture.server.authenticate(fixture.workspace, &token));
});
