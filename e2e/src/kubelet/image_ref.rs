//! Image references as Kubernetes and the distribution spec read them:
//! `[registry/]repository[:tag][@digest]`. Only a reference whose first component names a
//! registry (`host:port`, a dotted host, or `localhost`) is pulled; a bare name like
//! `ringshift-testpod:dev` is a harness image mapped to a workspace binary (see `images`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]`.
    pub registry: String,
    /// Path inside the registry, e.g. `ringshift/ringshift-node`.
    pub repository: String,
    /// Defaults to `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`; when set it is what is pulled (the tag is informational).
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("invalid image reference {0:?}: {1}")]
    Invalid(String, &'static str),
}

impl ImageRef {
    /// The tag or digest to ask the registry for.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Loopback registries are spoken to over plain HTTP, others over HTTPS.
    pub fn is_loopback(&self) -> bool {
        let host = host_of(&self.registry);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `host:port` -> `host`; `[::1]:5000` -> `::1`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether the first path component of a reference names a registry (Docker's rule).
fn names_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// Parses a reference. `Ok(None)`: no registry in it (a harness image).
pub fn parse(image: &str) -> Result<Option<ImageRef>, RefError> {
    let bad = |why| RefError::Invalid(image.to_string(), why);
    let (first, rest) = match image.split_once('/') {
        Some((first, rest)) if names_registry(first) => (first, rest),
        _ => return Ok(None),
    };
    if rest.is_empty() {
        return Err(bad("no repository after the registry"));
    }
    let (name, digest) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    if let Some(d) = digest {
        let hex = d
            .strip_prefix("sha256:")
            .ok_or_else(|| bad("only sha256 digests are supported"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("a sha256 digest is 64 lowercase hex digits"));
        }
    }
    // The tag follows the last ':' of the last path component (a ':' earlier is the port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if repository.is_empty()
        || repository.split('/').any(|c| {
            c.is_empty()
                || !c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        })
    {
        return Err(bad(
            "repository path components are lowercase letters, digits and . _ -",
        ));
    }
    if let Some(t) = tag
        && (t.is_empty()
            || t.len() > 128
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        return Err(bad("a tag is 1-128 letters, digits and . _ -"));
    }
    let tag = match (tag, digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t.map(str::to_string),
    };
    Ok(Some(ImageRef {
        registry: first.to_string(),
        repository: repository.to_string(),
        tag,
        digest: digest.map(str::to_string),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        parse(s).unwrap().unwrap()
    }

    #[test]
    fn bare_names_are_not_registry_references() {
        assert_eq!(parse("ringshift-testpod:dev").unwrap(), None);
        assert_eq!(parse("ringshift/ringshift-node:1").unwrap(), None);
        assert_eq!(parse("nginx").unwrap(), None);
    }

    #[test]
    fn host_port_tag_and_default_tag() {
        let a = r("127.0.0.1:15006/ringshift-node:dev");
        assert_eq!(a.registry, "127.0.0.1:15006");
        assert_eq!(a.repository, "ringshift-node");
        assert_eq!(a.reference(), "dev");
        assert!(a.is_loopback());
        let b = r("localhost:5000/org/app");
        assert_eq!(b.repository, "org/app");
        assert_eq!(b.tag.as_deref(), Some("latest"));
        assert!(b.is_loopback());
        let c = r("registry.example/team/app:1.2.3");
        assert_eq!(c.repository, "team/app");
        assert!(!c.is_loopback());
        assert_eq!(c.to_string(), "registry.example/team/app:1.2.3");
        assert!(r("[::1]:5000/x:y").is_loopback());
    }

    #[test]
    fn digest_wins_over_tag() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let a = r(&format!("127.0.0.1:1/app:v1@{d}"));
        assert_eq!(a.reference(), d);
        assert_eq!(a.tag.as_deref(), Some("v1"));
        let b = r(&format!("127.0.0.1:1/app@{d}"));
        assert_eq!(b.tag, None);
        assert_eq!(b.reference(), d);
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in [
            "127.0.0.1:1/",
            "127.0.0.1:1/App:1",
            "127.0.0.1:1/app:",
            "127.0.0.1:1/app@md5:00",
            "127.0.0.1:1/app@sha256:abc",
            "127.0.0.1:1/a//b",
            "127.0.0.1:1/app:bad/tag",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
