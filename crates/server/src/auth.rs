//! Who is asking, and may they. Authentication: an x509 client certificate the TLS layer
//! already verified against the CA (user = CN, groups = O), or the join token as a bearer
//! token (a bootstrap user, as upstream's bootstrap tokens). Authorization: `system:masters`
//! may do anything; bootstrappers may create and read CertificateSigningRequests (kubelet
//! TLS bootstrap); everyone else is refused until the node authorizer lands.

/// The authenticated caller, attached to each request by the connection handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    Anonymous,
    Authenticated { name: String, groups: Vec<String> },
}

impl User {
    /// Read the user from a verified client certificate's subject. A certificate without a
    /// CN names nobody, so it is treated like no certificate at all.
    pub fn from_client_cert(der: &[u8]) -> User {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return User::Anonymous;
        };
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        match name {
            Some(name) if !name.is_empty() => User::Authenticated { name, groups },
            _ => User::Anonymous,
        }
    }

    /// The user a valid join token authenticates as (upstream: `system:bootstrap:<token-id>`).
    pub fn bootstrap(token: &str) -> User {
        let id: String = token.chars().take_while(|c| *c != '.').take(6).collect();
        User::Authenticated {
            name: format!("system:bootstrap:{id}"),
            groups: vec!["system:bootstrappers".into()],
        }
    }

    /// Check a bearer token against the join token without leaking its length or contents
    /// through timing.
    pub fn from_bearer(presented: &str, join_token: &str) -> Option<User> {
        let (a, b) = (presented.as_bytes(), join_token.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        same.then(|| User::bootstrap(join_token))
    }

    pub fn name(&self) -> &str {
        match self {
            User::Anonymous => "system:anonymous",
            User::Authenticated { name, .. } => name,
        }
    }
}

/// What a request wants to do, in RBAC terms.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Decide; on refusal return upstream's sentence for the 403 Status.
pub fn authorize(user: &User, attrs: &Attributes<'_>) -> Result<(), String> {
    if let User::Authenticated { groups, .. } = user {
        if groups.iter().any(|g| g == "system:masters") {
            return Ok(());
        }
        let csr = attrs.group == "certificates.k8s.io"
            && attrs.resource == "certificatesigningrequests"
            && attrs.subresource.is_none()
            && matches!(attrs.verb, "create" | "get" | "list" | "watch");
        if csr && groups.iter().any(|g| g == "system:bootstrappers") {
            return Ok(());
        }
    }
    let resource = match attrs.subresource {
        Some(sub) => format!("{}/{}", attrs.resource, sub),
        None => attrs.resource.to_string(),
    };
    let scope = match attrs.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_string(),
    };
    let target = match attrs.name {
        Some(n) => format!("{} \"{n}\"", attrs.resource),
        None => attrs.resource.to_string(),
    };
    Err(format!(
        "{target} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\"{scope}",
        user.name(),
        attrs.verb,
        attrs.group
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_may_everything_others_nothing() {
        let attrs = Attributes {
            verb: "list",
            group: "",
            resource: "pods",
            subresource: None,
            namespace: Some("default"),
            name: None,
        };
        let admin = User::Authenticated {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert!(authorize(&admin, &attrs).is_ok());
        let bob = User::Authenticated {
            name: "bob".into(),
            groups: vec![],
        };
        let boot = User::from_bearer("0123456789abcdef", "0123456789abcdef").unwrap();
        assert_eq!(boot.name(), "system:bootstrap:012345");
        assert!(User::from_bearer("0123456789abcdeX", "0123456789abcdef").is_none());
        let csr = Attributes {
            verb: "create",
            group: "certificates.k8s.io",
            resource: "certificatesigningrequests",
            ..attrs.clone()
        };
        assert!(authorize(&boot, &csr).is_ok());
        assert!(authorize(&boot, &attrs).is_err());
        assert_eq!(
            authorize(&bob, &attrs).unwrap_err(),
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}
