//! A minimal synchronous HTTP/1.1 client for the local node's API, over its
//! unix socket. The plugin lives for
//! milliseconds; a blocking socket and one request per connection are all it
//! needs, and keep the binary small.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use romana_api::ErrorCode;
use serde_json::Value;

use crate::config::NodeEndpoint;
use crate::error::{code, CniError, Result};

/// Deadline of one call. A write waits for the cluster to commit it, which
/// the node bounds at 5 s by default; this leaves room for forwarding.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest answer read.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// An answer: HTTP status and JSON body (`Null` if empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// How long the node says it took (its `Server-Timing` header), ms.
    pub node_ms: Option<f64>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The node's error code (`Other` when the body has none).
    pub fn code(&self) -> ErrorCode {
        self.body
            .get("code")
            .cloned()
            .and_then(|code| serde_json::from_value(code).ok())
            .unwrap_or(ErrorCode::Other)
    }

    /// The node's error message, or the status.
    pub fn message(&self) -> String {
        self.body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    /// The CNI error for an unsuccessful answer: 11 when the cluster cannot
    /// take requests now, 100 when it refused this one.
    pub fn into_error(self, what: &str) -> CniError {
        let retry = self.status == 503 || self.status == 421;
        CniError::new(
            if retry {
                code::TRY_AGAIN_LATER
            } else {
                code::NODE_REFUSED
            },
            format!("{what}: {}", self.message()),
        )
    }
}

pub struct NodeClient {
    endpoint: NodeEndpoint,
    /// The CNI command this invocation runs, sent in a header.
    command: Option<&'static str>,
}

impl NodeClient {
    pub fn new(endpoint: NodeEndpoint) -> Result<Self> {
        Ok(Self {
            endpoint,
            command: None,
        })
    }

    /// Tells the node which CNI command its requests serve (its metrics
    /// count CNI requests by command).
    pub fn for_command(mut self, command: &'static str) -> Self {
        self.command = Some(command);
        self
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            NodeEndpoint::Unix(path) => path.display().to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Result<Answer> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.call("POST", path, Some(body))
    }

    /// One request. A node that cannot be reached is code 11 (try again).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Answer> {
        let unreachable = |e: std::io::Error| {
            CniError::new(
                code::TRY_AGAIN_LATER,
                format!("cannot reach the romana node at {}: {e}", self.describe()),
            )
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        );
        if let Some(command) = self.command {
            request.push_str(&format!(
                "{}: {command}\r\n",
                romana_api::paths::CNI_COMMAND_HEADER
            ));
        }
        request.push_str("\r\n");
        request.push_str(&payload);
        let raw = match &self.endpoint {
            NodeEndpoint::Unix(path) => {
                let stream = UnixStream::connect(path).map_err(unreachable)?;
                stream
                    .set_read_timeout(Some(CALL_TIMEOUT))
                    .map_err(unreachable)?;
                stream
                    .set_write_timeout(Some(CALL_TIMEOUT))
                    .map_err(unreachable)?;
                exchange(stream, request.as_bytes()).map_err(unreachable)?
            }
        };
        parse_answer(&raw).map_err(|reason| {
            CniError::new(
                code::TRY_AGAIN_LATER,
                format!(
                    "unreadable answer from the romana node at {}: {reason}",
                    self.describe()
                ),
            )
        })
    }
}

fn exchange<S: Read + Write>(mut stream: S, request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER_BYTES as u64)
        .read_to_end(&mut answer)?;
    Ok(answer)
}

/// Status line, headers, body (content-length or chunked, or to the end).
fn parse_answer(raw: &[u8]) -> std::result::Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    let mut chunked = false;
    let mut length = None;
    let mut node_ms = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name == "content-length" {
                length = value.parse::<usize>().ok();
            } else if name == "server-timing" {
                node_ms = server_timing_ms(value);
            }
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err("body shorter than its content-length".into()),
            None => rest.to_vec(),
        }
    };
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(
            |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_string() }),
        )
    };
    Ok(Answer {
        status,
        body,
        node_ms,
    })
}

/// The `dur` of a `Server-Timing` value's first metric (`node;dur=1.25`).
fn server_timing_ms(value: &str) -> Option<f64> {
    value
        .split(',')
        .next()?
        .split(';')
        .find_map(|param| param.trim().strip_prefix("dur="))
        .and_then(|dur| dur.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
}

fn dechunk(mut rest: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size {
            return Err("truncated chunk".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_length_or_chunks() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\":1}\n";
        let answer = parse_answer(plain).expect("parses");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["a"], 1);
        let chunked = b"HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"err\r\n8\r\nor\":\"x\"}\r\n0\r\n\r\n";
        let answer = parse_answer(chunked).expect("parses");
        assert_eq!(answer.status, 409);
        assert_eq!(answer.message(), "x");
        assert!(parse_answer(b"garbage").is_err());
        let timed =
            b"HTTP/1.1 200 OK\r\nserver-timing: node;dur=1.25\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(timed).expect("parses").node_ms, Some(1.25));
        assert_eq!(
            server_timing_ms("node;desc=\"x\";dur=0.5, db;dur=9"),
            Some(0.5)
        );
        assert_eq!(server_timing_ms("node;dur=-1"), None);
        assert_eq!(server_timing_ms("node"), None);
    }
}
