//! Checks of `host:port` endpoints in config values.
//!
//! Tests: `cargo test -p otel-collector config::endpoint`.

/// Checks that `text` is `host:port` (host may be empty, a name, an IPv4 or a bracketed IPv6
/// address; port 0-65535) and returns host and port.
///
/// # Errors
/// A message with the offending text and the expected form.
pub fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| {
        format!("invalid endpoint `{text}`: {why}; write `host:port`, like `127.0.0.1:4317` or `[::1]:4317`")
    };
    if text.contains("://") {
        return Err(bad("a listen address takes no scheme"));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("the port is missing"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    let host = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("an IPv6 address needs closing `]`"))?;
        inner
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address"))?;
        inner.to_string()
    } else {
        if host.contains(':') {
            return Err(bad("put an IPv6 address in brackets"));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return Err(bad("the host has characters a host name cannot have"));
        }
        host.to_string()
    };
    Ok((host, port))
}

/// Resolves a listen endpoint to socket addresses (empty host means all interfaces, as upstream).
///
/// # Errors
/// When the endpoint is malformed or the host name does not resolve.
pub async fn resolve_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    let (host, port) = parse_host_port(text)?;
    let host = if host.is_empty() {
        "0.0.0.0".to_string()
    } else {
        host
    };
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    tokio::net::lookup_host(target)
        .await
        .map_err(|e| format!("cannot resolve endpoint `{text}`: {e}"))?
        .next()
        .ok_or_else(|| format!("endpoint `{text}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_forms() {
        assert_eq!(
            parse_host_port("127.0.0.1:4317").unwrap(),
            ("127.0.0.1".into(), 4317)
        );
        assert_eq!(parse_host_port("localhost:0").unwrap().1, 0);
        assert_eq!(parse_host_port("[::1]:4318").unwrap(), ("::1".into(), 4318));
        assert_eq!(parse_host_port(":4317").unwrap(), (String::new(), 4317));
    }

    #[test]
    fn rejects_with_reason() {
        assert!(parse_host_port("127.0.0.1")
            .unwrap_err()
            .contains("port is missing"));
        assert!(parse_host_port("h:99999")
            .unwrap_err()
            .contains("0 to 65535"));
        assert!(parse_host_port("http://h:1")
            .unwrap_err()
            .contains("no scheme"));
        assert!(parse_host_port("::1:4317")
            .unwrap_err()
            .contains("brackets"));
    }
}
