//! TLS material for one deployment: a CA made for it, a server certificate every node
//! presents (for 127.0.0.1, ::1, localhost and the addresses of the deployment's other
//! hosts; also its client certificate on the cluster bus and to its primary), and a
//! client certificate ours present when the servers authenticate clients. Generated with
//! rcgen (ECDSA P-256) into a scratch directory that lives as long as the servers, never
//! committed, and swept like every scratch directory if we are killed. An agent gets the
//! CA and the server's certificate and key as PEM over its channel ([`ServerPem`]) and
//! writes them into a scratch directory of its own there ([`Material::from_pem`]).

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

/// What a server on another host needs of a deployment's material, sent to its agent:
/// the mode, the CA, and the server's certificate and key (secret: it goes over the ssh
/// channel only, and is written there with mode 0600).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerPem {
    pub auth_clients: bool,
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// Never the key.
impl std::fmt::Debug for ServerPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPem")
            .field("auth_clients", &self.auth_clients)
            .finish_non_exhaustive()
    }
}

/// What a load generator on another host needs to connect: the CA, and with client
/// authentication a certificate and key (secret, as above).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientPem {
    pub ca: String,
    pub identity: Option<(String, String)>,
    /// The name the server's certificate must carry, when not the address's IP.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPem")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientPem {
    /// `tls`'s trust and identity.
    pub fn of(tls: &Tls) -> anyhow::Result<ClientPem> {
        let certificates = tls.certificates();
        let text = |b: Vec<u8>| String::from_utf8(b).context("a PEM that is not text");
        Ok(ClientPem {
            ca: text(certificates.root_cert.unwrap_or_default())?,
            identity: certificates
                .client_tls
                .map(|c| Ok::<_, anyhow::Error>((text(c.client_cert)?, text(c.client_key)?)))
                .transpose()?,
            server_name: tls.server_name_text(),
        })
    }

    /// The client configuration it describes.
    pub fn client(&self) -> anyhow::Result<Tls> {
        Ok(Tls::new(
            self.ca.as_bytes(),
            self.identity
                .as_ref()
                .map(|(c, k)| (c.as_bytes(), k.as_bytes())),
            self.server_name.as_deref(),
        )?)
    }
}

impl Material {
    /// A new CA and its certificates, in `dir` (a scratch directory of their own, removed
    /// with the material: `instances::scratch_dir("tls")`); the server certificate also
    /// names `addresses` (the hosts the deployment's servers listen on).
    pub fn generate(
        mode: TlsMode,
        dir: tempfile::TempDir,
        addresses: &[std::net::IpAddr],
    ) -> anyhow::Result<Material> {
        let generated =
            generate(dir.path(), addresses).context("generating the run's TLS certificates")?;
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

    /// On another host: the material an agent was sent, written into `dir` there. Our
    /// clients there (the readiness check) present the server's certificate, which is
    /// also a client certificate.
    pub fn from_pem(pem: &ServerPem, dir: tempfile::TempDir) -> anyhow::Result<Material> {
        let files = (
            dir.path().join("ca.crt"),
            dir.path().join("server.crt"),
            dir.path().join("server.key"),
        );
        write(&files.0, &pem.ca, 0o644)?;
        write(&files.1, &pem.cert, 0o644)?;
        write(&files.2, &pem.key, 0o600)?;
        let mode = TlsMode {
            auth_clients: pem.auth_clients,
        };
        let identity = (pem.cert.as_bytes(), pem.key.as_bytes());
        let client = Tls::new(
            pem.ca.as_bytes(),
            mode.auth_clients.then_some(identity),
            None,
        )
        .context("the TLS material sent to this host")?
        .with_files(TlsFiles {
            ca: files.0.clone(),
            identity: mode
                .auth_clients
                .then(|| (files.1.clone(), files.2.clone())),
        });
        Ok(Material {
            mode,
            ca: files.0,
            cert: files.1,
            key: files.2,
            client,
            _dir: dir,
        })
    }

    /// What an agent needs to run servers with this material.
    pub fn server_pem(&self) -> anyhow::Result<ServerPem> {
        let read =
            |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        Ok(ServerPem {
            auth_clients: self.mode.auth_clients,
            ca: read(&self.ca)?,
            cert: read(&self.cert)?,
            key: read(&self.key)?,
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

fn generate(dir: &Path, addresses: &[std::net::IpAddr]) -> anyhow::Result<Generated> {
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
    for address in addresses.iter().filter(|a| !a.is_loopback()) {
        server.subject_alt_names.push(SanType::IpAddress(*address));
    }
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
        let files = generate(dir.path(), &[]).unwrap();
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
        assert!(generate(dir.path(), &[]).is_err());
    }

    #[test]
    fn servers_require_client_certificates_only_when_asked() {
        let dir = || tempfile::tempdir().unwrap();
        let open = Material::generate(
            TlsMode {
                auth_clients: false,
            },
            dir(),
            &[],
        )
        .unwrap();
        let auth = Material::generate(TlsMode { auth_clients: true }, dir(), &[]).unwrap();
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
