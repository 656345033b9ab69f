//! "Did you mean" suggestions for misspelt keys and values.
//!
//! Tests: `cargo test -p otel-collector config::suggest`.

/// Edit distance between two strings (Levenshtein, by characters).
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" / "unknown variant" messages
/// into ours: names what is wrong, suggests the closest valid word, lists the valid ones.
///
/// Returns the unknown word (for the key path) and the new message; `None` if `msg` is another
/// kind of error.
pub fn rewrite_unknown(msg: &str) -> Option<(String, String, bool)> {
    let (kind, rest) = if let Some(r) = msg.strip_prefix("unknown field `") {
        ("key", r)
    } else if let Some(r) = msg.strip_prefix("unknown variant `") {
        ("value", r)
    } else {
        return None;
    };
    let end = rest.find('`')?;
    let word = &rest[..end];
    let tail = &rest[end + 1..];
    let valid: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
    let mut out = format!("unknown {kind} `{word}`");
    if let Some(best) = closest(word, valid.iter().copied()) {
        out.push_str(&format!("; did you mean `{best}`?"));
    }
    if valid.is_empty() {
        out.push_str("; this section takes no keys");
    } else {
        out.push_str(&format!(" (valid: {})", valid.join(", ")));
    }
    Some((word.to_string(), out, kind == "key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(distance("endpointt", "endpoint"), 1);
        assert_eq!(
            closest("endpointt", ["endpoint", "transport"]),
            Some("endpoint")
        );
        assert_eq!(closest("zzzzzz", ["endpoint", "transport"]), None);
    }

    #[test]
    fn rewrites_unknown_field_messages() {
        let (w, m, is_key) =
            rewrite_unknown("unknown field `endpointt`, expected one of `endpoint`, `transport`")
                .unwrap();
        assert_eq!(w, "endpointt");
        assert!(is_key);
        assert_eq!(
            m,
            "unknown key `endpointt`; did you mean `endpoint`? (valid: endpoint, transport)"
        );
        let (_, m, is_key) =
            rewrite_unknown("unknown variant `upsertt`, expected one of `insert`, `upsert`")
                .unwrap();
        assert!(!is_key);
        assert!(m.contains("did you mean `upsert`"), "{m}");
        assert!(rewrite_unknown("invalid type: string").is_none());
    }
}
