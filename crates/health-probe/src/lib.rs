//! The health probe every binary offers as `--health-probe URL`.
//!
//! A distroless image has no shell and no `curl`, so its `HEALTHCHECK` runs the binary itself:
//! `otel-collector --health-probe http://127.0.0.1:13133/` sends one HTTP/1.1 `GET` to the URL
//! and exits 0 when the answer is 2xx, 1 otherwise (refused, timed out, not HTTP, or any other
//! status), printing one line that says which. Plain `http://` only: the probe targets the
//! process's own health endpoint over loopback. Only the standard library is used, so the probe
//! starts in a few milliseconds and needs no async runtime.
//!
//! Tests: `cargo test -p health-probe` (a loopback server answering each case).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Time allowed for connecting, sending and reading the status line, all together.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest status line read before the answer counts as not HTTP.
const MAX_STATUS_LINE: usize = 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("invalid probe URL {url:?}: {reason} (write e.g. http://127.0.0.1:13133/)")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    #[error("cannot resolve {authority}: {source}")]
    Resolve {
        /// `host:port` of the URL.
        authority: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// No address accepted the connection.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port` of the URL.
        authority: String,
        /// The last connect error.
        source: std::io::Error,
    },
    /// Sending the request or reading the answer failed (including the timeout).
    #[error("no answer from {authority}: {source}")]
    Io {
        /// `host:port` of the URL.
        authority: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The answer did not start with an HTTP status line.
    #[error("{authority} did not answer HTTP (status line {line:?})")]
    NotHttp {
        /// `host:port` of the URL.
        authority: String,
        /// What came back instead (lossy UTF-8, truncated).
        line: String,
    },
    /// The endpoint answered with a status other than 2xx.
    #[error("{url} answered HTTP {status}")]
    Unhealthy {
        /// The URL probed.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
}

/// The parts of a probe URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `host:port` as written (brackets kept for IPv6), used for the `Host` header and messages.
    authority: String,
    /// Host without brackets, for resolving.
    host: String,
    port: u16,
    /// Path and query, at least `/`.
    path: String,
}

fn parse(url: &str) -> Result<Target, ProbeError> {
    let invalid = |reason| ProbeError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(invalid("the host is missing"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("unclosed [ in an IPv6 host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse().map_err(|_| invalid("the port is not a number"))?,
    };
    if host.is_empty() {
        return Err(invalid("the host is missing"));
    }
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Sends `GET url` and returns the HTTP status when it is 2xx.
///
/// # Errors
/// [`ProbeError`] naming the URL and what went wrong: invalid URL, resolution, connection,
/// I/O or timeout, a non-HTTP answer, or a non-2xx status ([`ProbeError::Unhealthy`]).
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let target = parse(url)?;
    let deadline = Instant::now() + timeout;
    let mut stream = connect(&target, timeout)?;
    let io = |source| ProbeError::Io {
        authority: target.authority.clone(),
        source,
    };
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(remaining)).map_err(io)?;
    stream.set_write_timeout(Some(remaining)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: health-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let line = read_status_line(&mut stream).map_err(io)?;
    let status = status_code(&line).ok_or_else(|| ProbeError::NotHttp {
        authority: target.authority.clone(),
        line: String::from_utf8_lossy(&line).chars().take(80).collect(),
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Unhealthy {
            url: url.to_string(),
            status,
        })
    }
}

fn connect(target: &Target, timeout: Duration) -> Result<TcpStream, ProbeError> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|source| ProbeError::Resolve {
            authority: target.authority.clone(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(ProbeError::Connect {
        authority: target.authority.clone(),
        source: last,
    })
}

/// Reads up to the first `\n` (or [`MAX_STATUS_LINE`] bytes, or the end of the stream).
fn read_status_line(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; 256];
    while line.len() < MAX_STATUS_LINE && !line.contains(&b'\n') {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    if let Some(end) = line.iter().position(|&b| b == b'\n') {
        line.truncate(end);
    }
    Ok(line)
}

/// The code of `HTTP/1.x NNN reason`.
fn status_code(line: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

/// Runs the probe for a command line: prints one line (stdout when healthy, stderr otherwise)
/// and returns the exit code a `HEALTHCHECK` reads (0 healthy, 1 not).
pub fn run(url: &str) -> ExitCode {
    match probe(url, DEFAULT_TIMEOUT) {
        Ok(status) => {
            println!("healthy: {url} answered HTTP {status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-connection server answering `reply`; returns its port and the request it read.
    fn serve_once(reply: &'static [u8]) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(reply).unwrap();
            String::from_utf8(req).unwrap()
        });
        (port, handle)
    }

    #[test]
    fn healthy_on_2xx_and_sends_path_and_host() {
        let (port, h) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let url = format!("http://127.0.0.1:{port}/health?x=1");
        assert_eq!(probe(&url, DEFAULT_TIMEOUT).unwrap(), 200);
        let req = h.join().unwrap();
        assert!(req.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        let (port, _h) = serve_once(b"HTTP/1.0 204 No Content\r\n\r\n");
        assert_eq!(
            probe(&format!("http://127.0.0.1:{port}"), DEFAULT_TIMEOUT).unwrap(),
            204
        );
    }

    #[test]
    fn unhealthy_on_503_and_on_garbage() {
        let (port, _h) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = probe(&format!("http://127.0.0.1:{port}/"), DEFAULT_TIMEOUT).unwrap_err();
        assert!(
            matches!(err, ProbeError::Unhealthy { status: 503, .. }),
            "{err}"
        );
        let (port, _h) = serve_once(b"SSH-2.0-OpenSSH\r\n");
        let err = probe(&format!("http://127.0.0.1:{port}/"), DEFAULT_TIMEOUT).unwrap_err();
        assert!(matches!(err, ProbeError::NotHttp { .. }), "{err}");
        let (port, _h) = serve_once(b"");
        let err = probe(&format!("http://127.0.0.1:{port}/"), DEFAULT_TIMEOUT).unwrap_err();
        assert!(matches!(err, ProbeError::NotHttp { .. }), "{err}");
    }

    #[test]
    fn refused_when_nothing_listens() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = probe(&format!("http://127.0.0.1:{port}/"), DEFAULT_TIMEOUT).unwrap_err();
        assert!(matches!(err, ProbeError::Connect { .. }), "{err}");
        assert_eq!(run(&format!("http://127.0.0.1:{port}/")), ExitCode::FAILURE);
    }

    #[test]
    fn times_out_when_the_server_never_answers() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepted by the kernel (backlog) but never answered.
        let err = probe(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
        drop(listener);
    }

    #[test]
    fn parses_urls() {
        let t = parse("http://[::1]:9464/health").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.path.as_str(),
                t.authority.as_str()
            ),
            ("::1", 9464, "/health", "[::1]:9464")
        );
        let t = parse("http://localhost").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http:///x",
            "http://h:port/",
            "http://[::1/",
            "http://:80/",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("http://127.0.0.1:13133/"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(status_code(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_code(b"HTTP/2 200"), None);
        assert_eq!(status_code(b"\xff\xfe"), None);
    }
}
