//! The cluster secret: what a node (or `romanactl`) derives the cluster's
//! certificate authority from. It is read from a file and never sent.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// A shared secret. Compared in constant time; never printed.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// A secret from its text; surrounding whitespace is ignored.
    pub fn new(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "cluster secret must be at least {MIN_SECRET_BYTES} bytes, got {}",
                text.len()
            ));
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err("cluster secret must be printable ASCII without spaces".into());
        }
        Ok(Self(Arc::from(text)))
    }

    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read cluster secret file {}: {e}", path.display()))?;
        Self::new(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison (length is not secret).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if expected.len() != presented.len() {
            return false;
        }
        expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        let secret = ClusterSecret::new("0123456789abcdef\n").expect("valid");
        assert!(secret.matches(b"0123456789abcdef"));
        assert!(!secret.matches(b"0123456789abcdeF"));
        assert!(!secret.matches(b"0123456789abcde"));
        assert!(!secret.matches(b""));
        assert!(ClusterSecret::new("short").is_err());
        assert!(ClusterSecret::new("with a space in it!!").is_err());
        assert_eq!(format!("{secret:?}"), "ClusterSecret(<redacted>)");
    }
}
