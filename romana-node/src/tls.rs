//! TLS on every TCP connection: the cluster's certificate authority, the
//! certificates it issues, and the rustls configurations of the node's
//! listener and of its clients.
//!
//! # The model
//!
//! - **One CA per cluster.** With `--cluster-secret-file` (one-machine and
//!   test setups, and Kubernetes, where the DaemonSet reads it from a
//!   Secret) the CA's Ed25519 key is derived from the secret with HKDF, so
//!   every holder of the secret derives the same CA and nothing about the
//!   secret ever crosses the network. Without it, a new cluster generates a
//!   random CA in `DATA_DIR/tls/`, and nodes join with a join token and the
//!   CA's hash (kubeadm's model).
//! - **Every member holds the CA key** (there is no master that could hold
//!   it alone), so every member can admit a joiner and mint its own
//!   certificate; like a kubeadm control-plane node, a compromised member
//!   compromises the cluster.
//! - **Identities are in the certificate subject**: `O=romana:node` for
//!   nodes (also the TLS server name [`NODE_SERVER_NAME`]), `romana:admin`
//!   and `romana:reader` for operators; `CN` is the name. The API reads the
//!   actor it records from the verified certificate, never from a header.
//! - **Revocation is replicated**: removing a node records, in the log, that
//!   certificates with its name issued before the removal are revoked
//!   ([`Revocations`]); both sides of every handshake, and every request,
//!   check it.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ED25519,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName as TlsName,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use raft_store::state::trust::JOIN_TOKEN_ID_LEN;
use raft_store::transport::ClusterSecret;

/// The TLS server name every node certificate carries and every client
/// asks for: peers are dialled by address, and what a client must know is
/// that it reached a node of this cluster.
pub const NODE_SERVER_NAME: &str = "romana-node";

/// Subject `O` of each role.
const ORG_NODE: &str = "romana:node";
const ORG_ADMIN: &str = "romana:admin";
const ORG_READER: &str = "romana:reader";

/// Serial numbers of certificates issued here: [`SERIAL_MARKER`], the
/// issue time (ms, big-endian u64), 7 random bytes.
const SERIAL_BYTES: usize = 16;
const SERIAL_MARKER: u8 = 0x40;

/// Lifetime of a node certificate; a node renews its own at start when
/// less than [`RENEW_BEFORE`] is left.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default lifetime of an operator certificate.
pub const OPERATOR_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// The HKDF label of the CA key derived from a cluster secret. Changing it
/// changes every derived CA.
const CA_DERIVATION_INFO: &[u8] = b"romana cluster CA ed25519 v1";

/// What a certificate lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A member: Raft RPCs, forwarded writes, everything.
    Node,
    /// An operator who may read and write.
    Admin,
    /// An operator who may only read.
    Reader,
}

impl Role {
    fn organization(self) -> &'static str {
        match self {
            Role::Node => ORG_NODE,
            Role::Admin => ORG_ADMIN,
            Role::Reader => ORG_READER,
        }
    }

    fn from_organization(text: &str) -> Option<Self> {
        match text {
            ORG_NODE => Some(Role::Node),
            ORG_ADMIN => Some(Role::Admin),
            ORG_READER => Some(Role::Reader),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }

    /// Whether the role may change the cluster.
    pub fn may_write(self) -> bool {
        matches!(self, Role::Node | Role::Admin)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "admin" => Ok(Role::Admin),
            "reader" => Ok(Role::Reader),
            other => Err(format!(
                "unknown role {other:?} (operators are admin or reader)"
            )),
        }
    }
}

/// Who a verified certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub role: Role,
    /// The subject's `CN`: a node's name, an operator's name.
    pub name: String,
    /// When the certificate was issued, ms since the epoch (from its serial
    /// number, see [`ClusterCa::issue`]; else its validity's start): a
    /// revocation covers the certificates issued before it.
    pub issued_at_ms: u64,
}

impl Identity {
    /// Reads the identity from a certificate already verified against the
    /// cluster CA.
    pub fn from_certificate(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("malformed certificate: {e}"))?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or("certificate has no common name")?;
        let organization = subject
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .ok_or("certificate has no organization (role)")?;
        let role = Role::from_organization(organization)
            .ok_or_else(|| format!("certificate names no Romana role: O={organization:?}"))?;
        let serial = cert.raw_serial();
        let issued_at_ms = match serial {
            [SERIAL_MARKER, ms @ ..] if serial.len() == SERIAL_BYTES => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&ms[..8]);
                u64::from_be_bytes(bytes)
            }
            _ => u64::try_from(cert.validity().not_before.timestamp())
                .unwrap_or(0)
                .saturating_mul(1000),
        };
        check_identity_name(name)?;
        Ok(Self {
            role,
            name: name.to_string(),
            issued_at_ms,
        })
    }
}

/// Names in certificates: what an actor field may hold.
pub fn check_identity_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "name {name:?} must be 1 to 63 letters, digits, '-', '.' or '_'"
        ))
    }
}

/// Decides whether an identity was revoked (in the node: the replicated
/// state's revocations).
#[derive(Clone)]
pub struct Revocations(Arc<dyn Fn(&Identity) -> bool + Send + Sync>);

impl Revocations {
    pub fn new(check: impl Fn(&Identity) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }

    pub fn is_revoked(&self, identity: &Identity) -> bool {
        (self.0)(identity)
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Revocations")
    }
}

/// Nothing revoked (operator tools, a joiner's first contact).
pub fn no_revocations() -> Revocations {
    Revocations::new(|_| false)
}

/// The cluster's certificate authority (with its key: every member holds
/// it).
pub struct ClusterCa {
    params: CertificateParams,
    key: KeyPair,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterCa({})", self.hash())
    }
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClusterCa {
    /// The CA derived from a cluster secret: the same on every machine that
    /// holds the secret (the key by HKDF-SHA256, the certificate from fixed
    /// parameters, signed deterministically).
    pub fn derive(secret: &ClusterSecret) -> Result<Self, String> {
        let hkdf = hkdf::Hkdf::<Sha256>::new(None, secret.as_str().as_bytes());
        let mut seed = [0u8; 32];
        hkdf.expand(CA_DERIVATION_INFO, &mut seed)
            .map_err(|e| format!("cannot derive the CA key: {e}"))?;
        Self::from_seed(&seed)
    }

    /// A new random CA (a cluster created without a secret).
    pub fn generate() -> Result<Self, String> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| format!("no random source: {e}"))?;
        Self::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; 32]) -> Result<Self, String> {
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(ed25519_pkcs8(seed)),
            &PKCS_ED25519,
        )
        .map_err(|e| format!("cannot load the CA key: {e}"))?;
        Self::from_key(key)
    }

    fn from_key(key: KeyPair) -> Result<Self, String> {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, "Romana cluster CA");
        subject.push(DnType::OrganizationName, "romana");
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        params.not_after = rcgen::date_time_ymd(2124, 1, 1);
        params.serial_number = Some(SerialNumber::from_slice(&[1]));
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot sign the CA certificate: {e}"))?;
        Ok(Self {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            params,
            key,
        })
    }

    /// Reads a CA written by [`Self::save`].
    pub fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("ca.key");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let key = KeyPair::from_pem(&text)
            .map_err(|e| format!("{}: not a private key: {e}", path.display()))?;
        Self::from_key(key)
    }

    /// Writes the CA's certificate and key (mode 0600) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        write_private(&dir.join("ca.key"), &self.key.serialize_pem())?;
        write_public(&dir.join("ca.crt"), &self.cert_pem())
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA key, PEM (handed to a node that joined with a token).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// `sha256:HEX` of the CA's SubjectPublicKeyInfo: what a joiner pins.
    pub fn hash(&self) -> String {
        ca_hash(&self.cert_der).unwrap_or_else(|e| format!("invalid: {e}"))
    }

    /// A CA from PEM (what a joining node receives).
    pub fn from_key_pem(key_pem: &str) -> Result<Self, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("not a private key: {e}"))?;
        Self::from_key(key)
    }

    /// A certificate for `role` named `name`, valid from now for `validity`,
    /// with a fresh Ed25519 key.
    pub fn issue(&self, role: Role, name: &str, validity: Duration) -> Result<IssuedCert, String> {
        check_identity_name(name)?;
        let key = KeyPair::generate_for(&PKCS_ED25519)
            .map_err(|e| format!("cannot generate a key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        subject.push(DnType::OrganizationName, role.organization());
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if role == Role::Node {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
            params.subject_alt_names = vec![SanType::DnsName(
                NODE_SERVER_NAME
                    .try_into()
                    .map_err(|e| format!("server name: {e}"))?,
            )];
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("clock before 1970: {e}"))?;
        let now_time = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64)
            .map_err(|e| format!("clock: {e}"))?;
        params.not_before = now_time;
        params.not_after = now_time + validity;
        // Serial: a marker, the issue time in ms, 7 random bytes. The time
        // is what revocation compares, at a finer grain than X.509's
        // seconds (a node wiped and rejoined right after its removal must
        // not fall under it).
        let mut serial = [0u8; SERIAL_BYTES];
        serial[0] = SERIAL_MARKER;
        serial[1..9].copy_from_slice(&(now.as_millis() as u64).to_be_bytes());
        getrandom::getrandom(&mut serial[9..]).map_err(|e| format!("no random source: {e}"))?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("cannot sign the certificate: {e}"))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// `sha256:HEX` of a certificate's SubjectPublicKeyInfo.
pub fn ca_hash(der: &[u8]) -> Result<String, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("malformed certificate: {e}"))?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(cert.public_key().raw))
    ))
}

/// The PKCS#8 v1 encoding of an Ed25519 private key from its 32-byte seed
/// (RFC 8410: a fixed prefix, then the seed).
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

pub fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

pub fn write_public(path: &Path, text: &str) -> Result<(), String> {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The crypto provider of every configuration here (ring, TLS 1.3 only).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and key this side presents, and the CA it trusts.
#[derive(Clone)]
pub struct Credentials {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    /// Who the certificate names.
    pub identity: Identity,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials({} {})",
            self.identity.role.as_str(),
            self.identity.name
        )
    }
}

impl Credentials {
    /// From PEM texts: the certificate, its key, the CA's certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Result<Self, String> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("not a certificate: {e}"))?;
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| format!("not a CA certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("not a private key: {e}"))?;
        let identity = Identity::from_certificate(&cert)?;
        // Refuse a certificate its CA did not sign here, not at every peer.
        let roots = roots(&ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| format!("CA certificate: {e}"))?;
        verifier
            .verify_client_cert(&cert, &[], UnixTime::now())
            .map_err(|e| format!("the certificate is not valid under this CA: {e}"))?;
        Ok(Self {
            chain: vec![cert, ca.clone()],
            ca,
            key: Arc::new(key),
            identity,
        })
    }

    /// Reads `cert`, `key` and `ca` files.
    pub fn from_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        Self::from_pem(&read(cert)?, &read(key)?, &read(ca)?)
            .map_err(|e| format!("{}: {e}", cert.display()))
    }

    /// A fresh certificate from `ca` for `role` and `name`, in memory.
    pub fn issue(
        ca: &ClusterCa,
        role: Role,
        name: &str,
        validity: Duration,
    ) -> Result<Self, String> {
        let issued = ca.issue(role, name, validity)?;
        Self::from_pem(&issued.cert_pem, &issued.key_pem, &ca.cert_pem())
    }

    /// The configuration of the node's TCP listener: TLS 1.3, this
    /// certificate, client certificates verified against the CA and
    /// checked against `revocations` (a client without one is let through
    /// the handshake as anonymous; the API refuses it everything but a
    /// token-authenticated join).
    pub fn server_config(&self, revocations: Revocations) -> Result<Arc<ServerConfig>, String> {
        let inner = WebPkiClientVerifier::builder_with_provider(roots(&self.ca)?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client verifier: {e}"))?;
        let verifier = Arc::new(ClusterClientVerifier { inner, revocations });
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("certificate: {e}"))?;
        Ok(Arc::new(config))
    }

    /// The configuration of a client dialling nodes: TLS 1.3, the server
    /// must hold a node certificate of this CA that is not revoked; this
    /// certificate is presented.
    pub fn client_config(&self, revocations: Revocations) -> Result<Arc<ClientConfig>, String> {
        let verifier = node_verifier(&self.ca, revocations)?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("certificate: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// A client configuration with a certificate for `role` and `name` issued
/// in memory by the CA derived from `secret` (romanactl with
/// `--cluster-secret-file`, the benchmark, tests).
pub fn secret_client_config(
    secret: &ClusterSecret,
    role: Role,
    name: &str,
) -> Result<Arc<ClientConfig>, String> {
    let ca = ClusterCa::derive(secret)?;
    Credentials::issue(&ca, role, name, Duration::from_secs(24 * 3600))?
        .client_config(no_revocations())
}

/// A client configuration without a certificate of its own, trusting only a
/// node certificate of the CA whose SubjectPublicKeyInfo hashes to
/// `ca_hash` (the joiner's first connection: it pins the CA it was told).
pub fn pinned_client_config(ca_hash: &str) -> Result<Arc<ClientConfig>, String> {
    let verifier = Arc::new(PinnedCaVerifier {
        ca_hash: ca_hash.to_string(),
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn roots(ca: &CertificateDer<'static>) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| format!("CA certificate: {e}"))?;
    Ok(Arc::new(roots))
}

fn node_verifier(
    ca: &CertificateDer<'static>,
    revocations: Revocations,
) -> Result<Arc<NodeServerVerifier>, String> {
    let inner = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider())
        .build()
        .map_err(|e| format!("server verifier: {e}"))?;
    Ok(Arc::new(NodeServerVerifier { inner, revocations }))
}

/// The identity of a verified certificate, refused if it is revoked or is
/// not of `required` (when given).
fn admit(
    end_entity: &CertificateDer<'_>,
    revocations: &Revocations,
    required: Option<Role>,
) -> Result<Identity, rustls::Error> {
    let identity = Identity::from_certificate(end_entity)
        .map_err(|e| rustls::Error::InvalidCertificate(CertificateError::Other(other(e))))?;
    if required.is_some_and(|role| role != identity.role) {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose,
        ));
    }
    if revocations.is_revoked(&identity) {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
    }
    Ok(identity)
}

fn other(message: String) -> rustls::OtherError {
    #[derive(Debug)]
    struct Message(String);
    impl fmt::Display for Message {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Message {}
    rustls::OtherError(Arc::new(Message(message)))
}

/// The handshake signature checks of every verifier here: those of the
/// crypto provider (what rustls' own webpki verifiers do).
macro_rules! provider_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &provider().signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &provider().signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// The listener's check of client certificates: chains to the CA (webpki),
/// then names a role and is not revoked.
#[derive(Debug)]
struct ClusterClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
}

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[TlsName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        admit(end_entity, &self.revocations, None)?;
        Ok(ClientCertVerified::assertion())
    }

    provider_signatures!();
}

/// A client's check of the node it reached: a node certificate of the CA
/// for [`NODE_SERVER_NAME`], not revoked.
#[derive(Debug)]
struct NodeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    revocations: Revocations,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(NODE_SERVER_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp, now)?;
        admit(end_entity, &self.revocations, Some(Role::Node))?;
        Ok(ServerCertVerified::assertion())
    }

    provider_signatures!();
}

/// The joiner's check: the server sends its certificate and the CA's; the
/// CA must hash to the pinned value, and the node certificate must verify
/// under it.
#[derive(Debug)]
struct PinnedCaVerifier {
    ca_hash: String,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|cert| ca_hash(cert).is_ok_and(|hash| hash == self.ca_hash))
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let verifier = node_verifier(&ca.clone().into_owned(), no_revocations())
            .map_err(rustls::Error::General)?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    provider_signatures!();
}

/// Where a node keeps its TLS material: `DATA_DIR/tls`.
pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// The node's own certificate: the one in `dir` if it is this CA's, names
/// this node and has more than [`RENEW_BEFORE`] left; otherwise a new one,
/// written there. The CA's certificate is written beside it for operators.
pub fn node_credentials(ca: &ClusterCa, dir: &Path, name: &str) -> Result<Credentials, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (cert_path, key_path) = (dir.join("node.crt"), dir.join("node.key"));
    let ca_pem = ca.cert_pem();
    if let (Ok(cert), Ok(key)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        if let Ok(existing) = Credentials::from_pem(&cert, &key, &ca_pem) {
            let fresh = time_left(&cert).is_some_and(|left| left > RENEW_BEFORE);
            if existing.identity.role == Role::Node && existing.identity.name == name && fresh {
                write_public(&dir.join("ca.crt"), &ca_pem)?;
                return Ok(existing);
            }
        }
    }
    let issued = ca.issue(Role::Node, name, NODE_CERT_VALIDITY)?;
    write_private(&key_path, &issued.key_pem)?;
    write_public(&cert_path, &issued.cert_pem)?;
    write_public(&dir.join("ca.crt"), &ca_pem)?;
    Credentials::from_pem(&issued.cert_pem, &issued.key_pem, &ca_pem)
}

/// Time left before a PEM certificate expires.
fn time_left(cert_pem: &str) -> Option<Duration> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    not_after.checked_sub(now).map(Duration::from_secs)
}

// Join tokens (see `node::join` for how they are created and redeemed).

/// Length of a token's secret part (`[a-z0-9]`: about 82 bits).
pub const JOIN_TOKEN_SECRET_LEN: usize = 16;

/// A join token and the CA hash it is to be redeemed against.
#[derive(Clone)]
pub struct JoinToken {
    pub id: String,
    secret: String,
    pub ca_cert_hash: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}.<redacted>)", self.id)
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl JoinToken {
    /// `ID.SECRET` and `sha256:HEX`.
    pub fn parse(token: &str, ca_cert_hash: &str) -> Result<Self, String> {
        let (id, secret) = split_token(token)?;
        let hex_part = ca_cert_hash
            .strip_prefix("sha256:")
            .ok_or("--ca-cert-hash must be sha256:HEX")?;
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("--ca-cert-hash must be sha256: and 64 hex digits".into());
        }
        Ok(Self {
            id,
            secret,
            ca_cert_hash: format!("sha256:{}", hex_part.to_ascii_lowercase()),
        })
    }

    pub fn text(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

/// `ID.SECRET` → (id, secret), checked.
pub fn split_token(token: &str) -> Result<(String, String), String> {
    let (id, secret) = token.trim().split_once('.').ok_or("a token is ID.SECRET")?;
    if id.len() != JOIN_TOKEN_ID_LEN
        || secret.len() != JOIN_TOKEN_SECRET_LEN
        || !id.bytes().chain(secret.bytes()).all(is_token_char)
    {
        return Err(format!(
            "a token is {JOIN_TOKEN_ID_LEN} and {JOIN_TOKEN_SECRET_LEN} characters of [a-z0-9] joined by '.'"
        ));
    }
    Ok((id.to_string(), secret.to_string()))
}

/// SHA-256 of a token's secret: what the log records.
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// How long a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's connector for nodes' TCP listeners: TCP, then TLS with a
/// [`ClientConfig`] from this module, asking for [`NODE_SERVER_NAME`]
/// whatever address is dialled.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

/// A client's TLS connection to a node.
pub struct TlsStream(TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>);

impl tower::Service<hyper::Uri> for TlsConnector {
    type Response = TlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TlsStream, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let authority = uri
                .authority()
                .ok_or_else(|| std::io::Error::other(format!("no address in {uri}")))?
                .to_string();
            let tcp = tokio::net::TcpStream::connect(&authority).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(NODE_SERVER_NAME).map_err(std::io::Error::other)?;
            let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("TLS handshake with {authority} timed out"),
                    )
                })??;
            Ok(TlsStream(TokioIo::new(tls)))
        })
    }
}

impl Connection for TlsStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text).expect("valid secret")
    }

    #[test]
    fn a_secret_derives_the_same_ca_everywhere_and_another_secret_another() {
        let a = ClusterCa::derive(&secret("0123456789abcdef-one")).expect("derive");
        let again = ClusterCa::derive(&secret("0123456789abcdef-one")).expect("derive");
        let b = ClusterCa::derive(&secret("0123456789abcdef-two")).expect("derive");
        assert_eq!(a.cert_der(), again.cert_der());
        assert_eq!(a.hash(), again.hash());
        assert_ne!(a.hash(), b.hash());
        assert!(a.hash().starts_with("sha256:") && a.hash().len() == 7 + 64);
    }

    #[test]
    fn certificates_carry_their_role_and_name_and_verify_only_under_their_ca() {
        let ca = ClusterCa::derive(&secret("0123456789abcdef-one")).expect("derive");
        let other = ClusterCa::generate().expect("generate");
        let reader = ca
            .issue(Role::Reader, "alice", OPERATOR_CERT_VALIDITY)
            .expect("issue");
        let creds = Credentials::from_pem(&reader.cert_pem, &reader.key_pem, &ca.cert_pem())
            .expect("valid");
        assert_eq!(creds.identity.role, Role::Reader);
        assert_eq!(creds.identity.name, "alice");
        let error = Credentials::from_pem(&reader.cert_pem, &reader.key_pem, &other.cert_pem())
            .expect_err("another CA");
        assert!(error.contains("not valid under this CA"), "{error}");
        assert!(ca
            .issue(Role::Admin, "bad name", OPERATOR_CERT_VALIDITY)
            .is_err());
        // A reloaded CA signs certificates the original's holders accept.
        let dir = tempfile::tempdir().expect("tempdir");
        other.save(dir.path()).expect("save");
        let reloaded = ClusterCa::load(dir.path()).expect("load");
        assert_eq!(reloaded.hash(), other.hash());
        let node = reloaded
            .issue(Role::Node, "host-a", NODE_CERT_VALIDITY)
            .expect("issue");
        Credentials::from_pem(&node.cert_pem, &node.key_pem, &other.cert_pem()).expect("valid");
    }

    #[test]
    fn tokens_parse_strictly_and_never_print_their_secret() {
        let hash = format!("sha256:{}", "AB".repeat(32));
        let token = JoinToken::parse("abc123.0123456789abcdef", &hash).expect("valid");
        assert_eq!(token.ca_cert_hash, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(format!("{token:?}"), "JoinToken(abc123.<redacted>)");
        for bad in [
            "abc123",
            "abc12.0123456789abcdef",
            "ABC123.0123456789abcdef",
            "abc123.0123456789abcde",
            "abc123.0123456789abcdef0",
            "abc123.0123456789abcde!",
        ] {
            assert!(JoinToken::parse(bad, &hash).is_err(), "{bad}");
        }
        assert!(JoinToken::parse("abc123.0123456789abcdef", "sha256:12").is_err());
        assert!(JoinToken::parse("abc123.0123456789abcdef", &"ab".repeat(32)).is_err());
    }
}
