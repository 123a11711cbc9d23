//! RS256 token signing, JWT parsing and verification, and the little X.509 parsing the emulator
//! needs (public key and validity of a client's certificate) without pulling in a full parser.

use jiff::Timestamp;
use ring::signature::{self, RsaKeyPair, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::util::{b64, b64url, b64url_decode, sha1, sha256};

const SIGNING_KEY_PEM: &str = include_str!("fixtures/signing-key.pem");
const SIGNING_CERT_PEM: &str = include_str!("fixtures/signing-cert.pem");

/// The emulator's token-signing key. Fixed (embedded) so that RSA key generation, which is slow in
/// debug builds, never runs; Entra also shares its signing keys across tenants.
pub(crate) struct SigningKey {
    key: RsaKeyPair,
    /// Tokens already verified (signature only), so a busy client costs one RSA check per token.
    verified: parking_lot::Mutex<std::collections::HashMap<String, Map<String, Value>>>,
    cert_der: Vec<u8>,
    pub(crate) kid: String,
}

impl SigningKey {
    pub(crate) fn load() -> Self {
        let key_der = pem_decode(SIGNING_KEY_PEM, "PRIVATE KEY").expect("embedded signing key");
        let cert_der = pem_decode(SIGNING_CERT_PEM, "CERTIFICATE").expect("embedded signing cert");
        let key = RsaKeyPair::from_pkcs8(&key_der).expect("embedded signing key is PKCS#8 RSA");
        let kid = b64url(&sha1(&cert_der));
        Self {
            key,
            verified: Default::default(),
            cert_der,
            kid,
        }
    }

    /// Signs `claims` as an RS256 JWT with `kid` and `x5t` headers, as Entra does.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let header =
            serde_json::json!({"typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid});
        sign_rs256(&self.key, &header, claims)
    }

    /// Verifies a JWT that this emulator issued; returns its claims.
    pub(crate) fn verify(&self, token: &str) -> Option<Map<String, Value>> {
        if let Some(claims) = self.verified.lock().get(token) {
            return Some(claims.clone());
        }
        let claims = self.verify_uncached(token)?;
        let mut cache = self.verified.lock();
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(token.to_string(), claims.clone());
        Some(claims)
    }

    fn verify_uncached(&self, token: &str) -> Option<Map<String, Value>> {
        let jwt = Jwt::parse(token)?;
        if jwt.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return None;
        }
        let public = UnparsedPublicKey::new(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            self.key.public().as_ref(),
        );
        public.verify(jwt.signed.as_bytes(), &jwt.signature).ok()?;
        Some(jwt.claims)
    }

    /// The JWKS entry for this key (kid, n, e, x5t, x5c).
    pub(crate) fn jwk(&self, issuer: &str) -> Value {
        let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.key.public());
        let strip = |b: &[u8]| -> Vec<u8> {
            let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
            b[i..].to_vec()
        };
        let (n, e) = (strip(&parts.n), strip(&parts.e));
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": b64url(&n),
            "e": b64url(&e),
            "x5c": [b64(&self.cert_der)],
            "cloud_instance_name": "microsoftonline.com",
            "issuer": issuer,
        })
    }
}

/// Signs `claims` with an RSA PKCS#8 key (used by tests and clients to build assertions and proofs).
pub fn sign_rs256_with_pkcs8(pkcs8_der: &[u8], header: &Value, claims: &Value) -> Option<String> {
    let key = RsaKeyPair::from_pkcs8(pkcs8_der).ok()?;
    Some(sign_rs256(&key, header, claims))
}

fn sign_rs256(key: &RsaKeyPair, header: &Value, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing");
    format!("{signed}.{}", b64url(&sig))
}

/// A compact JWT split into its parts; nothing is verified by parsing.
pub(crate) struct Jwt {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    signed: String,
    signature: Vec<u8>,
}

impl Jwt {
    pub(crate) fn parse(token: &str) -> Option<Self> {
        let mut parts = token.trim().split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Map<String, Value> = serde_json::from_slice(&b64url_decode(h)?).ok()?;
        let claims: Map<String, Value> = serde_json::from_slice(&b64url_decode(c)?).ok()?;
        Some(Self {
            header,
            claims,
            signed: format!("{h}.{c}"),
            signature: b64url_decode(s)?,
        })
    }

    /// Checks the signature against an X.509 certificate's RSA key (RS256 or PS256).
    pub(crate) fn verify_with_cert(&self, cert: &CertInfo) -> bool {
        let alg: &dyn signature::VerificationAlgorithm =
            match self.header.get("alg").and_then(Value::as_str) {
                Some("RS256") => &signature::RSA_PKCS1_2048_8192_SHA256,
                Some("PS256") => &signature::RSA_PSS_2048_8192_SHA256,
                _ => return false,
            };
        UnparsedPublicKey::new(alg, &cert.rsa_public_key)
            .verify(self.signed.as_bytes(), &self.signature)
            .is_ok()
    }

    pub(crate) fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    pub(crate) fn claim_i64(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    }

    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }
}

/// What the emulator needs from an X.509 certificate.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    pub(crate) rsa_public_key: Vec<u8>,
    pub(crate) not_before: Timestamp,
    pub(crate) not_after: Timestamp,
    pub(crate) sha1: Vec<u8>,
    pub(crate) sha256: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate; `None` unless it holds an RSA key (Entra accepts only RSA).
    pub(crate) fn parse(der: &[u8]) -> Option<Self> {
        let (cert, _) = der_read(der, 0x30)?;
        let (tbs, _) = der_read(cert, 0x30)?;
        let mut rest = tbs;
        if rest.first() == Some(&0xa0) {
            rest = der_skip(rest)?;
        }
        rest = der_skip(rest)?; // serial
        rest = der_skip(rest)?; // signature algorithm
        rest = der_skip(rest)?; // issuer
        let (validity, after) = der_read(rest, 0x30)?;
        let (not_before, vrest) = der_time(validity)?;
        let (not_after, _) = der_time(vrest)?;
        let rest = der_skip(after)?; // subject
        let (spki, _) = der_read(rest, 0x30)?;
        let (alg, spki_rest) = der_read(spki, 0x30)?;
        const RSA_OID: &[u8] = &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        if !alg.starts_with(RSA_OID) {
            return None;
        }
        let (bits, _) = der_read(spki_rest, 0x03)?;
        let rsa_public_key = bits.get(1..)?.to_vec();
        Some(Self {
            rsa_public_key,
            not_before,
            not_after,
            sha1: sha1(der),
            sha256: sha256(der),
        })
    }
}

/// Reads one DER element with the expected tag; returns (contents, remainder).
fn der_read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = der_any(input)?;
    (t == tag).then_some((content, rest))
}

fn der_skip(input: &[u8]) -> Option<&[u8]> {
    der_any(input).map(|(_, _, rest)| rest)
}

fn der_any(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let content = input.get(header..header + len)?;
    Some((tag, content, &input[header + len..]))
}

fn der_time(input: &[u8]) -> Option<(Timestamp, &[u8])> {
    let (tag, content, rest) = der_any(input)?;
    let s = std::str::from_utf8(content).ok()?.trim_end_matches('Z');
    let full = match tag {
        0x17 => {
            let yy: i32 = s.get(0..2)?.parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{s}")
        }
        0x18 => s.to_string(),
        _ => return None,
    };
    let ts = format!(
        "{}-{}-{}T{}:{}:{}Z",
        full.get(0..4)?,
        full.get(4..6)?,
        full.get(6..8)?,
        full.get(8..10)?,
        full.get(10..12)?,
        full.get(12..14)?
    )
    .parse()
    .ok()?;
    Some((ts, rest))
}

/// Decodes the first PEM block with the given label.
pub fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    crate::util::b64_decode(&pem[start..stop])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture_certificate() {
        let der = pem_decode(include_str!("fixtures/operator-cert.pem"), "CERTIFICATE").unwrap();
        let info = CertInfo::parse(&der).unwrap();
        assert!(info.not_after > info.not_before);
        assert_eq!(info.sha1.len(), 20);
    }

    #[test]
    fn signed_token_verifies_and_tampered_does_not() {
        let key = SigningKey::load();
        let token = key.sign(&serde_json::json!({"tid": "t"}));
        assert_eq!(key.verify(&token).unwrap()["tid"], "t");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64url(br#"{"tid":"x"}"#);
        parts[1] = &forged;
        assert!(key.verify(&parts.join(".")).is_none());
    }

    #[test]
    fn assertion_signed_with_certificate_key_verifies() {
        let key = pem_decode(include_str!("fixtures/operator-key.pem"), "PRIVATE KEY").unwrap();
        let der = pem_decode(include_str!("fixtures/operator-cert.pem"), "CERTIFICATE").unwrap();
        let cert = CertInfo::parse(&der).unwrap();
        let token = sign_rs256_with_pkcs8(
            &key,
            &serde_json::json!({"alg": "RS256"}),
            &serde_json::json!({"a": 1}),
        )
        .unwrap();
        assert!(Jwt::parse(&token).unwrap().verify_with_cert(&cert));
        let other = pem_decode(include_str!("fixtures/spare-cert.pem"), "CERTIFICATE").unwrap();
        assert!(
            !Jwt::parse(&token)
                .unwrap()
                .verify_with_cert(&CertInfo::parse(&other).unwrap())
        );
    }
}
