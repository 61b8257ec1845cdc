//! Throw-away TLS material for tests: a fresh CA and a server certificate signed by it.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A test CA and a server certificate it signed, all PEM encoded.
#[derive(Clone)]
pub struct TestCerts {
    /// The CA certificate: what clients should trust.
    pub ca_pem: String,
    /// The server certificate (for [`crate::TlsConfig::cert_pem`]).
    pub cert_pem: String,
    /// The server certificate's private key, PKCS#8 (for [`crate::TlsConfig::key_pem`]).
    pub key_pem: String,
}

impl std::fmt::Debug for TestCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCerts")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl TestCerts {
    /// The [`crate::TlsConfig`] that serves this certificate.
    pub fn tls_config(&self) -> crate::TlsConfig {
        crate::TlsConfig {
            cert_pem: self.cert_pem.clone().into_bytes(),
            key_pem: self.key_pem.clone().into_bytes(),
        }
    }
}

/// Generates a fresh CA (ECDSA P-256) and a server certificate signed by it, valid for
/// `names` (DNS names or IP addresses, e.g. `["localhost", "127.0.0.1"]`).
///
/// # Panics
///
/// When a name is neither an IP address nor a valid DNS name.
pub fn generate(names: &[&str]) -> TestCerts {
    let ca_key = KeyPair::generate().expect("generate the CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fal-realtime emulator test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");

    let key = KeyPair::generate().expect("generate the server key");
    let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("invalid certificate name");
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or("localhost"));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("sign the server certificate");

    TestCerts {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
