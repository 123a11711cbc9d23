//! The certificates behind certificate credentials: generating an RSA key pair and a self-signed
//! certificate, reading a certificate (and checking that a key is its key) from PEM, and the PEM
//! bundle the Azure SDKs read.
//!
//! Crates, each for what the others cannot do: `rsa` generates the key pair (ring, the TLS stack's
//! crypto, can sign with RSA but not generate RSA keys); `rcgen` builds and signs the certificate
//! (with ring); `x509-parser` reads certificates (validity, public key); ring hashes. Proofs of
//! possession and client assertions are signed by [`crate::graph::CertificateAssertion`].
//! Nothing here logs, and no error message carries key material.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::{SignedDuration, Timestamp};

use crate::graph::SecretString;

/// The key size generated: what Entra accepts for client assertions (RS256, 2048 bits or more).
pub const RSA_BITS: usize = 2048;

/// Why a certificate could not be made or read. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating the RSA key pair failed: {0}")]
    KeyGeneration(String),
    #[error("building the certificate failed: {0}")]
    Build(String),
    #[error("no CERTIFICATE block in the PEM")]
    NoCertificate,
    #[error("the certificate is not valid X.509: {0}")]
    Parse(String),
    #[error(
        "the certificate's key is not RSA; Entra accepts RSA certificates for client assertions"
    )]
    NotRsa,
    #[error("no unencrypted PKCS#8 or PKCS#1 RSA private key in the key PEM")]
    NoKey,
}

/// A certificate as the operator needs to know it (public parts only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    pub der: Vec<u8>,
    /// SHA-1 of the DER, upper-case hex: Entra's thumbprint.
    pub thumbprint: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// RSA modulus size in bits.
    pub rsa_bits: usize,
    /// The subject public key (PKCS#1 RSAPublicKey DER), to match private keys against.
    pub public_key: Vec<u8>,
}

impl CertificateInfo {
    /// Standard base64 of the DER: Graph's `keyCredential.key`.
    pub fn key_base64(&self) -> String {
        STANDARD.encode(&self.der)
    }

    fn sha1(&self) -> ring::digest::Digest {
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der)
    }

    /// base64url of SHA-1(DER): a JWT's `x5t` header.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha1())
    }

    /// Standard base64 of the SHA-1 thumbprint: Graph's `customKeyIdentifier` of a certificate.
    pub fn custom_key_identifier(&self) -> String {
        STANDARD.encode(self.sha1())
    }
}

/// A generated key pair and its self-signed certificate.
#[derive(Debug)]
pub struct GeneratedCertificate {
    pub info: CertificateInfo,
    pub cert_pem: String,
    /// Unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`); redacted in `Debug`.
    pub key_pem: SecretString,
}

fn to_offset(t: Timestamp) -> Result<time::OffsetDateTime, CertError> {
    time::OffsetDateTime::from_unix_timestamp(t.as_second())
        .map_err(|e| CertError::Build(e.to_string()))
}

/// An RSA 2048 key pair and a self-signed certificate for client authentication: CN =
/// `common_name`, valid from 5 minutes before `now` (clock skew) for `lifetime`, random serial,
/// sha256WithRSAEncryption, not a CA, key usage digitalSignature, extended key usage clientAuth.
pub fn generate(
    common_name: &str,
    lifetime: SignedDuration,
    now: Timestamp,
) -> Result<GeneratedCertificate, CertError> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
        .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
    let key_pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
    let key_pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| CertError::Build(e.to_string()))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = to_offset(now - SignedDuration::from_mins(5))?;
    params.not_after = to_offset(
        now.checked_add(lifetime)
            .map_err(|e| CertError::Build(e.to_string()))?,
    )?;
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| CertError::Build(e.to_string()))?;
    Ok(GeneratedCertificate {
        info: parse_certificate_der(cert.der())?,
        cert_pem: cert.pem(),
        key_pem: SecretString::new(key_pem.as_str()),
    })
}

/// The first CERTIFICATE block of a PEM bundle (a chain starts with the leaf).
pub fn parse_certificate_pem(pem: &str) -> Result<CertificateInfo, CertError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or(CertError::NoCertificate)?;
    parse_certificate_der(&der)
}

fn parse_certificate_der(der: &[u8]) -> Result<CertificateInfo, CertError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
    let spki = &cert.tbs_certificate.subject_pki;
    let rsa_bits = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size(),
        _ => return Err(CertError::NotRsa),
    };
    let time = |t: &ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| CertError::Parse(e.to_string()))
    };
    let validity = cert.validity();
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    Ok(CertificateInfo {
        der: der.to_vec(),
        thumbprint: sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
        not_before: time(&validity.not_before)?,
        not_after: time(&validity.not_after)?,
        rsa_bits,
        public_key: spki.subject_public_key.data.to_vec(),
    })
}

/// Whether an unencrypted PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1 (`BEGIN RSA PRIVATE KEY`,
/// cert-manager's default) PEM key is the private key of `cert`.
pub fn key_matches(key_pem: &str, cert: &CertificateInfo) -> Result<bool, CertError> {
    use ring::signature::{KeyPair, RsaKeyPair};
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| CertError::NoKey)?;
    let pair = match &key {
        PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
        PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
        _ => return Err(CertError::NoKey),
    }
    .map_err(|_| CertError::NoKey)?;
    Ok(pair.public_key().as_ref() == cert.public_key.as_slice())
}

/// Certificate then unencrypted private key in one PEM: what azure-identity's certificate
/// credential and `AZURE_CLIENT_CERTIFICATE_PATH` read.
pub fn client_pem(cert_pem: &str, key_pem: &str) -> SecretString {
    let mut pem = cert_pem.trim_end().to_string();
    pem.push('\n');
    pem.push_str(key_pem.trim_end());
    pem.push('\n');
    SecretString::new(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-02T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_generated_certificate_reads_back_with_its_key() {
        let g = generate("api-cert", SignedDuration::from_hours(24 * 365), now()).unwrap();
        let info = parse_certificate_pem(&g.cert_pem).unwrap();
        assert_eq!(info, g.info);
        assert_eq!(info.thumbprint.len(), 40);
        assert!(
            info.thumbprint
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert_eq!(info.rsa_bits, 2048);
        assert_eq!(info.not_before, now() - SignedDuration::from_mins(5));
        assert_eq!(info.not_after, "2027-12-02T00:00:00Z".parse().unwrap());
        assert!(
            g.key_pem
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(key_matches(g.key_pem.expose(), &info).unwrap());
        // Graph's customKeyIdentifier is the thumbprint's bytes in base64.
        let bytes = STANDARD.decode(info.custom_key_identifier()).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, info.thumbprint);
    }

    #[test]
    fn another_key_does_not_match_and_pkcs1_keys_are_read() {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let a = generate("a", SignedDuration::from_hours(24), now()).unwrap();
        let b = generate("b", SignedDuration::from_hours(24), now()).unwrap();
        assert!(!key_matches(b.key_pem.expose(), &a.info).unwrap());
        let pkcs1 = rsa::RsaPrivateKey::from_pkcs8_pem(a.key_pem.expose())
            .unwrap()
            .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert!(key_matches(&pkcs1, &a.info).unwrap());
        assert!(matches!(
            key_matches("nothing", &a.info),
            Err(CertError::NoKey)
        ));
    }

    #[test]
    fn the_leaf_of_a_chain_is_read_and_non_rsa_certificates_are_refused() {
        let leaf = generate("leaf", SignedDuration::from_hours(24), now()).unwrap();
        let issuer = generate("issuer", SignedDuration::from_hours(24), now()).unwrap();
        let chain = format!("{}{}", leaf.cert_pem, issuer.cert_pem);
        assert_eq!(parse_certificate_pem(&chain).unwrap(), leaf.info);

        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let ec_cert = rcgen::CertificateParams::new(vec!["x".to_string()])
            .unwrap()
            .self_signed(&ec)
            .unwrap();
        assert!(matches!(
            parse_certificate_pem(&ec_cert.pem()),
            Err(CertError::NotRsa)
        ));
        assert!(matches!(
            parse_certificate_pem("no pem here"),
            Err(CertError::NoCertificate)
        ));
    }

    #[test]
    fn a_proof_signed_with_a_generated_key_verifies_against_its_certificate() {
        let g = generate("p", SignedDuration::from_hours(24), Timestamp::now()).unwrap();
        let pem = client_pem(&g.cert_pem, g.key_pem.expose());
        let proof = crate::graph::CertificateAssertion::from_pem(pem.expose().as_bytes(), "", "")
            .unwrap()
            .key_proof("object-1")
            .unwrap();
        let parts: Vec<&str> = proof.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["x5t"], g.info.x5t());
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "object-1");
        assert_eq!(claims["aud"], "00000002-0000-0000-c000-000000000000");
        let key = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            &g.info.public_key,
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("signed by the certificate's key");
    }

    #[test]
    fn nothing_prints_the_private_key() {
        let g = generate("d", SignedDuration::from_hours(24), now()).unwrap();
        let debug = format!("{g:?}");
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(!client_pem("a", "b").to_string().contains('b'));
        for e in [
            CertError::NoKey,
            CertError::NotRsa,
            CertError::NoCertificate,
        ] {
            assert!(!e.to_string().contains("-----BEGIN"));
        }
    }
}
