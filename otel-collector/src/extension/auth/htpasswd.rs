//! Apache htpasswd files: `user:hash` lines, the hash formats upstream accepts (its
//! `go-htpasswd` default set): bcrypt (`$2y$`, `$2b$`, `$2a$`), SHA-crypt (`$5$`, `$6$`),
//! Apache MD5 (`$apr1$`), `{SHA}` (base64 SHA-1), `{SSHA}` (salted SHA-1) and plain text.
//!
//! bcrypt, SHA-crypt and APR1 are verified by the `htauth` crate (which uses the `bcrypt` and
//! RustCrypto crates and compares in constant time); `{SHA}`, `{SSHA}` and plain text here, as
//! constant-time comparisons of digests. A line whose hash starts with `$` in a format not
//! listed (for example `$1$` MD5-crypt) is refused when the file is loaded rather than taken as
//! a plain password.

use super::digest;
use base64::Engine as _;
use std::collections::HashMap;
use subtle::ConstantTimeEq as _;

/// How a stored password is checked.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Stored {
    /// Slow hashes checked by `htauth` (bcrypt, SHA-crypt, APR1).
    Crypt(String),
    /// `{SHA}`: SHA-1 of the password.
    Sha1([u8; 20]),
    /// `{SSHA}`: SHA-1 of password + salt, then the salt.
    Ssha { hash: [u8; 20], salt: Vec<u8> },
    /// Plain text, kept as its SHA-256 digest.
    Plain([u8; 32]),
}

impl Stored {
    /// Whether checking is expensive (worth caching and running off the async workers).
    pub(super) fn is_slow(&self) -> bool {
        matches!(self, Stored::Crypt(h) if h.starts_with("$2") || h.starts_with("$5$") || h.starts_with("$6$"))
    }

    /// Whether `password` matches.
    pub(super) fn verify(&self, password: &str) -> bool {
        match self {
            Stored::Crypt(h) => htauth::verify_password(password, h).unwrap_or(false),
            Stored::Sha1(h) => sha1(&[password.as_bytes()]).ct_eq(h).into(),
            Stored::Ssha { hash, salt } => sha1(&[password.as_bytes(), salt]).ct_eq(hash).into(),
            Stored::Plain(d) => digest(password.as_bytes()).ct_eq(d).into(),
        }
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn parse_hash(hash: &str) -> Result<Stored, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(rest) = hash.strip_prefix("{SHA}") {
        let raw = b64
            .decode(rest)
            .map_err(|_| "{SHA} hash is not base64".to_string())?;
        let h: [u8; 20] = raw
            .try_into()
            .map_err(|_| "{SHA} hash is not 20 bytes".to_string())?;
        return Ok(Stored::Sha1(h));
    }
    if let Some(rest) = hash.strip_prefix("{SSHA}") {
        let raw = b64
            .decode(rest)
            .map_err(|_| "{SSHA} hash is not base64".to_string())?;
        if raw.len() <= 20 {
            return Err("{SSHA} hash has no salt".into());
        }
        let mut h = [0u8; 20];
        h.copy_from_slice(&raw[..20]);
        return Ok(Stored::Ssha {
            hash: h,
            salt: raw[20..].to_vec(),
        });
    }
    if hash.starts_with('$') {
        return match htauth::detect_algorithm(hash) {
            Some(_) => Ok(Stored::Crypt(hash.to_string())),
            None => Err(
                "unsupported hash format; use bcrypt (htpasswd -B), SHA-256/512 crypt, $apr1$ MD5, {SHA} or {SSHA}"
                    .to_string(),
            ),
        };
    }
    Ok(Stored::Plain(digest(hash.as_bytes())))
}

/// A parsed htpasswd table.
#[derive(Clone, Default)]
pub(super) struct Htpasswd {
    users: HashMap<String, Stored>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // User names only: the hashes stay out of logs and panics.
        f.debug_struct("Htpasswd")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Htpasswd {
    /// Parses `text`; later lines override earlier ones for the same user (so inline content
    /// appended after the file wins, as upstream). Blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// The line number and what is wrong (never the hash itself).
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected `user:password-hash`", i + 1))?;
            if user.is_empty() {
                return Err(format!("line {}: empty user name", i + 1));
            }
            let stored =
                parse_hash(hash).map_err(|m| format!("line {} (user {user}): {m}", i + 1))?;
            users.insert(user.to_string(), stored);
        }
        Ok(Htpasswd { users })
    }

    /// The stored password of `user`.
    pub(super) fn get(&self, user: &str) -> Option<&Stored> {
        self.users.get(user)
    }

    /// How many users.
    pub(super) fn len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_format_verifies_and_wrong_passwords_fail() {
        let bcrypt = bcrypt_hash("pw-b");
        let apr1 = htauth::hash_password("pw-a", htauth::HashAlgorithm::Apr1Md5).unwrap();
        let sha512 = htauth::hash_password("pw-6", htauth::HashAlgorithm::Sha512).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let sha = format!("{{SHA}}{}", b64.encode(sha1(&[b"pw-s"])));
        let mut ssha_raw = sha1(&[b"pw-ss", b"salt"]).to_vec();
        ssha_raw.extend_from_slice(b"salt");
        let ssha = format!("{{SSHA}}{}", b64.encode(ssha_raw));
        let text = format!(
            "# comment\nb:{bcrypt}\na:{apr1}\nsix:{sha512}\ns:{sha}\nss:{ssha}\np:plain-pw\n\n"
        );
        let h = Htpasswd::parse(&text).unwrap();
        assert_eq!(h.len(), 6);
        for (user, pw) in [
            ("b", "pw-b"),
            ("a", "pw-a"),
            ("six", "pw-6"),
            ("s", "pw-s"),
            ("ss", "pw-ss"),
            ("p", "plain-pw"),
        ] {
            let stored = h.get(user).unwrap();
            assert!(stored.verify(pw), "{user}");
            assert!(!stored.verify("wrong"), "{user}");
        }
        assert!(h.get("b").unwrap().is_slow());
        assert!(!h.get("p").unwrap().is_slow());
    }

    /// A bcrypt hash as `htpasswd -B` writes it (`$2y$`).
    fn bcrypt_hash(pw: &str) -> String {
        let h = htauth::hash_password(pw, htauth::HashAlgorithm::Bcrypt).unwrap();
        h.replacen("$2b$", "$2y$", 1)
    }

    #[test]
    fn later_lines_win_and_bad_lines_name_their_number_without_the_hash() {
        let h = Htpasswd::parse("u:old\nu:new").unwrap();
        assert!(h.get("u").unwrap().verify("new"));
        let e = Htpasswd::parse("ok:x\nno-colon").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        let e = Htpasswd::parse("u:$1$abc$def").unwrap_err();
        assert!(e.contains("unsupported hash format"), "{e}");
        assert!(!e.contains("abc$def"), "{e}");
    }
}
