//! TLS material for one deployment: a CA made for it, a server certificate every node
//! presents (for 127.0.0.1, ::1 and localhost; also its client certificate on the cluster
//! bus and to its primary), and a client certificate ours present when the servers
//! authenticate clients. Generated with rcgen (ECDSA P-256) into a scratch directory that
//! lives as long as the servers, never committed, and swept like every scratch directory
//! if we are killed.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bench_core::transport::{Tls, TlsFiles, TlsMode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A deployment's CA, certificates and the client configuration that trusts them.
#[derive(Debug)]
pub struct Material {
    pub mode: TlsMode,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How our clients connect (presenting the client certificate when `mode` says so).
    client: Tls,
    _dir: tempfile::TempDir,
}

impl Material {
    /// A new CA and its certificates, in `dir` (a scratch directory of their own, removed
    /// with the material: `instances::scratch_dir("tls")`).
    pub fn generate(mode: TlsMode, dir: tempfile::TempDir) -> anyhow::Result<Material> {
        let generated = generate(dir.path()).context("generating the run's TLS certificates")?;
        let ca_pem = fs::read(&generated.ca)?;
        let identity = if mode.auth_clients {
            Some((
                fs::read(&generated.client_cert)?,
                fs::read(&generated.client_key)?,
            ))
        } else {
            None
        };
        let client = Tls::new(
            &ca_pem,
            identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
            None,
        )?
        .with_files(TlsFiles {
            ca: generated.ca.clone(),
            identity: mode
                .auth_clients
                .then(|| (generated.client_cert.clone(), generated.client_key.clone())),
        });
        Ok(Material {
            mode,
            ca: generated.ca,
            cert: generated.cert,
            key: generated.key,
            client,
            _dir: dir,
        })
    }

    pub fn client(&self) -> &Tls {
        &self.client
    }

    /// The settings every node starts with (its `tls-port` is the instance's to set): TLS
    /// for clients, for replication and for the cluster bus, and client certificates
    /// required when the mode says so.
    pub fn server_args(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.display().to_string();
        vec![
            ("tls-cert-file", path(&self.cert)),
            ("tls-key-file", path(&self.key)),
            ("tls-ca-cert-file", path(&self.ca)),
            (
                "tls-auth-clients",
                if self.mode.auth_clients { "yes" } else { "no" }.into(),
            ),
            ("tls-replication", "yes".into()),
            ("tls-cluster", "yes".into()),
        ]
    }
}

struct Generated {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn generate(dir: &Path) -> anyhow::Result<Generated> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "valkey-bench run CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    // The server's certificate is also its client certificate (cluster bus, replication).
    let mut server = CertificateParams::new(vec!["localhost".to_string()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "valkey-bench server");
    server.subject_alt_names.extend([
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
    ]);
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate()?;
    let server = server.signed_by(&server_key, &ca)?;

    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "valkey-bench client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client = client.signed_by(&client_key, &ca)?;

    let files = Generated {
        ca: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    };
    write(&files.ca, &ca.pem(), 0o644)?;
    write(&files.cert, &server.pem(), 0o644)?;
    write(&files.key, &server_key.serialize_pem(), 0o600)?;
    write(&files.client_cert, &client.pem(), 0o644)?;
    write(&files.client_key, &client_key.serialize_pem(), 0o600)?;
    Ok(files)
}

/// Writes a new file with `mode` (keys are the owner's alone; the umask narrows the rest).
fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_a_ca_and_certificates_that_load() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        for key in [&files.key, &files.client_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let ca = fs::read(&files.ca).unwrap();
        let cert = fs::read(&files.client_cert).unwrap();
        let key = fs::read(&files.client_key).unwrap();
        assert!(
            Tls::new(&ca, Some((&cert, &key)), None)
                .unwrap()
                .presents_certificate()
        );
        // A second generation is another CA: its files are new, not overwritten.
        assert!(generate(dir.path()).is_err());
    }

    #[test]
    fn servers_require_client_certificates_only_when_asked() {
        let dir = || tempfile::tempdir().unwrap();
        let open = Material::generate(
            TlsMode {
                auth_clients: false,
            },
            dir(),
        )
        .unwrap();
        let auth = Material::generate(TlsMode { auth_clients: true }, dir()).unwrap();
        let setting = |m: &Material| {
            m.server_args()
                .into_iter()
                .find(|(k, _)| *k == "tls-auth-clients")
                .unwrap()
                .1
        };
        assert_eq!(setting(&open), "no");
        assert_eq!(setting(&auth), "yes");
        assert!(!open.client().presents_certificate());
        assert!(auth.client().presents_certificate());
        assert_ne!(open.ca, auth.ca);
        assert!(open.ca.exists());
    }
}
