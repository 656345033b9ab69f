//! Throw-away TLS certificates made with the `openssl` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bins::require_bin;

/// Key options of every key made here (ECDSA P-256: fast to generate).
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Extensions of the server certificate after its subjectAltName: not a CA.
const SERVER_EXT: &str = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n";
/// Extensions of a client certificate.
const CLIENT_EXT: &str = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n";

/// A private CA and a server certificate for 127.0.0.1 signed by it (PEM files, valid 1 day).
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The server certificate (`server.pem`).
    pub cert: PathBuf,
    /// The server's private key (`server.key`).
    pub key: PathBuf,
    /// The CA's private key (`ca.key`), to sign more certificates.
    pub ca_key: PathBuf,
}

/// A certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub struct CertPair {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCerts {
    /// Makes the CA, the server key and the server certificate (valid for 127.0.0.1 only) in
    /// `dir`.
    pub fn create(dir: &Path) -> TestCerts {
        Self::create_for(dir, "IP:127.0.0.1")
    }

    /// Like [`TestCerts::create`], the server certificate valid for `subject_alt_name` only
    /// (openssl syntax: `IP:127.0.0.1`, `DNS:collector.test`, or a comma-separated list).
    pub fn create_for(dir: &Path, subject_alt_name: &str) -> TestCerts {
        Self::create_named(dir, "", subject_alt_name, 1)
    }

    /// A CA and a server certificate for 127.0.0.1 in files named `{prefix}ca.pem`,
    /// `{prefix}server.pem`, ... (several sets can share `dir`); the server certificate is
    /// valid for `days` days from now (negative: it expired that many days ago).
    pub fn create_named(dir: &Path, prefix: &str, subject_alt_name: &str, days: i32) -> TestCerts {
        let f = |name: &str| format!("{prefix}{name}");
        let (subject, ca_key, ca_pem) = (format!("/CN=test CA {prefix}"), f("ca.key"), f("ca.pem"));
        let ca_args = [
            &["req", "-x509", "-days", "2", "-subj", &subject][..],
            &EC_KEY,
            &["-keyout", &ca_key, "-out", &ca_pem],
        ]
        .concat();
        openssl(dir, &ca_args);
        let pair = sign(
            dir,
            prefix,
            "server",
            "/CN=127.0.0.1",
            &format!("subjectAltName={subject_alt_name}\n{SERVER_EXT}"),
            days,
        );
        TestCerts {
            ca: dir.join(f("ca.pem")),
            cert: pair.cert,
            key: pair.key,
            ca_key: dir.join(f("ca.key")),
        }
    }

    /// A client certificate signed by this CA (for mutual TLS), valid `days` days (negative:
    /// expired), in `{name}.pem` / `{name}.key` beside the CA.
    pub fn client_cert(&self, name: &str, days: i32) -> CertPair {
        let dir = self.ca.parent().expect("CA file has a directory");
        let ca = self
            .ca
            .file_name()
            .and_then(|n| n.to_str())
            .expect("CA name");
        let prefix = ca.strip_suffix("ca.pem").unwrap_or("");
        sign(dir, prefix, name, &format!("/CN={name}"), CLIENT_EXT, days)
    }

    /// An HTTP client that trusts the CA.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca).expect("read ca.pem");
        let ca = reqwest::Certificate::from_pem(&pem).expect("parse ca.pem");
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .expect("HTTP client with the test CA")
    }
}

/// Signs a new key's certificate `{prefix}{name}.pem` with `{prefix}ca.pem`.
fn sign(dir: &Path, prefix: &str, name: &str, subject: &str, ext: &str, days: i32) -> CertPair {
    let f = |n: &str| format!("{prefix}{n}");
    let (key, csr, pem, cnf) = (
        f(&format!("{name}.key")),
        f(&format!("{name}.csr")),
        f(&format!("{name}.pem")),
        f(&format!("{name}.cnf")),
    );
    let csr_args = [
        &["req", "-subj", subject][..],
        &EC_KEY,
        &["-keyout", &key, "-out", &csr],
    ]
    .concat();
    openssl(dir, &csr_args);
    std::fs::write(dir.join(&cnf), ext).expect("write extension file");
    let days = days.to_string();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &f("ca.pem"),
            "-CAkey",
            &f("ca.key"),
            "-CAcreateserial",
            "-days",
            &days,
            "-extfile",
            &cnf,
            "-out",
            &pem,
        ],
    );
    CertPair {
        cert: dir.join(pem),
        key: dir.join(key),
    }
}

/// Runs `openssl args` in `dir`; panics with its stderr when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require_bin("openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
