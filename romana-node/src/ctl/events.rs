//! `romanactl events [--follow]`: the node's events, one line each (or one
//! JSON object per line with `-o json`), as they happen with `--follow`.

use std::io::Write;

use http_body_util::BodyExt;
use hyper::Method;
use romana_api::events::EventView;
use romana_api::paths::PATH_EVENTS;

use super::Output;
use crate::error::Error;
use crate::http_client::ApiClient;

/// One event as a line of text.
pub fn event_line(event: &EventView) -> String {
    let index = event.index.map(|i| format!(" [{i}]")).unwrap_or_default();
    let actor = event
        .actor
        .as_deref()
        .map(|a| format!(" (by {a})"))
        .unwrap_or_default();
    format!(
        "{} {} {}{index} {}{actor}",
        event.time, event.node, event.kind, event.message
    )
}

fn print(event: &EventView, output: Output, kinds: &[String]) -> Result<(), Error> {
    if !kinds.is_empty() && !kinds.contains(&event.kind) {
        return Ok(());
    }
    let text = match output {
        Output::Json => {
            serde_json::to_string(event).map_err(|e| Error::Api(format!("encode output: {e}")))?
        }
        Output::Table => event_line(event),
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) ends the command quietly.
    if writeln!(stdout, "{text}")
        .and_then(|_| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
    Ok(())
}

/// Prints the events after `since` (and, with `follow`, every new one
/// until the node ends the stream). Returns what is left to print.
pub async fn events(
    client: &ApiClient,
    output: Output,
    since: Option<u64>,
    follow: bool,
    kinds: &[String],
) -> Result<String, Error> {
    let mut path = format!("{PATH_EVENTS}?follow={follow}");
    if let Some(since) = since {
        path.push_str(&format!("&since={since}"));
    }
    let response = client
        .send(Method::GET, &path, "application/json", Vec::new())
        .await
        .map_err(|e| Error::Api(e.to_string()))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = serde_json::from_slice::<romana_api::ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        return Err(Error::Api(format!("{status}: {message}")));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Api(format!("the event stream broke: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            // Empty lines are the stream's heartbeat.
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: EventView = serde_json::from_slice(line)
                .map_err(|e| Error::Api(format!("unexpected event line: {e}")))?;
            print(&event, output, kinds)?;
        }
    }
    if follow {
        return Err(Error::Api(
            "the node ended the event stream (it is stopping)".into(),
        ));
    }
    Ok(String::new())
}
