//! The plugin's log: lines appended to the configured file (default
//! `/tmp/romana-cni.log`, as Romana did) and copied to stderr. Never stdout:
//! that is for the result or the error only.

use std::io::Write;
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
            self.context
        );
        if let Some(path) = &self.file {
            // Logging must never fail the operation: a log file that cannot
            // be written is skipped.
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
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
