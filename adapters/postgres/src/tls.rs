//! TLS for connections to PostgreSQL, with libpq's `sslmode` meanings, on rustls.
//!
//! | mode | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow`, `prefer` | if the server offers it | no |
//! | `require` | always | against `sslrootcert` if given (libpq's rule), else no |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` |
//! | `verify-full` | always | signed by a CA in `sslrootcert`, issued for the host |
//!
//! `sslrootcert=system` trusts the system's certificate store. A client certificate
//! (`sslcert` + `sslkey`) is presented when both are given. Connections over a Unix socket
//! never use TLS, as with libpq.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::conninfo::SslMode;
use crate::error::{Error, Result};

/// What a connection needs to set up TLS: resolved mode and the files to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// CA certificates (PEM file), or `system`.
    pub root_cert: Option<String>,
    /// Client certificate and key (PEM files).
    pub cert: Option<String>,
    pub key: Option<String>,
}

impl TlsSettings {
    /// Whether the server's certificate chain is checked.
    fn verifies_chain(&self) -> bool {
        match self.mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.root_cert.is_some(),
            _ => false,
        }
    }

    /// A connector for these settings.
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(format!("setting up TLS: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if self.verifies_chain() {
            let Some(root) = &self.root_cert else {
                return Err(invalid(format!(
                    "sslmode={} needs a root certificate: give sslrootcert=FILE (or sslrootcert=system)",
                    self.mode.as_str()
                )));
            };
            let roots = Arc::new(load_roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| invalid(format!("reading sslrootcert {root}: {e}")))?;
            Arc::new(ChainVerifier {
                inner: webpki,
                check_host: self.mode == SslMode::VerifyFull,
            })
        } else {
            Arc::new(NoVerifier { provider })
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| invalid(format!("reading sslcert {cert}: {e}")))?;
                let key_der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| invalid(format!("reading sslkey {key}: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| invalid(format!("using sslcert {cert}: {e}")))?
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid(
                    "sslcert and sslkey must be given together".to_owned(),
                ))
            }
            (None, None) => builder.with_no_client_auth(),
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidTarget(message)
}

fn load_roots(root: &str) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    if root == "system" {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // A system store may hold certificates rustls cannot use; skip those.
            let _ = store.add(cert);
        }
    } else {
        if !Path::new(root).is_file() {
            return Err(invalid(format!(
                "root certificate file {root} does not exist"
            )));
        }
        let certs = CertificateDer::pem_file_iter(root)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("reading sslrootcert {root}: {e}")))?;
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| invalid(format!("reading sslrootcert {root}: {e}")))?;
        }
    }
    if store.is_empty() {
        return Err(invalid(format!("sslrootcert {root} holds no certificate")));
    }
    Ok(store)
}

/// Checks the chain against the roots, and the host name only for `verify-full`.
#[derive(Debug)]
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check_host: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // The chain is checked before the name: a name error means the chain is good.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_host => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Encrypts without checking who the server is (`prefer`, `require` without a root file),
/// as libpq does; the handshake's signatures are still checked.
#[derive(Debug)]
struct NoVerifier {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
