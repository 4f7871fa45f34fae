//! `cerberus stdio`: a local stdio MCP server run behind the guardrails.
//!
//! A desktop client (Claude Desktop, Cursor, VS Code) launches `cerberus stdio --policy FILE -- COMMAND
//! ARGS...` where it launched `COMMAND ARGS...`. Cerberus starts the server as its child and stands on
//! the pipe between them: each line from the client goes through a
//! [`cerberus_core::stream::StreamGuard`] as a request, each line from the server as a
//! response. Refused requests are answered by Cerberus and never reach the server; refused answers
//! reach the client as JSON-RPC errors. Standard output carries only the protocol; logs go to stderr.
//!
//! The end: when the client closes standard input, the server's input is closed and it gets
//! [`STOP_GRACE`] to exit before it is killed; when the server exits, Cerberus exits with its status.
//! SIGTERM and Ctrl-C stop the server the same way. The audit file is flushed in every case.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cerberus_core::audit::{AuditSink, NullAuditSink, PayloadRedactor};
use cerberus_core::guardrails::pii::{PiiKinds, PiiScanner};
use cerberus_core::stream::{Action, StreamGuard};
use cerberus_core::{
    AgentId, EffectivePolicy, GuardrailRegistry, Identity, Message, MessageError, OrganisationId,
    WorkspaceId, refusal,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use crate::audit::JsonLinesAuditSink;
use crate::check::{CheckError, load_policies};
use crate::cli::StdioArgs;
use crate::proxy::stdio::{LineRead, forward_stderr, read_line};

/// How long the server may take to exit once its input is closed, before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How many lines may wait for a slow reader on either side.
const CHANNEL: usize = 64;

/// The namespace of the ids of stdio agents, derived from their names.
const ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6365_7262_6572_7573_2d73_7464_696f_0001);

/// Why `cerberus stdio` cannot run its server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StdioError {
    /// A policy cannot be read or used.
    #[error(transparent)]
    Policy(#[from] CheckError),
    /// No command follows `--`.
    #[error("give the MCP server's command after `--`")]
    NoCommand,
    /// `--audit-log -` would mix the audit log into the protocol.
    #[error("--audit-log cannot be standard output: it carries the protocol")]
    AuditToStdout,
    /// The audit log file cannot be opened.
    #[error("cannot open {path}")]
    AuditLog {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server cannot be started.
    #[error("cannot start {program}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server's pipes, or its exit, cannot be handled.
    #[error("the MCP server's process")]
    Process(#[source] std::io::Error),
}

/// Runs `cerberus stdio` on this process's standard input and output, with the guardrail types of
/// `registry`; the server's exit status.
pub async fn run(args: &StdioArgs, registry: &GuardrailRegistry) -> Result<ExitStatus, StdioError> {
    let policies = load_policies(registry, &args.policies)?;
    let effective = EffectivePolicy::merge(policies.iter().map(|(level, doc)| (*level, doc)));
    let pipeline = registry.build(&effective).map_err(CheckError::Build)?;
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(StdioError::NoCommand);
    };
    let agent = args.agent.clone().unwrap_or_else(|| {
        Path::new(program)
            .file_name()
            .map_or_else(|| "stdio".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let audit: Arc<dyn AuditSink> = match &args.audit_log {
        Some(path) if path == Path::new("-") => return Err(StdioError::AuditToStdout),
        Some(path) => Arc::new(JsonLinesAuditSink::append_to(path).map_err(|source| {
            StdioError::AuditLog {
                path: path.clone(),
                source,
            }
        })?),
        None => Arc::new(NullAuditSink),
    };
    let guard = Arc::new(
        StreamGuard::new(pipeline, stdio_identity(&agent))
            .with_audit(Arc::clone(&audit))
            .with_payloads(PayloadRedactor::for_mode(args.audit_payloads)),
    );

    let mut child = Command::new(program)
        .args(program_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StdioError::Start {
            program: program.to_string_lossy().into_owned(),
            source,
        })?;
    let missing = || StdioError::Process(std::io::Error::other("its pipes were not captured"));
    let server_in = child.stdin.take().ok_or_else(missing)?;
    let server_out = child.stdout.take().ok_or_else(missing)?;
    let server_err = child.stderr.take().ok_or_else(missing)?;
    forward_stderr(
        server_err,
        agent.clone(),
        Arc::new(PiiScanner::new(PiiKinds::all())),
    );
    tracing::info!(%agent, guardrails = effective.entries.len(), "governing a stdio MCP server");

    let (to_server, server_lines) = mpsc::channel::<Bytes>(CHANNEL);
    let (to_client, client_lines) = mpsc::channel::<Bytes>(CHANNEL);
    let (close_server_input, server_input_closed) = oneshot::channel();
    let server_writer = tokio::spawn(write_lines(
        server_in,
        server_lines,
        Some(server_input_closed),
    ));
    let client_writer = tokio::spawn(write_lines(tokio::io::stdout(), client_lines, None));
    let max = args.max_message_bytes;
    let mut from_client = tokio::spawn(pump(
        tokio::io::stdin(),
        Side::Client,
        Arc::clone(&guard),
        to_server.clone(),
        to_client.clone(),
        max,
    ));
    let mut from_server = tokio::spawn(pump(
        server_out,
        Side::Server,
        Arc::clone(&guard),
        to_client,
        to_server,
        max,
    ));

    // The server's output ends when it exits; the client's input ends when the client is done.
    let (status, server_output_ended) = tokio::select! {
        _ = &mut from_server => (child.wait().await.map_err(StdioError::Process)?, true),
        _ = &mut from_client => (stop(&mut child, close_server_input).await.map_err(StdioError::Process)?, false),
        () = crate::serve::shutdown_signal() => (stop(&mut child, close_server_input).await.map_err(StdioError::Process)?, false),
    };
    // The server is gone: nothing more can be answered. What it wrote before exiting still reaches
    // the client (its pump ends at the end of its output).
    from_client.abort();
    if !server_output_ended && tokio::time::timeout(STOP_GRACE, from_server).await.is_err() {
        tracing::warn!("the server's output did not end with it");
    }
    let _ = tokio::time::timeout(STOP_GRACE, client_writer).await;
    server_writer.abort();
    audit.flush().await;
    tracing::info!(%status, "the stdio MCP server ended");
    Ok(status)
}

/// Closes the server's input once the lines already accepted for it are written, and waits
/// [`STOP_GRACE`] for it to exit, then kills it.
async fn stop(
    child: &mut tokio::process::Child,
    close_input: oneshot::Sender<()>,
) -> std::io::Result<ExitStatus> {
    let _ = close_input.send(());
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!("the stdio MCP server did not exit within {STOP_GRACE:?}: killing it");
            child.kill().await?;
            child.wait().await
        }
    }
}

/// The identity of a stdio agent: stable across runs, derived from its name.
fn stdio_identity(agent: &str) -> Identity {
    let id = |kind: &str| uuid::Uuid::new_v5(&ID_NAMESPACE, format!("{kind}:{agent}").as_bytes());
    Identity {
        organisation: OrganisationId(id("organisation")),
        workspace: WorkspaceId(id("workspace")),
        agent: AgentId(id("agent")),
    }
}

/// Which side a pump reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// Reads `input` line by line, runs each message through the guard, and sends what passes `onward`
/// and the guard's answers `back`.
async fn pump(
    input: impl AsyncRead + Unpin,
    side: Side,
    guard: Arc<StreamGuard>,
    onward: mpsc::Sender<Bytes>,
    back: mpsc::Sender<Bytes>,
    max: usize,
) {
    let mut input = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = match read_line(&mut input, &mut line, max).await {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(?side, error = %e, "cannot read");
                return;
            }
        };
        let message = match read {
            LineRead::End => return,
            LineRead::TooLong => Err((
                refusal::INVALID_REQUEST,
                format!("a message exceeds {max} bytes"),
            )),
            LineRead::Line if line.iter().all(u8::is_ascii_whitespace) => continue,
            LineRead::Line => {
                // The message is the line without its end: passed on unchanged, it gets a new one.
                let end = line.trim_ascii_end().len();
                let text = Bytes::copy_from_slice(line.get(..end).unwrap_or_default());
                Message::parse(text).map_err(|e| match e {
                    MessageError::Json(e) => (refusal::PARSE_ERROR, format!("not valid JSON: {e}")),
                    other => (
                        refusal::INVALID_REQUEST,
                        format!("not a JSON-RPC message: {other}"),
                    ),
                })
            }
        };
        let message = match message {
            Ok(message) => message,
            Err((code, why)) => {
                // Nothing unchecked passes. The client is told; a server's stray output is logged,
                // without its content, and dropped.
                match side {
                    Side::Client => {
                        if let Some(error) = refusal::error_message(None, code, &why, None)
                            && back.send(error.to_bytes()).await.is_err()
                        {
                            return;
                        }
                    }
                    Side::Server => {
                        tracing::warn!(error = %why, "dropped a line from the server that is not a JSON-RPC message");
                    }
                }
                continue;
            }
        };
        let handled = match side {
            Side::Client => guard.from_client(message).await,
            Side::Server => guard.from_server(message).await,
        };
        let sent = match handled.action {
            Action::Forward(message) => onward.send(message.to_bytes()).await,
            Action::Reply(message) => back.send(message.to_bytes()).await,
            // A refused notification, or an action this build does not know: nothing passes.
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Writes each line to `output`, newline-terminated, flushing when no other line waits. When `close`
/// fires, it writes what is queued and ends, which closes `output`.
async fn write_lines(
    mut output: impl AsyncWrite + Unpin,
    mut lines: mpsc::Receiver<Bytes>,
    close: Option<oneshot::Receiver<()>>,
) {
    let mut close = close;
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            closed = async { close.as_mut()?.await.ok() }, if close.is_some() => {
                close = None;
                if closed.is_some() {
                    lines.close();
                }
                continue;
            }
        };
        let Some(line) = line else { break };
        let written = async {
            output.write_all(&line).await?;
            output.write_all(b"\n").await?;
            if lines.is_empty() {
                output.flush().await?;
            }
            std::io::Result::Ok(())
        };
        if let Err(e) = written.await {
            tracing::warn!(error = %e, "cannot write a message");
            return;
        }
    }
    let _ = output.flush().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_identities_are_stable_and_distinct() {
        assert_eq!(stdio_identity("files"), stdio_identity("files"));
        assert_ne!(stdio_identity("files").agent, stdio_identity("mail").agent);
    }
}
