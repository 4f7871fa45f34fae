//! What checking a person's OAuth access token costs beside an agent key, in the same process: the
//! gateway's own `Gateway::authenticate` of a key (hash, constant-time compare, route) against
//! `ResourceServer::authenticate` of an ES256 and an RS256 (2048-bit) token. `oauth/*` presents one
//! token again and again, as a client does (the token hashed and found among those verified);
//! `oauth_first_sight/*` a new token each time (header and claims read, signature verified, issuer,
//! audience, times and scopes checked, the person's cached route found). The issuer's keys are
//! fetched once, before measuring.
//!
//! `cargo bench -p cerberus-benches --bench oauth`
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark stops loudly on bad input"
)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cerberus_axum::config::GatewayConfig;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::NullAuditSink;
use criterion::{Criterion, criterion_group, criterion_main};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{Value, json};

const KEY: &str = "cbk_a_benchmark_key_of_the_agent";

fn token(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = sign(message.as_bytes());
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let random = SystemRandom::new();
    let es256 = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(es256, &random).unwrap();
    let ec = signature::EcdsaKeyPair::from_pkcs8(es256, pkcs8.as_ref(), &random).unwrap();
    let rsa = signature::RsaKeyPair::from_der(include_bytes!(
        "../cerberus-axum/tests/fixtures/oauth-signing-rsa.der"
    ))
    .unwrap();
    let point = ec.public_key().as_ref();
    let rsa_public: signature::RsaPublicKeyComponents<Vec<u8>> = rsa.public_key().into();
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec", "use": "sig",
         "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
        {"kty": "RSA", "kid": "rsa", "use": "sig",
         "n": URL_SAFE_NO_PAD.encode(&rsa_public.n), "e": URL_SAFE_NO_PAD.encode(&rsa_public.e)},
    ]});
    let issuer = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let metadata = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { axum::Json(metadata) }),
            )
            .route(
                "/jwks",
                axum::routing::get(move || async move { axum::Json(jwks) }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        url
    });
    let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
    let config = format!(
        r#"
[oauth]
public_url = "https://mcp.example.com"

[[organisations]]
name = "acme"
policy = {{ guardrails = [{{ type = "pii_email", action = "redact" }}] }}

[[workspaces]]
name = "tools"
organisation = "acme"
upstream = {{ url = "http://127.0.0.1:1/mcp" }}

[[agents]]
name = "bot"
workspace = "tools"
key_sha256 = "{hash}"

[[identity_providers]]
name = "bench"
organisation = "acme"
issuer = "{issuer}"
workspaces = ["tools"]
required_scopes = ["mcp"]
"#
    );
    let config = GatewayConfig::parse(
        &config,
        std::path::Path::new("."),
        &GuardrailRegistry::default(),
    )
    .unwrap();
    let workspace = config.workspaces[0].id;
    let (gateway, _router) = runtime.block_on(async {
        cerberus_axum::serve::build(
            &config,
            GuardrailRegistry::default(),
            std::sync::Arc::new(NullAuditSink),
        )
        .unwrap()
    });
    let server = gateway.oauth.clone().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"iss": issuer, "sub": "00u1ann", "aud": format!("https://mcp.example.com/mcp/{workspace}"),
                        "exp": now + 3600, "iat": now, "scope": "openid mcp",
                        "email": "ann@acme.example", "groups": ["staff", "engineering"]});
    let es_token = token("ES256", "ec", &claims, |m| {
        ec.sign(&random, m).unwrap().as_ref().to_vec()
    });
    let rs_token = token("RS256", "rsa", &claims, |m| {
        let mut signature = vec![0; rsa.public().modulus_len()];
        rsa.sign(&signature::RSA_PKCS1_SHA256, &random, m, &mut signature)
            .unwrap();
        signature
    });
    // What the proxy does with a token: find the workspace's resource, then check the token.
    let authenticate = |token: &str| {
        let server = &server;
        let token = token.to_owned();
        async move {
            let resource = server.resource(workspace).await?.unwrap();
            server.authenticate(&resource, &token).await
        }
    };
    // The keys are fetched and the person's route built before measuring.
    for token in [&es_token, &rs_token] {
        runtime.block_on(authenticate(token)).unwrap();
    }

    let mut group = c.benchmark_group("oauth");
    group.bench_function("agent_key_baseline", |b| {
        b.iter(|| {
            runtime
                .block_on(gateway.authenticate(black_box(KEY)))
                .unwrap()
        })
    });
    // The steady state: a client presents one token for many calls.
    for (name, token) in [("es256_token", &es_token), ("rs256_token", &rs_token)] {
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(authenticate(black_box(token))).unwrap())
        });
    }
    group.finish();

    // A token's first use: every check and the signature. Each iteration gets a token never seen
    // (signed outside the measurement).
    let mut first = c.benchmark_group("oauth_first_sight");
    first.sample_size(10);
    first.measurement_time(std::time::Duration::from_millis(500));
    let fresh = |n: &mut u64| {
        *n += 1;
        let mut claims = claims.clone();
        claims["jti"] = json!(n.to_string());
        claims
    };
    let mut n = 0;
    first.bench_function("es256_token", |b| {
        b.iter_batched(
            || {
                token("ES256", "ec", &fresh(&mut n), |m| {
                    ec.sign(&random, m).unwrap().as_ref().to_vec()
                })
            },
            |token| runtime.block_on(authenticate(&token)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    first.bench_function("rs256_token", |b| {
        b.iter_batched(
            || {
                token("RS256", "rsa", &fresh(&mut n), |m| {
                    let mut signature = vec![0; rsa.public().modulus_len()];
                    rsa.sign(&signature::RSA_PKCS1_SHA256, &random, m, &mut signature)
                        .unwrap();
                    signature
                })
            },
            |token| runtime.block_on(authenticate(&token)).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    first.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
