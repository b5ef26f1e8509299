//! Image references, normalised as Docker does: `busybox` → `docker.io/library/busybox:latest`,
//! `127.0.0.1:5000/x:1`, `name@sha256:…`, `name:tag@sha256:…`.

use crate::digest::Digest;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Where unqualified names live, as Docker resolves them.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's old name; normalised to [`DEFAULT_REGISTRY`] so both spellings find one image.
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on `registry/repository`.
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The string is not a valid reference; the message says which part is wrong.
    #[error("invalid image reference {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

/// A fully-qualified image reference. `tag` defaults to `latest` when neither tag nor digest is
/// given; when a digest is given it wins for resolution and the tag is kept only for naming.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host with optional port, e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise (`docker.io` default registry, `library/` for single-component
    /// Docker Hub names, `latest` default tag). Rejects upper-case repositories, empty
    /// components, bad tags (`[\w][\w.-]{0,127}`) and bad digests.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(invalid("the reference is empty"));
        }
        if input.trim() != input {
            return Err(invalid("the reference has leading or trailing white space"));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|_| {
                    invalid(&format!(
                        "digest {d:?} is not sha256:<64 lowercase hex characters>"
                    ))
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };

        // A tag is a `:` after the last `/`; a `:` before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !is_valid_tag(tag) {
                    return Err(invalid(&format!(
                        "tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
                    )));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid("the repository name is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "the name is longer than {MAX_NAME_LEN} characters"
            )));
        }

        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder)) if looks_like_registry(first) => {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        validate_registry(&registry).map_err(|r| invalid(&r))?;
        let registry = if registry == LEGACY_DEFAULT_REGISTRY {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        validate_repository(&repository).map_err(|r| invalid(&r))?;
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };

        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the registry is a loopback address (`localhost`, `127.0.0.0/8`, `[::1]`), which
    /// is the only case plain HTTP is allowed without configuration.
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_host(&self.registry)
    }

    /// The string a registry is asked for: the digest if any, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Fully-qualified form: `docker.io/library/busybox:latest`, `x/y:1@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first path component is a registry host when it cannot be a repository
/// component (it has a `.` or a port) or is `localhost`.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() || b == b'_' => {}
        _ => return false,
    }
    tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// `host[:port]` where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = split_host_port(registry)
        .ok_or_else(|| format!("registry {registry:?} is not host[:port]"))?;
    if let Some(port) = port {
        if port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u16>().is_err()
        {
            return Err(format!(
                "registry {registry:?} has an invalid port {port:?}"
            ));
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| format!("registry {registry:?} has an invalid IPv6 address"));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!("registry host {host:?} is not a valid host name"));
    }
    Ok(())
}

/// Split `host[:port]`, `[v6][:port]`. None when brackets are unbalanced.
fn split_host_port(registry: &str) -> Option<(&str, Option<&str>)> {
    if registry.starts_with('[') {
        let end = registry.find(']')?;
        let (host, rest) = registry.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match registry.split_once(':') {
        Some((host, port)) => Some((host, Some(port))),
        None => Some((registry, None)),
    }
}

/// Path components: `[a-z0-9]+` separated by `.`, `_`, `__` or runs of `-`, as the
/// distribution spec's grammar has it.
fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "repository {repository:?} must be lowercase (try {:?})",
            repository.to_ascii_lowercase()
        ));
    }
    for component in repository.split('/') {
        if component.is_empty() {
            return Err(format!(
                "repository {repository:?} has an empty path component"
            ));
        }
        if !component_ok(component) {
            return Err(format!(
                "repository component {component:?} must be lowercase letters and digits, \
                 separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__`, or any number of `-`.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `localhost`, `127.0.0.0/8` or `::1`, with or without a port.
pub(crate) fn is_loopback_host(registry: &str) -> bool {
    let Some((host, _)) = split_host_port(registry) else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        // (input, registry, repository, tag, digest?)
        let cases: &[(&str, &str, &str, Option<&str>, bool)] = &[
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
            ),
            (
                "busybox:1.36",
                "docker.io",
                "library/busybox",
                Some("1.36"),
                false,
            ),
            ("foo/bar", "docker.io", "foo/bar", Some("latest"), false),
            (
                "foo/bar/baz:v1",
                "docker.io",
                "foo/bar/baz",
                Some("v1"),
                false,
            ),
            (
                "docker.io/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                false,
            ),
            (
                "index.docker.io/foo/bar:1",
                "docker.io",
                "foo/bar",
                Some("1"),
                false,
            ),
            ("localhost/app", "localhost", "app", Some("latest"), false),
            (
                "localhost:5000/app:dev",
                "localhost:5000",
                "app",
                Some("dev"),
                false,
            ),
            (
                "127.0.0.1:5000/x:1",
                "127.0.0.1:5000",
                "x",
                Some("1"),
                false,
            ),
            (
                "quay.io/coreos/etcd:v3.5.0",
                "quay.io",
                "coreos/etcd",
                Some("v3.5.0"),
                false,
            ),
            (
                "registry.k8s.io/pause:3.10",
                "registry.k8s.io",
                "pause",
                Some("3.10"),
                false,
            ),
            (
                "myhost:5000/a/b",
                "myhost:5000",
                "a/b",
                Some("latest"),
                false,
            ),
            ("[::1]:5000/x:y", "[::1]:5000", "x", Some("y"), false),
            ("[fe80::1]/x", "[fe80::1]", "x", Some("latest"), false),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io",
                "library/busybox",
                None,
                true,
            ),
            (
                "busybox:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io",
                "library/busybox",
                Some("1"),
                true,
            ),
            (
                "a.b/c_d/e__f/g-h/i--j/k.l:T_a.g-1",
                "a.b",
                "c_d/e__f/g-h/i--j/k.l",
                Some("T_a.g-1"),
                false,
            ),
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                false,
            ),
        ];
        for (input, registry, repository, tag, has_digest) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, *registry, "{input}");
            assert_eq!(r.repository, *repository, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest.is_some(), *has_digest, "{input}");
            if *has_digest {
                assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
            }
            // Display is a fixed point of parse.
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{input}");
        }
    }

    #[test]
    fn display_and_object() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.name(), "docker.io/library/busybox");
        assert_eq!(r.object(), "latest");
        let r = Reference::parse(&format!("x/y:1@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/x/y:1@{D}"));
        assert_eq!(r.object(), D);
        let r = Reference::parse(&format!("127.0.0.1:5000/x@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x@{D}"));
    }

    #[test]
    fn rejects_invalid() {
        // (input, fragment of the reason)
        let long_tag = format!("x:{}", "a".repeat(129));
        let long_name = format!("x/{}", "a".repeat(260));
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            (" busybox", "white space"),
            ("Busybox", "must be lowercase"),
            ("foo/Bar:1", "must be lowercase"),
            ("quay.io/Foo/bar", "must be lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox:a/b", "port"),
            (&long_tag, "tag"),
            (&long_name, "longer than"),
            ("busybox@sha256:abc", "digest"),
            ("busybox@md5:0123", "digest"),
            (
                &D.replace("sha256:", "busybox@sha256:").replace('a', "A"),
                "digest",
            ),
            ("foo//bar", "empty path component"),
            ("foo/", "empty path component"),
            ("/foo", "empty path component"),
            ("-foo", "component"),
            ("foo-", "component"),
            ("foo..bar", "component"),
            ("foo___bar", "component"),
            ("foo$/bar", "component"),
            ("host:notaport/x", "port"),
            ("host:99999/x", "port"),
            ("-host.com/x", "host"),
            ("ho_st.com/x", "host"),
            ("[::1/x", "host[:port]"),
            ("[zz::1]/x", "IPv6"),
            ("https://docker.io/busybox", ""),
            (
                "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "empty",
            ),
        ];
        for (input, fragment) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r:?}"),
                Err(ReferenceError::Invalid { input: i, reason }) => {
                    assert_eq!(i, *input);
                    assert!(
                        reason.contains(fragment),
                        "{input:?}: reason {reason:?} lacks {fragment:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn uppercase_error_names_the_fix() {
        let e = Reference::parse("MyApp:1").unwrap_err().to_string();
        assert!(e.contains("\"MyApp:1\""), "{e}");
        assert!(e.contains("\"myapp\""), "{e}");
    }

    #[test]
    fn tag_grammar() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x"));
        assert!(is_valid_tag("1.0-rc.1_b"));
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("x+y"));
        assert!(!is_valid_tag(""));
    }

    #[test]
    fn loopback_registries() {
        let cases: &[(&str, bool)] = &[
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3:80", true),
            ("[::1]", true),
            ("[::1]:5000", true),
            ("docker.io", false),
            ("10.0.0.1:5000", false),
            ("128.0.0.1", false),
            ("[fe80::1]:5000", false),
            ("localhost.example.com", false),
            ("127.0.0.1.nip.io", false),
        ];
        for (registry, want) in cases {
            let r = Reference::parse(&format!("{registry}/x")).unwrap();
            assert_eq!(r.is_loopback_registry(), *want, "{registry}");
        }
    }

    #[test]
    fn from_str_works() {
        let r: Reference = "alpine:3".parse().unwrap();
        assert_eq!(r.to_string(), "docker.io/library/alpine:3");
    }
}
