//! TLS for the W&B API: certificates are verified against the compiled-in Mozilla roots and
//! whatever `SSL_CERT_FILE` names: a private CA, or a self-hosted server's own self-signed
//! certificate, which is trusted as itself (as OpenSSL and Go trust it).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

/// The client configuration, with the certificates of `SSL_CERT_FILE` (PEM) added.
pub fn client_config() -> Result<ClientConfig, Error> {
    let mut roots = RootCertStore::empty();
    let (_, unparsable) =
        roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    debug_assert_eq!(unparsable, 0, "a compiled-in root did not parse");
    let named = match std::env::var_os("SSL_CERT_FILE") {
        Some(path) => certificates_in(&path)?,
        None => Vec::new(),
    };
    roots.add_parsable_certificates(named.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Comm(format!("cannot set up TLS: {e}")))?;
    let verifier = RootsOrNamed { webpki, named };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Comm(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

fn certificates_in(path: &std::ffi::OsStr) -> Result<Vec<CertificateDer<'static>>, Error> {
    let shown = path.to_string_lossy();
    let pem = std::fs::read(path)
        .map_err(|e| Error::io(format!("cannot read SSL_CERT_FILE {shown}"), e))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Comm(format!("SSL_CERT_FILE {shown} is not PEM: {e:?}")))?;
    if certificates.is_empty() {
        return Err(Error::Comm(format!(
            "SSL_CERT_FILE {shown} holds no certificate"
        )));
    }
    Ok(certificates)
}

/// Chains to a root, or is itself one of the certificates `SSL_CERT_FILE` names. webpki alone
/// refuses the latter when the certificate says it is a CA, which `openssl req -x509` makes
/// by default.
#[derive(Debug)]
struct RootsOrNamed {
    webpki: Arc<WebPkiServerVerifier>,
    named: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for RootsOrNamed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if chained.is_err() && self.named.iter().any(|named| named == end_entity) {
            // Trusted as itself; the name it is for must still be the server's.
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        chained
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
