//! TLS termination: certificate files loaded and checked at config time (pingora would panic on a
//! bad one), and a resolver that picks the certificate by SNI, the first one being the default.

use std::sync::Arc;

use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, ResolvesServerCert};

use serde::{Deserialize, Serialize};

/// One certificate and its key (`[[tls.certs]]`), PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

/// One certificate with the DNS names it is valid for (SAN, else CN), lower-cased.
struct Loaded {
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

fn load(c: &CertConfig) -> Result<Loaded, String> {
    let what = format!(
        "tls cert {} / key {}",
        c.cert_file.display(),
        c.key_file.display()
    );
    let (certs, key) =
        pingora::tls::load_certs_and_key_files(&c.cert_file.to_string_lossy(), &c.key_file.to_string_lossy())
            .map_err(|e| format!("{what}: {e}"))?
            .ok_or_else(|| format!("{what}: no certificate or no private key found"))?;
    let signing = pingora::tls::CryptoProvider::get_default()
        .map(|p| p.key_provider.load_private_key(key.clone_key()))
        .unwrap_or_else(|| rustls::crypto::ring::sign::any_supported_type(&key))
        .map_err(|e| format!("{what}: unusable private key: {e}"))?;
    let names = names_of(&certs[0]).map_err(|e| format!("{what}: {e}"))?;
    Ok(Loaded {
        names,
        key: Arc::new(CertifiedKey::new(certs, signing)),
    })
}

fn names_of(der: &[u8]) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("bad certificate: {e}"))?;
    let mut names: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// Loads every configured certificate, so a bad file is a config error and never a panic.
pub fn check_certs(certs: &[CertConfig]) -> Result<(), String> {
    certs.iter().try_for_each(|c| load(c).map(|_| ()))
}

/// Picks a certificate by SNI: exact name, then `*.` wildcard, then the first certificate.
#[derive(Debug)]
pub struct SniResolver {
    by_name: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(certs: &[CertConfig]) -> Result<Arc<SniResolver>, String> {
        let loaded: Vec<Loaded> = certs.iter().map(load).collect::<Result<_, _>>()?;
        let default = loaded.first().ok_or("no tls certificates")?.key.clone();
        let by_name = loaded
            .iter()
            .flat_map(|l| l.names.iter().map(|n| (n.clone(), l.key.clone())))
            .collect();
        Ok(Arc::new(SniResolver { by_name, default }))
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(sni) = sni.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        let exact = self.by_name.iter().find(|(n, _)| *n == sni);
        let wild = || {
            let parent = sni.split_once('.').map(|(_, p)| p)?;
            self.by_name
                .iter()
                .find(|(n, _)| n.strip_prefix("*.") == Some(parent))
        };
        exact
            .or_else(wild)
            .map(|(_, k)| k.clone())
            .unwrap_or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}
