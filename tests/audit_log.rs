//! The database audit log, on SQLite and on the running PostgreSQL: a known mix of calls under
//! concurrency leaves exactly one record per message with the decision the client saw, also when the
//! database connections are killed mid-run; no raw personal data is stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails loudly on any unexpected error"
)]

mod databases;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use cerberus_axum::audit::{AuditSettings, BatchedAuditSink};
use cerberus_axum::config::GatewayConfig;
use cerberus_core::GuardrailRegistry;
use cerberus_core::audit::{AuditSink, AuditStore, FanoutAuditSink, RecordBudget};
use cerberus_core::store::ControlStore;
use cerberus_sqlx::{Backend, SqlStore};
use databases::{BACKENDS, TestDatabase, postgres_admin_url};
use serde_json::{Value, json};
use sqlx::Row;
use support::KEY;

const VERSION: &str = "2025-11-25";

/// What the client saw of one call, which fixes the records it must leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Passed,
    Blocked,
    Throttled,
}

struct Gateway {
    url: String,
    sink: Arc<BatchedAuditSink>,
}

async fn start(store: &Arc<SqlStore>, upstream: &str) -> Gateway {
    start_with(store, upstream, "", Vec::new()).await
}

/// Starts a gateway whose configuration ends with `extra`, auditing into `store` and `sinks`.
async fn start_with(
    store: &Arc<SqlStore>,
    upstream: &str,
    extra: &str,
    sinks: Vec<Arc<dyn AuditSink>>,
) -> Gateway {
    let hash = cerberus_axum::auth::KeyHash::of(KEY).to_hex();
    let config = GatewayConfig::parse(
        &format!(
            "[[organisations]]\nname = \"acme\"\npolicy = {{ guardrails = [\n\
             {{ type = \"rbac\", allow = [\"echo\", \"whoami\"] }},\n\
             {{ type = \"pii_email\", action = \"redact\" }},\n\
             {{ type = \"rate_limit_per_minute\", limit = 30 }}\n] }}\n\n\
             [[workspaces]]\nname = \"tools\"\norganisation = \"acme\"\nupstream = {{ url = \"{upstream}\" }}\n\n\
             [[agents]]\nname = \"bot\"\nworkspace = \"tools\"\nkey_sha256 = \"{hash}\"\n{extra}"
        ),
        std::path::Path::new("."),
        &GuardrailRegistry::default(),
    )
    .unwrap();
    let settings = AuditSettings {
        queue_capacity: 16,
        batch_size: 8,
        max_retry_interval_ms: 50,
        ..AuditSettings::default()
    };
    let sink = Arc::new(BatchedAuditSink::start(
        Arc::clone(store) as Arc<dyn AuditStore>,
        &settings,
    ));
    let mut sinks = sinks;
    sinks.push(Arc::clone(&sink) as Arc<dyn AuditSink>);
    let (_, router) = cerberus_axum::serve::build_with_store(
        &config,
        GuardrailRegistry::default(),
        Arc::new(FanoutAuditSink::new(sinks)) as Arc<dyn AuditSink>,
        Arc::clone(store) as Arc<dyn ControlStore>,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Gateway {
        url: format!("http://{address}/mcp"),
        sink,
    }
}

/// POSTs one message; returns the JSON-RPC answer, if the POST had one.
async fn post(url: &str, session: Option<&str>, body: Value) -> (Option<String>, Option<Value>) {
    let response = support::mcp_post(url, KEY, VERSION, session, &body)
        .send()
        .await
        .unwrap();
    let session = response
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let json = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|d| d.contains("\"id\""))
        .unwrap_or(text.as_str());
    (session, serde_json::from_str(json).ok())
}

/// Runs the mix: 10 plain echoes, 10 echoes with an email, 10 whoami (an email in the answer), 10
/// denied deletes, 5 more plain echoes; 30 calls a minute are allowed, so 5 of the 35 counted ones are
/// throttled. Returns, per JSON-RPC id, the tool and what the client saw.
async fn run_mix(url: &str) -> BTreeMap<i64, (&'static str, Seen)> {
    let (session, _) = post(
        url,
        None,
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "audit", "version": "1"}}}),
    )
    .await;
    let session = session.expect("a session");
    post(
        url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;

    let mut calls = Vec::new();
    for n in 0..45_i64 {
        let (tool, arguments) = match n {
            0..10 | 40..45 => ("echo", json!({"text": "hello"})),
            10..20 => ("echo-email", json!({"text": "mail jane@example.com"})),
            20..30 => ("whoami", json!({})),
            _ => ("delete_everything", json!({})),
        };
        calls.push((n + 1, tool, arguments));
    }
    let mut tasks = Vec::new();
    for chunk in calls.chunks(6) {
        let chunk = chunk.to_vec();
        let (url, session) = (url.to_owned(), session.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for (id, tool, arguments) in chunk {
                let name = if tool == "echo-email" { "echo" } else { tool };
                let (_, answer) = post(
                    &url,
                    Some(&session),
                    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                        "params": {"name": name, "arguments": arguments}}),
                )
                .await;
                let answer = answer.expect("every call is answered");
                let outcome = match answer["error"]["code"].as_i64() {
                    None => Seen::Passed,
                    Some(-32050) => Seen::Blocked,
                    Some(-32051) => Seen::Throttled,
                    Some(other) => panic!("unexpected error {other}: {answer}"),
                };
                seen.push((id, (tool, outcome)));
            }
            seen
        }));
    }
    let mut seen = BTreeMap::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    seen
}

/// The records each call must leave: (direction, decision) pairs.
fn expected(tool: &str, seen: Seen) -> Vec<(&'static str, &'static str)> {
    match (tool, seen) {
        (_, Seen::Blocked) => vec![("request", "block")],
        (_, Seen::Throttled) => vec![("request", "throttle")],
        ("echo", Seen::Passed) => vec![("request", "allow"), ("response", "allow")],
        ("echo-email", Seen::Passed) => vec![("request", "modify"), ("response", "allow")],
        ("whoami", Seen::Passed) => vec![("request", "allow"), ("response", "modify")],
        other => panic!("{other:?}"),
    }
}

async fn stored(store: &SqlStore) -> Vec<(String, String, String, String)> {
    sqlx::query(
        "SELECT COALESCE(jsonrpc_id, ''), direction, decision, COALESCE(method, '') FROM audit_logs",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|row| {
        (
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<String, _>(2),
            row.get::<String, _>(3),
        )
    })
    .collect()
}

async fn check_records(store: &SqlStore, seen: &BTreeMap<i64, (&'static str, Seen)>) {
    let rows = stored(store).await;
    let throttled = seen.values().filter(|(_, s)| *s == Seen::Throttled).count();
    assert_eq!(throttled, 5, "30 of the 35 counted calls pass");
    let mut want: Vec<(String, String, String)> = vec![
        ("0".into(), "request".into(), "allow".into()),
        ("0".into(), "response".into(), "allow".into()),
        (String::new(), "request".into(), "allow".into()),
    ];
    for (id, (tool, outcome)) in seen {
        for (direction, decision) in expected(tool, *outcome) {
            want.push((id.to_string(), direction.into(), decision.into()));
        }
    }
    let mut got: Vec<(String, String, String)> = rows
        .iter()
        .map(|(i, d, c, _)| (i.clone(), d.clone(), c.clone()))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got.len(), 78, "one record per message");
    assert_eq!(got, want, "each record has the decision the client saw");
}

async fn no_raw_personal_data(store: &SqlStore) {
    let everything: Vec<String> = sqlx::query("SELECT trace, COALESCE(target, '') FROM audit_logs")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
    let everything = everything.join("\n");
    for raw in [
        "jane@example.com",
        "jane.doe@example.com",
        "555 234 5678",
        KEY,
    ] {
        assert!(
            !everything.contains(raw),
            "{raw} is stored in the audit log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_leaves_one_record_with_its_decision() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let database = TestDatabase::create(backend).await;
        let store = Arc::new(database.store().await);
        let upstream = support::start_upstream().await;
        let gateway = start(&store, &upstream).await;
        let seen = run_mix(&gateway.url).await;
        gateway.sink.flush().await;
        assert_eq!(gateway.sink.dropped(), 0);
        check_records(&store, &seen).await;
        no_raw_personal_data(&store).await;
        store.pool().close().await;
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_the_database_connections_being_killed_mid_run() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = Arc::new(database.store().await);
    let upstream = support::start_upstream().await;
    let gateway = start(&store, &upstream).await;
    let name = database.url.rsplit('/').next().unwrap().to_owned();
    // While the mix runs, another connection kills every connection of the gateway's pool, again and
    // again: writes in flight fail and the writer must hold and retry them.
    let killer = tokio::spawn(async move {
        let admin = SqlStore::connect(&postgres_admin_url()).await.unwrap();
        let mut killed = 0_i64;
        for _ in 0..20 {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&name)
            .fetch_one(admin.pool())
            .await
            .unwrap();
            killed += n;
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        admin.pool().close().await;
        killed
    });
    let seen = run_mix(&gateway.url).await;
    let killed = killer.await.unwrap();
    println!("killed {killed} database connections during the run");
    assert!(
        killed > 0,
        "the run lost its database connections at least once"
    );
    gateway.sink.flush().await;
    check_records(&store, &seen).await;
    store.pool().close().await;
    database.drop_database().await;
}

/// A trace in which `pii_email` redacted something: one intervention.
fn redacted_trace() -> cerberus_core::Trace {
    let mut trace = cerberus_core::Trace::new();
    trace.push(cerberus_core::TraceEntry::new(
        "rbac",
        cerberus_core::PolicyLevel::Organisation,
        cerberus_core::DecisionKind::Allow,
    ));
    trace.push(
        cerberus_core::TraceEntry::new(
            "pii_email",
            cerberus_core::PolicyLevel::Organisation,
            cerberus_core::DecisionKind::Modify,
        )
        .with_reason("redacted 1 email address"),
    );
    trace
}

async fn count(store: &SqlStore, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// Pages of records are bounded by bytes as well as by count: records with megabyte payloads (kept
/// before payloads were bounded, or with a large `max_payload_bytes`) come a few at a time, and a
/// reader that follows the cursor still gets every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_large_records_are_cut_by_bytes() {
    for backend in BACKENDS {
        let database = TestDatabase::create(backend).await;
        let store = database.store().await;
        let identity = cerberus_core::Identity::new_random();
        let began = std::time::SystemTime::now();
        let events: Vec<_> = (0..12u64)
            .map(|n| cerberus_core::audit::AuditEvent {
                id: uuid::Uuid::now_v7(),
                time: began + std::time::Duration::from_millis(n),
                identity,
                key_prefix: None,
                session: None,
                jsonrpc_id: Some(n.to_string()),
                direction: cerberus_core::Direction::Response,
                method: Some("tools/call".into()),
                target: Some("echo".into()),
                decision: cerberus_core::DecisionKind::Allow,
                trace: cerberus_core::Trace::new(),
                size_bytes: 1,
                overhead_us: 1,
                upstream_status: None,
                upstream_us: None,
                // Every third record is a megabyte; the rest are small.
                payload: Some(json!({"text": "x".repeat(if n % 3 == 0 { 1 << 20 } else { 10 })})),
            })
            .collect();
        store.append(&events).await.unwrap();
        let organisation = identity.organisation;
        let budget = RecordBudget {
            records: 100,
            bytes: 1 << 20,
        };
        let (mut cursor, mut seen, mut pages) = (None, Vec::new(), Vec::new());
        loop {
            let page = store
                .audit_records(organisation, &Default::default(), cursor, budget)
                .await
                .unwrap();
            let size: usize = page
                .records
                .iter()
                .map(|r| r.payload.as_ref().map_or(0, |p| p.to_string().len()))
                .sum();
            pages.push((page.records.len(), size));
            seen.extend(page.records.iter().map(|r| r.jsonrpc_id.clone().unwrap()));
            cursor = page
                .records
                .last()
                .map(cerberus_core::audit::AuditCursor::after);
            if !page.more {
                break;
            }
        }
        let expected: Vec<String> = (0..12).rev().map(|n: u64| n.to_string()).collect();
        assert_eq!(
            seen, expected,
            "{backend:?}: every record once, newest first"
        );
        // No page holds more than one megabyte record, and none is empty.
        for (records, size) in &pages {
            assert!(
                *records >= 1 && *size < (1 << 20) + 100_000,
                "{backend:?}: {pages:?}"
            );
        }
        assert_eq!(pages.len(), 4, "{backend:?}: {pages:?}");
        // A count that the records run out before: no more.
        let all = store
            .audit_records(
                organisation,
                &Default::default(),
                None,
                RecordBudget::records(12),
            )
            .await
            .unwrap();
        assert_eq!((all.records.len(), all.more), (12, false));
        let short = store
            .audit_records(
                organisation,
                &Default::default(),
                None,
                RecordBudget::records(11),
            )
            .await
            .unwrap();
        assert_eq!((short.records.len(), short.more), (11, true));
        store.pool().close().await;
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_stored_twice_is_stored_once() {
    for backend in BACKENDS {
        let database = TestDatabase::create(backend).await;
        let store = database.store().await;
        let event = cerberus_core::audit::AuditEvent {
            id: uuid::Uuid::new_v4(),
            time: std::time::SystemTime::now(),
            identity: cerberus_core::Identity::new_random(),
            key_prefix: Some("cbk_abcd".into()),
            session: None,
            jsonrpc_id: Some("1".into()),
            direction: cerberus_core::Direction::Request,
            method: Some("tools/call".into()),
            target: Some("echo".into()),
            decision: cerberus_core::DecisionKind::Modify,
            trace: redacted_trace(),
            size_bytes: 1,
            overhead_us: 1,
            upstream_status: Some(200),
            upstream_us: Some(1500),
            payload: Some(json!({"jsonrpc": "2.0", "id": 1, "params": {"to": "[REDACTED:email]"}})),
        };
        let batch = vec![
            event.clone(),
            cerberus_core::audit::AuditEvent {
                id: uuid::Uuid::new_v4(),
                ..event
            },
        ];
        store.append(&batch).await.unwrap();
        store.append(&batch).await.unwrap();
        assert_eq!(count(&store, "audit_logs").await, 2, "{backend:?}");
        assert_eq!(
            count(&store, "audit_interventions").await,
            2,
            "one redaction per record, {backend:?}"
        );
        // Every field reads back as it was written (times to the millisecond).
        let organisation = batch[0].identity.organisation;
        let mut read = store
            .audit_records(
                organisation,
                &Default::default(),
                None,
                RecordBudget::records(10),
            )
            .await
            .unwrap()
            .records;
        read.sort_by_key(|e| e.id);
        let mut written = batch.clone();
        written.sort_by_key(|e| e.id);
        for (read, written) in read.iter().zip(&written) {
            let millis = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            };
            assert_eq!(millis(read.time), millis(written.time));
            let same_time = cerberus_core::audit::AuditEvent {
                time: written.time,
                ..read.clone()
            };
            assert_eq!(&same_time, written, "{backend:?}");
        }
        assert_eq!(read.len(), 2);
        store.pool().close().await;
        database.drop_database().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_exactly_the_records_older_than_its_cutoff() {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    for backend in BACKENDS {
        let database = TestDatabase::create(backend).await;
        let store = database.store().await;
        let now = SystemTime::now();
        // Records a day apart over ten days, ids made as the gateway makes them (UUIDv7 at their time).
        let events: Vec<_> = (0..10_u64)
            .map(|days| {
                let time = now - Duration::from_secs(days * 24 * 3600);
                let since = time.duration_since(UNIX_EPOCH).unwrap();
                let stamp = uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    since.as_secs(),
                    since.subsec_nanos(),
                );
                cerberus_core::audit::AuditEvent {
                    id: uuid::Uuid::new_v7(stamp),
                    time,
                    identity: cerberus_core::Identity::new_random(),
                    key_prefix: None,
                    session: None,
                    jsonrpc_id: Some(days.to_string()),
                    direction: cerberus_core::Direction::Request,
                    method: None,
                    target: None,
                    decision: cerberus_core::DecisionKind::Modify,
                    trace: redacted_trace(),
                    size_bytes: 0,
                    overhead_us: 0,
                    upstream_status: None,
                    upstream_us: None,
                    payload: None,
                }
            })
            .collect();
        store.append(&events).await.unwrap();
        let cutoff = now - Duration::from_secs(7 * 24 * 3600 - 60);
        assert_eq!(
            store.delete_audit_before(cutoff).await.unwrap(),
            3,
            "{backend:?}: days 7, 8, 9"
        );
        assert_eq!(store.delete_audit_before(cutoff).await.unwrap(), 0);
        let left: Vec<String> =
            sqlx::query_scalar("SELECT jsonrpc_id FROM audit_logs ORDER BY occurred_at DESC")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(left, (0..7).map(|d| d.to_string()).collect::<Vec<_>>());
        assert_eq!(
            count(&store, "audit_interventions").await,
            7,
            "{backend:?}: the deleted records' interventions went with them"
        );
        store.pool().close().await;
        database.drop_database().await;
    }
}

/// The nearest-rank percentile `p` of sorted `values`.
fn nearest_rank(values: &[u64], p: u64) -> Option<u64> {
    let n = values.len() as u64;
    let rank = (p * n).div_ceil(100).max(1);
    values.get(usize::try_from(rank).unwrap() - 1).copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_count_the_mix_exactly() {
    use cerberus_core::audit::{AnalyticsQuery, DecisionCounts};
    use cerberus_core::{DecisionKind, Direction};
    use std::time::{Duration, SystemTime};
    for backend in BACKENDS {
        println!("{backend:?}");
        let database = TestDatabase::create(backend).await;
        let store = Arc::new(database.store().await);
        let upstream = support::start_upstream().await;
        let gateway = start(&store, &upstream).await;
        let began = SystemTime::now() - Duration::from_secs(1);
        let seen = run_mix(&gateway.url).await;
        gateway.sink.flush().await;
        let records = store
            .audit_records(
                store_organisation(&store).await,
                &Default::default(),
                None,
                RecordBudget::records(500),
            )
            .await
            .unwrap()
            .records;
        assert_eq!(records.len(), 78);
        let organisation = records[0].identity.organisation;
        let query = AnalyticsQuery {
            from: began,
            to: SystemTime::now() + Duration::from_secs(1),
            bucket: Duration::from_secs(60),
            direction: Some(Direction::Request),
            workspace: None,
            agent: None,
            top: 20,
        };
        let analytics = store.audit_analytics(organisation, &query).await.unwrap();

        // Requests by decision, from what the client saw.
        let mut want = DecisionCounts::default();
        want.add(DecisionKind::Allow, 2); // initialize and notifications/initialized
        let mut echo = DecisionCounts::default();
        let mut whoami = DecisionCounts::default();
        let mut delete = DecisionCounts::default();
        for (tool, outcome) in seen.values() {
            let kind = match (tool, outcome) {
                (_, Seen::Blocked) => DecisionKind::Block,
                (_, Seen::Throttled) => DecisionKind::Throttle,
                (&"echo-email", Seen::Passed) => DecisionKind::Modify,
                (_, Seen::Passed) => DecisionKind::Allow,
            };
            want.add(kind, 1);
            match *tool {
                "echo" | "echo-email" => echo.add(kind, 1),
                "whoami" => whoami.add(kind, 1),
                _ => delete.add(kind, 1),
            }
        }
        assert_eq!(analytics.totals, want, "{backend:?}");
        assert_eq!(want.total, 47);
        let mut summed = DecisionCounts::default();
        for bucket in &analytics.over_time {
            for (kind, n) in [
                (DecisionKind::Allow, bucket.counts.allow),
                (DecisionKind::Modify, bucket.counts.modify),
                (DecisionKind::Block, bucket.counts.block),
                (DecisionKind::Throttle, bucket.counts.throttle),
            ] {
                summed.add(kind, n);
            }
        }
        assert_eq!(summed, want, "the buckets add up to the totals");
        assert!((1..=3).contains(&analytics.over_time.len()));

        let tools: Vec<(&str, DecisionCounts)> = analytics
            .by_tool
            .iter()
            .map(|b| (b.key.as_str(), b.counts))
            .collect();
        assert_eq!(
            tools,
            [
                ("echo", echo),
                ("delete_everything", delete),
                ("whoami", whoami)
            ],
            "{backend:?}: busiest first, ties by name"
        );
        assert_eq!(analytics.by_agent.len(), 1);
        assert_eq!(analytics.by_agent[0].key, organisation_agent(&records));
        assert_eq!(analytics.by_agent[0].counts, want);

        // Interventions, from the stored traces themselves.
        let mut from_traces: BTreeMap<(String, &str, &str), u64> = BTreeMap::new();
        for record in &records {
            for entry in record.trace.entries() {
                if entry.decision != DecisionKind::Allow {
                    *from_traces
                        .entry((
                            entry.guardrail.to_string(),
                            record.direction.as_str(),
                            entry.decision.as_str(),
                        ))
                        .or_default() += 1;
                }
            }
        }
        let counted: BTreeMap<(String, &str, &str), u64> = analytics
            .guardrails
            .iter()
            .map(|g| {
                (
                    (
                        g.guardrail.clone(),
                        g.direction.as_str(),
                        g.decision.as_str(),
                    ),
                    g.count,
                )
            })
            .collect();
        assert_eq!(counted, from_traces, "{backend:?}");
        let whoami_passed = whoami.allow + whoami.modify;
        assert_eq!(
            counted[&("rbac".to_owned(), "request", "block")],
            10,
            "{counted:?}"
        );
        assert_eq!(
            counted[&("rate_limit_per_minute".to_owned(), "request", "throttle")],
            5
        );
        assert_eq!(
            counted[&("pii_email".to_owned(), "response", "modify")],
            whoami_passed
        );

        // Latency percentiles, exactly as nearest-rank over the records.
        let mut overhead: Vec<u64> = records
            .iter()
            .filter(|r| r.direction == Direction::Request)
            .map(|r| r.overhead_us)
            .collect();
        overhead.sort_unstable();
        let mut upstream_times: Vec<u64> = records.iter().filter_map(|r| r.upstream_us).collect();
        upstream_times.sort_unstable();
        assert!(!upstream_times.is_empty());
        for (got, values) in [
            (analytics.latency.gateway_overhead_us, &overhead),
            (analytics.latency.upstream_us, &upstream_times),
        ] {
            assert_eq!(got.count, values.len() as u64, "{backend:?}");
            assert_eq!(got.p50, nearest_rank(values, 50));
            assert_eq!(got.p90, nearest_rank(values, 90));
            assert_eq!(got.p95, nearest_rank(values, 95));
            assert_eq!(got.p99, nearest_rank(values, 99));
            assert_eq!(got.max, values.last().copied());
        }

        // Both directions; another workspace; a range with nothing in it.
        let both = store
            .audit_analytics(
                organisation,
                &AnalyticsQuery {
                    direction: None,
                    ..query.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(both.totals.total, 78);
        let elsewhere = store
            .audit_analytics(
                organisation,
                &AnalyticsQuery {
                    workspace: Some(cerberus_core::WorkspaceId(uuid::Uuid::new_v4())),
                    ..query.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(elsewhere.totals.total, 0);
        assert!(elsewhere.guardrails.is_empty() && elsewhere.by_tool.is_empty());
        let before = store
            .audit_analytics(
                organisation,
                &AnalyticsQuery {
                    from: began - Duration::from_secs(3600),
                    to: began - Duration::from_secs(1800),
                    ..query.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(before.totals.total, 0);
        assert_eq!(before.over_time.len(), 31, "empty buckets are listed");
        assert_eq!(before.latency.gateway_overhead_us.p50, None);
        // Another organisation sees nothing of it.
        let other = store
            .audit_analytics(cerberus_core::OrganisationId(uuid::Uuid::new_v4()), &query)
            .await
            .unwrap();
        assert_eq!(other.totals.total, 0);
        assert!(other.guardrails.is_empty());
        store.pool().close().await;
        database.drop_database().await;
    }
}

/// The organisation the configured gateway audits under (one per test database).
async fn store_organisation(store: &SqlStore) -> cerberus_core::OrganisationId {
    let id: String = sqlx::query_scalar("SELECT organisation_id FROM audit_logs LIMIT 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    cerberus_core::OrganisationId(uuid::Uuid::parse_str(&id).unwrap())
}

fn organisation_agent(records: &[cerberus_core::audit::AuditEvent]) -> String {
    records[0].identity.agent.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_payloads_hold_no_personal_data_of_any_kind() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let database = TestDatabase::create(backend).await;
        let store = Arc::new(database.store().await);
        let upstream = support::start_upstream().await;
        let lines = tempfile::NamedTempFile::new().unwrap();
        let json_lines =
            Arc::new(cerberus_axum::audit::JsonLinesAuditSink::append_to(lines.path()).unwrap());
        // The policy only redacts emails; the stored payloads lose every kind.
        let gateway = start_with(
            &store,
            &upstream,
            "\n[audit]\npayloads = \"redacted\"\n",
            vec![json_lines.clone() as Arc<dyn AuditSink>],
        )
        .await;
        let (session, _) = post(
            &gateway.url,
            None,
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "audit", "version": "1"}}}),
        )
        .await;
        let session = session.unwrap();
        let text = "jane@example.com 536-22-1234 4111 1111 1111 1111 +1 (555) 234-5678 203.0.113.9";
        for (id, name, arguments) in [
            (1, "echo", json!({"text": text})),
            (2, "whoami", json!({})),
            (3, "delete_everything", json!({"why": text})),
        ] {
            post(
                &gateway.url,
                Some(&session),
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                    "params": {"name": name, "arguments": arguments}}),
            )
            .await;
        }
        gateway.sink.flush().await;
        json_lines.flush().await;
        let rows: Vec<(String, Option<String>)> =
            sqlx::query("SELECT decision, payload FROM audit_logs ORDER BY id")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get::<String, _>(0), r.get::<Option<String>, _>(1)))
                .collect();
        assert_eq!(rows.len(), 7, "{rows:?}");
        let payloads: Vec<Value> = rows
            .iter()
            .map(|(_, p)| {
                serde_json::from_str(p.as_deref().expect("every record keeps a payload")).unwrap()
            })
            .collect();
        let everything = format!(
            "{}\n{}",
            serde_json::to_string(&payloads).unwrap(),
            std::fs::read_to_string(lines.path()).unwrap()
        );
        for raw in [
            "jane@example.com",
            "jane.doe@example.com",
            "536-22-1234",
            "4111 1111 1111 1111",
            "555) 234-5678",
            "555 234 5678",
            "203.0.113.9",
            KEY,
        ] {
            assert!(!everything.contains(raw), "{backend:?}: {raw} stored");
        }
        for marker in [
            "[REDACTED:EMAIL]",
            "[REDACTED:SSN]",
            "[REDACTED:CREDIT_CARD]",
            "[REDACTED:PHONE]",
            "[REDACTED:IP_ADDRESS]",
        ] {
            assert!(
                everything.contains(marker),
                "{marker} missing: {everything}"
            );
        }
        // The messages themselves are kept: the blocked call's tool and the answers' shape.
        assert!(everything.contains("delete_everything"));
        assert!(everything.contains("\"result\""));
        // With the default, nothing is kept.
        let plain = TestDatabase::create(backend).await;
        let plain_store = Arc::new(plain.store().await);
        let quiet = start(&plain_store, &upstream).await;
        post(
            &quiet.url,
            None,
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "audit", "version": "1"}}}),
        )
        .await;
        quiet.sink.flush().await;
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(payload) FROM audit_logs")
            .fetch_one(plain_store.pool())
            .await
            .unwrap();
        assert_eq!(kept, 0);
        plain_store.pool().close().await;
        plain.drop_database().await;
        store.pool().close().await;
        database.drop_database().await;
    }
}

/// A payload longer than `max_payload_bytes` is stored as its first bytes, its length and its hash:
/// a tenant whose upstream answers with megabytes cannot fill the audit queue or the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_are_stored_as_their_head_and_a_summary() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let database = TestDatabase::create(backend).await;
        let store = Arc::new(database.store().await);
        let upstream = support::start_upstream().await;
        let gateway = start_with(
            &store,
            &upstream,
            "\n[audit]\npayloads = \"redacted\"\nmax_payload_bytes = 4096\n",
            Vec::new(),
        )
        .await;
        let (session, _) = post(
            &gateway.url,
            None,
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "audit", "version": "1"}}}),
        )
        .await;
        let text = format!("jane@example.com {}", "x".repeat(300_000));
        let (_, answer) = post(
            &gateway.url,
            session.as_deref(),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": text}}}),
        )
        .await;
        assert!(
            answer.unwrap().to_string().len() > 300_000,
            "the client gets it all"
        );
        gateway.sink.flush().await;
        let payloads: Vec<String> =
            sqlx::query_scalar("SELECT payload FROM audit_logs WHERE method = 'tools/call'")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(payloads.len(), 2, "the call and its answer");
        for stored in payloads {
            assert!(stored.len() < 4096 + 200, "{} bytes stored", stored.len());
            let payload: Value = serde_json::from_str(&stored).unwrap();
            assert_eq!(payload["truncated"], true, "{payload}");
            assert!(payload["bytes"].as_u64().unwrap() > 300_000);
            assert_eq!(payload["sha256"].as_str().unwrap().len(), 64);
            let head = payload["head"].as_str().unwrap();
            assert!(
                head.len() <= 4096 && head.contains("[REDACTED:EMAIL]"),
                "{head}"
            );
            assert!(!stored.contains("jane@example.com"));
        }
        store.pool().close().await;
        database.drop_database().await;
    }
}

/// A NUL character in a message's text (here the tool's name) is stored as its JSON escape on both
/// backends; PostgreSQL cannot hold the character itself, and used to refuse the batch, which the
/// writer then retried for ever while everything behind it waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_character_neither_stops_the_audit_nor_the_calls_behind_it() {
    for backend in BACKENDS {
        println!("{backend:?}");
        let database = TestDatabase::create(backend).await;
        let store = Arc::new(database.store().await);
        let upstream = support::start_upstream().await;
        let gateway = start(&store, &upstream).await;
        let (session, _) = post(
            &gateway.url,
            None,
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "audit", "version": "1"}}}),
        )
        .await;
        let session = session.expect("a session");
        // More events than the queue holds (16) come after the poisoned one, and fewer calls than
        // the rate limit (30 a minute): they must not wait on it.
        for n in 1..=20_i64 {
            let tool = if n == 1 { "ec\u{0}ho" } else { "echo" };
            let (_, answer) = post(
                &gateway.url,
                Some(&session),
                json!({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                       "params": {"name": tool, "arguments": {"text": "hello"}}}),
            )
            .await;
            let answer = answer.expect("an answer");
            assert_eq!(answer["id"], n, "{answer}");
        }
        gateway.sink.flush().await;
        assert_eq!(gateway.sink.rejected(), 0, "{backend:?}");
        // The initialize's two records, and each call's request and answer (the denied one: its
        // request only).
        assert_eq!(
            count(&store, "audit_logs").await,
            2 + 1 + 19 * 2,
            "{backend:?}"
        );
        let targets: Vec<String> = sqlx::query_scalar(
            "SELECT target FROM audit_logs WHERE target LIKE 'ec%' AND target <> 'echo'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(targets, ["ec\\u0000ho"], "{backend:?}");
        // Searching for the name as the client wrote it finds the record.
        let organisation: String =
            sqlx::query_scalar("SELECT organisation_id FROM audit_logs LIMIT 1")
                .fetch_one(store.pool())
                .await
                .unwrap();
        let organisation =
            cerberus_core::OrganisationId(uuid::Uuid::parse_str(&organisation).unwrap());
        let filter = cerberus_core::audit::AuditFilter {
            target: Some("ec\u{0}ho".into()),
            ..Default::default()
        };
        let found = store
            .audit_records(organisation, &filter, None, RecordBudget::records(10))
            .await
            .unwrap()
            .records;
        assert_eq!(found.len(), 1, "{backend:?}");
        assert_eq!(found[0].target.as_deref(), Some("ec\\u0000ho"));
        store.pool().close().await;
        database.drop_database().await;
    }
}
