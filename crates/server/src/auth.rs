//! Who is asking, and may they. Authentication: an x509 client certificate the TLS layer
//! already verified against the CA (user = CN, groups = O). Authorization: `system:masters`
//! may do anything; everyone else is refused until the node authorizer lands.

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
        assert_eq!(
            authorize(&bob, &attrs).unwrap_err(),
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}
