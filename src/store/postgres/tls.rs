//! TLS for `sslmode=require`: a connector that verifies the server's certificate.

use super::*;

/// The TLS connector for `sslmode=require`: the server's certificate is verified against the
/// web PKI's roots and, when given, the CA certificates of `ca_file` (PEM; a private CA). Other
/// modes connect in plain text (`prefer` does not try TLS: a server's self-signed certificate
/// would fail verification).
pub(super) fn tls_for(
    config: &tokio_postgres::Config,
    ca_file: Option<&Path>,
) -> Result<Option<MakeRustlsConnect>, StoreError> {
    if config.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let bad = |e: &dyn std::fmt::Display| {
            StoreError::Unreachable(format!("database_ca_file {}: {e}", path.display()))
        };
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
        for cert in certs {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unreachable(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(tls)))
}
