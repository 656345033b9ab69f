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

/// A private CA and a server certificate for 127.0.0.1 signed by it (PEM files, valid 1 day).
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA certificate (`ca.pem`).
    pub ca: PathBuf,
    /// The server certificate (`server.pem`).
    pub cert: PathBuf,
    /// The server's private key (`server.key`).
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
        let ca_args = [
            &["req", "-x509", "-days", "1", "-subj", "/CN=test CA"][..],
            &EC_KEY,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat();
        openssl(dir, &ca_args);
        let csr_args = [
            &["req", "-subj", "/CN=127.0.0.1"][..],
            &EC_KEY,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat();
        openssl(dir, &csr_args);
        std::fs::write(
            dir.join("ext.cnf"),
            format!("subjectAltName={subject_alt_name}\n{SERVER_EXT}"),
        )
        .expect("write ext.cnf");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.pem",
            ],
        );
        TestCerts {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
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
