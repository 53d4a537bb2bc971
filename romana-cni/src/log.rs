//! The plugin's log: lines appended to the configured file (default
//! `/tmp/romana-cni.log`, as Romana did) and copied to stderr. Never stdout:
//! that is for the result or the error only.
//!
//! Everything from outside (container ids, interface names, messages that
//! quote input) is escaped before it is written, so no input can forge a
//! line; the file is opened without following a symlink (a file in `/tmp`
//! could be one planted by another user) and created mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogLevel;

pub struct Log {
    file: Option<PathBuf>,
    level: LogLevel,
    /// Prefix of every line: verb and container.
    context: String,
}

impl Log {
    pub fn new(file: Option<&Path>, level: LogLevel, context: String) -> Self {
        Self {
            file: file.map(Path::to_path_buf),
            level,
            context,
        }
    }

    pub fn at(&self, level: LogLevel, message: &str) {
        if level > self.level {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let label = match level {
            LogLevel::Error => "ERROR",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
        };
        let line = format!(
            "{}.{:03} {label} pid={} {} {message}\n",
            now.as_secs(),
            now.subsec_millis(),
            std::process::id(),
            escape(&self.context),
            message = escape(message),
        );
        if let Some(path) = &self.file {
            // Logging must never fail the operation: a log file that cannot
            // be written is skipped.
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
            {
                let _ = file.write_all(line.as_bytes());
            }
        }
        if level == LogLevel::Error {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    pub fn info(&self, message: &str) {
        self.at(LogLevel::Info, message);
    }

    pub fn error(&self, message: &str) {
        self.at(LogLevel::Error, message);
    }

    pub fn debug(&self, message: &str) {
        self.at(LogLevel::Debug, message);
    }
}

/// `text` with control characters (newlines among them) escaped, so a log
/// line is always exactly one line.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("c1"), "c1");
        assert_eq!(escape("c1\n0.000 INFO forged"), "c1\\n0.000 INFO forged");
        assert_eq!(escape("a\rb\u{1b}[2J"), "a\\rb\\u{1b}[2J");
    }
}
