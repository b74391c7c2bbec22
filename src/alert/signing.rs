//! Webhook signatures by the Standard Webhooks v1 specification: the receiver recomputes
//! `base64(HMAC-SHA256(secret, "{webhook-id}.{webhook-timestamp}.{body}"))` and compares it
//! with each `v1,<signature>` in the space-separated `webhook-signature` header (several
//! while secrets rotate). Secrets are written `whsec_<base64 of the key bytes>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A signing key. Its bytes are never printed.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a webhook secret must start with whsec_")]
    Prefix,
    #[error("a webhook secret's key (after whsec_) must be base64: {0}")]
    Base64(String),
    #[error("a webhook secret's key must be 24 to 64 bytes, not {0}")]
    Length(usize),
}

impl Secret {
    /// Parses `whsec_<base64>` (surrounding whitespace, as in a secret file, is ignored).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let key = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(SecretError::Prefix)?;
        let bytes = STANDARD
            .decode(key)
            .map_err(|e| SecretError::Base64(e.to_string()))?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(SecretError::Length(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        STANDARD.encode(mac.finalize().into_bytes())
    }
}

/// The `webhook-signature` header value: one `v1,<signature>` per secret, space-separated.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| format!("v1,{}", secret.signature(id, timestamp, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when any `v1` signature in `header` is `secret`'s for this message (compared in
/// constant time). What a receiver does; used by `alerts test` and the tests.
pub fn verify(secret: &Secret, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let expected = secret.signature(id, timestamp, body);
    header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .any(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn the_specification_example_signs_as_published() {
        // The example of the Standard Webhooks specification (and of its reference libraries).
        let secret = Secret::parse(SECRET).unwrap();
        let header = signature_header(
            std::slice::from_ref(&secret),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &secret,
            &header,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#
        ));
        assert!(!verify(
            &secret,
            &header,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            br#"{"test": 2432232314}"#
        ));
    }

    #[test]
    fn several_secrets_give_several_signatures_and_each_verifies() {
        let old = Secret::parse(SECRET).unwrap();
        let new = Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 32]))).unwrap();
        let header = signature_header(&[old.clone(), new.clone()], "id", 1, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&old, &header, "id", 1, b"{}"));
        assert!(verify(&new, &header, "id", 1, b"{}"));
        let wrong = Secret::parse(&format!("whsec_{}", STANDARD.encode([8u8; 32]))).unwrap();
        assert!(!verify(&wrong, &header, "id", 1, b"{}"));
    }

    #[test]
    fn malformed_secrets_are_refused_without_echoing_them() {
        assert_eq!(Secret::parse("MfKQ9r8G").unwrap_err(), SecretError::Prefix);
        assert!(matches!(
            Secret::parse("whsec_!!!"),
            Err(SecretError::Base64(_))
        ));
        assert_eq!(
            Secret::parse("whsec_AAAA").unwrap_err(),
            SecretError::Length(3)
        );
        assert_eq!(format!("{:?}", Secret::parse(SECRET).unwrap()), "Secret(…)");
    }
}
