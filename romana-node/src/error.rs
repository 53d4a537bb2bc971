//! The node crate's errors for start-up and commands ([`Error`]), with the
//! context wrapper for I/O. Shared by the daemon and `romanactl`, so it
//! depends on nothing of the server; the API's errors are in
//! [`crate::api_error`].

use std::fmt::Display;

/// Why a node (or a command) could not do what was asked. Each variant
/// renders as one line an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("join: {0}")]
    Join(String),
    #[error("{0}")]
    Api(String),
}

/// Adds context to I/O errors: `.context("open data dir")`.
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T, Error>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn context(self, context: impl Display) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context.to_string(),
            source,
        })
    }
}
