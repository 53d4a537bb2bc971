//! Joining with a token (kubeadm's model): an admin creates a short-lived,
//! single-use token on any member (`romanactl token create`); the joiner,
//! given the token and the CA's hash, connects to a member over TLS trusting
//! only a server that proves it holds that CA, presents the token, and
//! receives the CA key, from which it issues its own node certificate. The
//! member checks the token against its replica before proposing anything
//! (a wrong guess never becomes a log entry), then redeems it through the
//! log, so it is accepted once whichever member the joiner reached.

use std::time::Duration;

use raft_store::entry::Command;
use raft_store::state::trust::JOIN_TOKEN_ID_LEN;
use raft_store::state::{Effect, Outcome};
use romana_api::cluster::{JoinTokenView, RedeemBody, RedeemView};
use romana_api::paths::PATH_JOIN_TOKEN_REDEEM;

use super::{now_ms, Node};
use crate::api_error::ApiError;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::http_client::{ApiClient, CallError, Endpoint};
use crate::tls::{self, secret_digest, split_token, ClusterCa, JoinToken, JOIN_TOKEN_SECRET_LEN};

/// Default lifetime of a token.
pub const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// How long a joiner keeps trying members (the token may not have reached
/// the member's replica yet, or the member may be restarting).
const REDEEM_ATTEMPTS: u32 = 30;

fn random_token_part(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 32];
        // getrandom only fails if the OS has no entropy source at all.
        getrandom::getrandom(&mut bytes).expect("the OS random source is available");
        // 252 = 7 * 36: values above are dropped so that every character
        // is equally likely.
        for b in bytes.into_iter().filter(|b| *b < 252) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(b % 36)] as char);
        }
    }
    out
}

/// The joiner's side: redeems the token with one of `--join`'s members and
/// returns the cluster CA.
pub async fn redeem_token(config: &NodeConfig, token: &JoinToken) -> Result<ClusterCa, Error> {
    let pinned = tls::pinned_client_config(&token.ca_cert_hash).map_err(Error::Config)?;
    let body = RedeemBody {
        token: token.text(),
        name: config.name.clone(),
    };
    let mut last_error = String::new();
    for attempt in 1..=REDEEM_ATTEMPTS {
        for member in &config.join {
            let client = ApiClient::new(Endpoint::Tcp(member.clone()), Some(pinned.clone()));
            match client
                .post::<_, RedeemView>(PATH_JOIN_TOKEN_REDEEM, &body)
                .await
            {
                Ok(answer) => {
                    let ca = ClusterCa::from_key_pem(&answer.ca_key_pem).map_err(Error::Join)?;
                    if ca.hash() != token.ca_cert_hash {
                        return Err(Error::Join(format!(
                            "{member} answered with a CA whose hash is {}, not the pinned {}",
                            ca.hash(),
                            token.ca_cert_hash
                        )));
                    }
                    tracing::info!(via = %member, token = %token.id, "redeemed the join token");
                    return Ok(ca);
                }
                Err(CallError::Status { status, message })
                    if status == hyper::StatusCode::UNAUTHORIZED
                        || status == hyper::StatusCode::BAD_REQUEST =>
                {
                    // Refused for good (wrong, used or expired), unless the
                    // member's replica has not seen the token yet: retry a
                    // little, then give up with the member's reason.
                    last_error = format!("{member} refused the token: {message}");
                    if attempt >= 5 {
                        return Err(Error::Join(last_error));
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            tracing::warn!(via = %member, attempt, error = %last_error, "join token not redeemed");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(Error::Join(format!(
        "no member redeemed the token after {REDEEM_ATTEMPTS} attempts; last error: {last_error}"
    )))
}

impl Node {
    /// Creates a join token valid for `ttl` (an admin's request).
    pub async fn create_join_token(
        &self,
        ttl: Duration,
        actor: String,
    ) -> Result<JoinTokenView, ApiError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let id = random_token_part(JOIN_TOKEN_ID_LEN);
        let secret = random_token_part(JOIN_TOKEN_SECRET_LEN);
        let command = Command::CreateJoinToken {
            id: id.clone(),
            secret_digest: secret_digest(&secret),
            ttl_ms,
        };
        let applied = self.propose(command, actor, None).await?;
        match applied.outcome {
            Outcome::Applied(Effect::JoinTokenCreated { expires_at_ms }) => Ok(JoinTokenView {
                token: format!("{id}.{secret}"),
                expires_at_ms,
                ca_cert_hash: self.tls.ca.hash(),
            }),
            Outcome::Rejected(rejection) => Err(ApiError::from_rejection(&rejection)),
            Outcome::Applied(other) => Err(ApiError::Internal(format!(
                "unexpected outcome of a join token: {other}"
            ))),
        }
    }

    /// Redeems a join token for `name` (an anonymous client's request):
    /// checked against this replica first, then through the log.
    pub async fn redeem_join_token(&self, body: RedeemBody) -> Result<RedeemView, ApiError> {
        let refused = || ApiError::Unauthorized("unknown, used or expired join token".into());
        let (id, secret) = split_token(&body.token).map_err(ApiError::BadRequest)?;
        raft_store::entry::validate_node_name(&body.name).map_err(ApiError::BadRequest)?;
        let digest = secret_digest(&secret);
        {
            let projection = self.shared.read();
            let token = projection
                .state
                .trust
                .join_tokens
                .get(&id)
                .ok_or_else(refused)?;
            if token.secret_digest != digest
                || token.redeemed.is_some()
                || token.expires_at_ms <= now_ms()
            {
                return Err(refused());
            }
        }
        let command = Command::RedeemJoinToken {
            id: id.clone(),
            secret_digest: digest,
            node: body.name.clone(),
        };
        let actor = format!("client:join-token:{id}@{}", self.config.name);
        let applied = self.propose(command, actor, None).await?;
        match applied.outcome {
            Outcome::Applied(Effect::JoinTokenRedeemed { .. }) => {
                tracing::info!(token = %id, joiner = %body.name, "join token redeemed");
                Ok(RedeemView {
                    ca_key_pem: self.tls.ca.key_pem(),
                })
            }
            Outcome::Rejected(rejection) => Err(ApiError::Unauthorized(rejection.to_string())),
            Outcome::Applied(other) => Err(ApiError::Internal(format!(
                "unexpected outcome of a join token: {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_parts_are_of_the_token_alphabet() {
        for len in [JOIN_TOKEN_ID_LEN, JOIN_TOKEN_SECRET_LEN, 100] {
            let generated = random_token_part(len);
            assert_eq!(generated.len(), len);
            assert!(generated
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
        let token = format!(
            "{}.{}",
            random_token_part(JOIN_TOKEN_ID_LEN),
            random_token_part(JOIN_TOKEN_SECRET_LEN)
        );
        split_token(&token).expect("a generated token parses");
    }
}
