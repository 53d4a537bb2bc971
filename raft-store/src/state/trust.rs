//! The cluster's trust, replicated: the certificates revoked when their
//! node was removed, and the join tokens a new node may redeem once.
//!
//! Both are decided here, deterministically, from the entries' proposer
//! timestamps: every member refuses the same certificates and accepts a
//! token at most once, whichever member the joiner reached.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::{Effect, Rejection};
use super::ClusterState;
use crate::entry::RequestMeta;

/// Longest lifetime of a join token: a day.
pub const MAX_JOIN_TOKEN_TTL_MS: u64 = 24 * 3600 * 1000;

/// Join tokens kept at once; expired ones are forgotten a day after they
/// expire, when the next token is created.
pub const MAX_JOIN_TOKENS: usize = 256;

/// Length of a token id (`[a-z0-9]`, kubeadm's form: `ID.SECRET`).
pub const JOIN_TOKEN_ID_LEN: usize = 6;

/// Revocations and join tokens.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustState {
    /// Node name → when it was removed (ms, the removal's proposer
    /// timestamp): certificates naming it that were issued before are
    /// refused by every member. A node wiped and joined again under the
    /// same name gets a newer certificate.
    pub revoked_nodes: BTreeMap<String, u64>,
    /// Join tokens by id.
    pub join_tokens: BTreeMap<String, JoinTokenRecord>,
}

impl TrustState {
    pub fn is_empty(&self) -> bool {
        self.revoked_nodes.is_empty() && self.join_tokens.is_empty()
    }
}

/// A join token: only the SHA-256 of its secret is in the log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct JoinTokenRecord {
    pub secret_digest: [u8; 32],
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub created_by: String,
    /// The node that redeemed it, and when; a token is redeemed once.
    pub redeemed: Option<(String, u64)>,
}

/// Checks a token id: [`JOIN_TOKEN_ID_LEN`] of `[a-z0-9]`.
pub fn check_join_token_id(id: &str) -> Result<(), Rejection> {
    if id.len() == JOIN_TOKEN_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(Rejection::invalid(format!(
            "a join token id is {JOIN_TOKEN_ID_LEN} of [a-z0-9]"
        )))
    }
}

/// Checks a token's lifetime: 1 ms to [`MAX_JOIN_TOKEN_TTL_MS`].
pub fn check_join_token_ttl(ttl_ms: u64) -> Result<(), Rejection> {
    if (1..=MAX_JOIN_TOKEN_TTL_MS).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(Rejection::invalid(format!(
            "a join token lives 1 ms to {} h",
            MAX_JOIN_TOKEN_TTL_MS / 3_600_000
        )))
    }
}

impl ClusterState {
    /// Whether a certificate naming `name`, issued at `issued_at_ms`, was
    /// revoked by the node's removal.
    pub fn is_certificate_revoked(&self, name: &str, issued_at_ms: u64) -> bool {
        self.trust
            .revoked_nodes
            .get(name)
            .is_some_and(|revoked_at_ms| issued_at_ms < *revoked_at_ms)
    }

    pub(crate) fn revoke_node_certificates(&mut self, name: &str, at_ms: u64) {
        self.trust.revoked_nodes.insert(name.to_string(), at_ms);
    }

    pub(crate) fn create_join_token(
        &mut self,
        id: &str,
        secret_digest: [u8; 32],
        ttl_ms: u64,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        check_join_token_id(id)?;
        check_join_token_ttl(ttl_ms)?;
        let now = meta.timestamp_ms;
        // Tokens a day past their expiry are of no use even to an audit of
        // "who redeemed what" (the log keeps that): forget them.
        self.trust
            .join_tokens
            .retain(|_, token| token.expires_at_ms.saturating_add(MAX_JOIN_TOKEN_TTL_MS) > now);
        if self.trust.join_tokens.contains_key(id) {
            return Err(Rejection::JoinTokenRefused {
                id: id.to_string(),
                reason: "a token with this id exists".into(),
            });
        }
        if self.trust.join_tokens.len() >= MAX_JOIN_TOKENS {
            return Err(Rejection::JoinTokenRefused {
                id: id.to_string(),
                reason: format!("{MAX_JOIN_TOKENS} tokens are live; let some expire"),
            });
        }
        let expires_at_ms = now.saturating_add(ttl_ms);
        self.trust.join_tokens.insert(
            id.to_string(),
            JoinTokenRecord {
                secret_digest,
                created_at_ms: now,
                expires_at_ms,
                created_by: meta.actor.clone(),
                redeemed: None,
            },
        );
        Ok(Effect::JoinTokenCreated { expires_at_ms })
    }

    pub(crate) fn redeem_join_token(
        &mut self,
        id: &str,
        secret_digest: [u8; 32],
        node: &str,
        meta: &RequestMeta,
    ) -> Result<Effect, Rejection> {
        let refused = |reason: &str| Rejection::JoinTokenRefused {
            id: id.to_string(),
            reason: reason.to_string(),
        };
        let token = self
            .trust
            .join_tokens
            .get_mut(id)
            .ok_or_else(|| refused("unknown token"))?;
        if token.secret_digest != secret_digest {
            return Err(refused("wrong token secret"));
        }
        if let Some((by, _)) = &token.redeemed {
            return Err(refused(&format!("already used (by {by})")));
        }
        if meta.timestamp_ms >= token.expires_at_ms {
            return Err(refused("expired"));
        }
        token.redeemed = Some((node.to_string(), meta.timestamp_ms));
        Ok(Effect::JoinTokenRedeemed {
            node: node.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{ClusterRequest, Command};
    use crate::layout::AddressLayout;
    use crate::state::{Effect, Outcome};
    use sha2::{Digest, Sha256};

    struct Log {
        state: ClusterState,
        index: u64,
    }

    impl Log {
        fn new() -> Self {
            let mut log = Self {
                state: ClusterState::default(),
                index: 0,
            };
            let init = Command::InitCluster {
                cluster_name: "romana".into(),
                voters_target: 3,
                layout: AddressLayout::default(),
            };
            assert!(matches!(log.at(0, init), Outcome::Applied(_)));
            log
        }

        fn at(&mut self, timestamp_ms: u64, command: Command) -> Outcome {
            self.index += 1;
            let request = ClusterRequest::new(
                RequestMeta {
                    actor: "client:admin:ops@a".into(),
                    request_id: format!("r{}", self.index),
                    timestamp_ms,
                },
                command,
            );
            self.state.apply(self.index, 0, &request).outcome
        }
    }

    fn digest(secret: &str) -> [u8; 32] {
        Sha256::digest(secret.as_bytes()).into()
    }

    fn redeem(id: &str, secret: &str, node: &str) -> Command {
        Command::RedeemJoinToken {
            id: id.into(),
            secret_digest: digest(secret),
            node: node.into(),
        }
    }

    fn refusal(outcome: Outcome) -> String {
        match outcome {
            Outcome::Rejected(Rejection::JoinTokenRefused { reason, .. }) => reason,
            other => panic!("expected a refused token, got {other:?}"),
        }
    }

    #[test]
    fn a_join_token_is_redeemed_once_with_its_secret_before_it_expires() {
        let mut log = Log::new();
        let create = |id: &str| Command::CreateJoinToken {
            id: id.into(),
            secret_digest: digest("0123456789abcdef"),
            ttl_ms: 60_000,
        };
        assert_eq!(
            log.at(1_000, create("abc123")),
            Outcome::Applied(Effect::JoinTokenCreated {
                expires_at_ms: 61_000
            })
        );
        assert!(refusal(log.at(1_500, create("abc123"))).contains("exists"));
        assert!(
            refusal(log.at(2_000, redeem("abc123", "wrong-secret-000", "host-b")))
                .contains("wrong token secret")
        );
        assert!(
            refusal(log.at(2_000, redeem("zzz999", "0123456789abcdef", "host-b")))
                .contains("unknown")
        );
        assert_eq!(
            log.at(2_000, redeem("abc123", "0123456789abcdef", "host-b")),
            Outcome::Applied(Effect::JoinTokenRedeemed {
                node: "host-b".into()
            })
        );
        assert!(
            refusal(log.at(3_000, redeem("abc123", "0123456789abcdef", "host-c")))
                .contains("already used (by host-b)")
        );
        // Another token, presented after its expiry.
        assert!(matches!(
            log.at(10_000, create("def456")),
            Outcome::Applied(_)
        ));
        assert_eq!(
            refusal(log.at(70_000, redeem("def456", "0123456789abcdef", "host-c"))),
            "expired"
        );
        // Bad ids and lifetimes are refused before they reach the state.
        for bad in [
            Command::CreateJoinToken {
                id: "ABC123".into(),
                secret_digest: [0; 32],
                ttl_ms: 1,
            },
            Command::CreateJoinToken {
                id: "abc124".into(),
                secret_digest: [0; 32],
                ttl_ms: MAX_JOIN_TOKEN_TTL_MS + 1,
            },
        ] {
            let request = ClusterRequest::new(
                RequestMeta {
                    actor: "a".into(),
                    request_id: "x".into(),
                    timestamp_ms: 1,
                },
                bad,
            );
            assert!(crate::state::precheck(&request).is_err());
            assert!(matches!(
                log.at(80_000, request.command),
                Outcome::Rejected(_)
            ));
        }
        // Expired tokens are forgotten a day after they expire.
        assert!(matches!(
            log.at(61_000 + MAX_JOIN_TOKEN_TTL_MS + 1, create("ghi789")),
            Outcome::Applied(_)
        ));
        assert_eq!(
            log.state.trust.join_tokens.keys().collect::<Vec<_>>(),
            vec!["def456", "ghi789"]
        );
    }

    #[test]
    fn removing_a_node_revokes_the_certificates_issued_before() {
        let mut log = Log::new();
        let register = Command::RegisterNode {
            node_id: 7,
            name: "host-b".into(),
            address: "192.0.2.7:9600".into(),
        };
        assert!(matches!(log.at(1_000, register), Outcome::Applied(_)));
        assert!(!log.state.is_certificate_revoked("host-b", 0));
        let remove = Command::RemoveNode {
            name: "host-b".into(),
            force: false,
        };
        assert!(matches!(
            log.at(50_500, remove.clone()),
            Outcome::Applied(_)
        ));
        assert!(log.state.is_certificate_revoked("host-b", 10_000));
        assert!(log.state.is_certificate_revoked("host-b", 50_499));
        assert!(!log.state.is_certificate_revoked("host-b", 50_500));
        assert!(!log.state.is_certificate_revoked("host-c", 10_000));
        // A refused removal (unknown node) revokes nothing.
        assert!(matches!(log.at(60_000, remove), Outcome::Rejected(_)));
        assert_eq!(log.state.trust.revoked_nodes.get("host-b"), Some(&50_500));
    }
}
