//! `romana`: the CNI plugin binary. Reads stdin and the environment, runs one
//! verb, prints the result or the error object on stdout (nothing else ever
//! goes there) and exits non-zero on error.

use std::io::{Read, Write};

use romana_cni::config::Environment;
use romana_cni::error::{code, CniError};
use romana_cni::plugin;

/// Largest network config read from stdin.
const MAX_STDIN_BYTES: u64 = 4 * 1024 * 1024;

fn main() {
    let started = std::time::Instant::now();
    let environment = Environment::from_process();
    let mut stdin = Vec::new();
    let outcome = match std::io::stdin()
        .take(MAX_STDIN_BYTES)
        .read_to_end(&mut stdin)
    {
        Ok(_) => plugin::run(&environment, &stdin, started),
        Err(e) => plugin::Outcome {
            cni_version: romana_cni::version::LATEST.into(),
            result: Err(CniError::new(
                code::IO_FAILURE,
                format!("cannot read stdin: {e}"),
            )),
        },
    };
    let mut stdout = std::io::stdout().lock();
    match outcome.result {
        Ok(Some(result)) => {
            let _ = writeln!(stdout, "{result}");
        }
        Ok(None) => {}
        Err(mut error) => {
            error.cni_version = outcome.cni_version;
            let text = serde_json::to_string(&error).unwrap_or_else(|_| {
                format!("{{\"code\":{},\"msg\":\"unprintable error\"}}", error.code)
            });
            let _ = writeln!(stdout, "{text}");
            let _ = stdout.flush();
            std::process::exit(1);
        }
    }
}
