//! Label selectors (the `labelSelector` query parameter and the `metav1.LabelSelector` objects
//! controllers carry) and field selectors (the `fieldSelector` query parameter), parsed and
//! matched against objects as `serde_json::Value`.
//!
//! Field selectors only accept the fields kube-apiserver indexes for each resource; anything
//! else is refused with upstream's message, so `kubectl get --field-selector` fails the same way.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// A selector that cannot be parsed or uses a field the resource does not support. The client
/// must fix the selector; every variant maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse label selector {selector:?}: {detail}")]
    Label { selector: String, detail: String },
    #[error("invalid label selector object: {detail}")]
    LabelObject { detail: String },
    #[error("unable to parse field selector {selector:?}: {detail}")]
    Field { selector: String, detail: String },
    /// Upstream's wording, which kubectl users already know.
    #[error("field label not supported: {field}")]
    UnsupportedField { resource: String, field: String },
}

impl SelectorError {
    pub fn http_status(&self) -> u16 {
        400
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated; one value for `=`/`!=`/`>`/`<`, none for exists checks.
    pub values: Vec<String>,
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.contains(v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = || self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, one()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, one()),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, one()),
            Operator::LessThan => write!(f, "{}<{}", self.key, one()),
        }
    }
}

/// A conjunction of label requirements. The empty selector matches everything; the selector
/// built from a null `metav1.LabelSelector` matches nothing, as upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Parses the `labelSelector` query syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, joined by commas (AND).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let err = |detail: String| SelectorError::Label {
            selector: selector.to_string(),
            detail,
        };
        let tokens = lex(selector).map_err(err)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if p.peek().is_none() {
            return Ok(Self::everything());
        }
        loop {
            requirements.push(p.requirement().map_err(err)?);
            match p.next() {
                None => break,
                Some(Tok::Comma) => {
                    if p.peek().is_none() {
                        return Err(err("a requirement must follow ','".into()));
                    }
                }
                Some(t) => return Err(err(format!("expected ',' or the end, found {t}"))),
            }
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`), as found in
    /// deployment, replicaset, daemonset, job, service-less selectors and network policies.
    pub fn from_k8s(selector: &Value) -> Result<Self, SelectorError> {
        let err = |detail: String| SelectorError::LabelObject { detail };
        let obj = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(o) => o,
            other => return Err(err(format!("expected an object, found {other}"))),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let v = v
                        .as_str()
                        .ok_or_else(|| err(format!("matchLabels[{k:?}] must be a string")))?;
                    validate_key(k).map_err(err)?;
                    validate_value(v).map_err(err)?;
                    requirements.push(Requirement {
                        key: k.clone(),
                        operator: Operator::Equals,
                        values: vec![v.to_string()],
                    });
                }
            }
            Some(_) => return Err(err("matchLabels must be an object".into())),
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, e) in exprs.iter().enumerate() {
                    let key = e
                        .get("key")
                        .and_then(Value::as_str)
                        .ok_or_else(|| err(format!("matchExpressions[{i}].key is required")))?;
                    validate_key(key).map_err(err)?;
                    let values: Vec<String> = match e.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| v.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| {
                                err(format!("matchExpressions[{i}].values must be strings"))
                            })?,
                        Some(_) => {
                            return Err(err(format!("matchExpressions[{i}].values must be a list")))
                        }
                    };
                    let operator = match e.get("operator").and_then(Value::as_str) {
                        Some("In") => Operator::In,
                        Some("NotIn") => Operator::NotIn,
                        Some("Exists") => Operator::Exists,
                        Some("DoesNotExist") => Operator::DoesNotExist,
                        other => {
                            return Err(err(format!(
                                "matchExpressions[{i}].operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                            )))
                        }
                    };
                    let needs_values = matches!(operator, Operator::In | Operator::NotIn);
                    if needs_values && values.is_empty() {
                        return Err(err(format!(
                            "matchExpressions[{i}] ({key}): In and NotIn need at least one value"
                        )));
                    }
                    if !needs_values && !values.is_empty() {
                        return Err(err(format!(
                            "matchExpressions[{i}] ({key}): Exists and DoesNotExist take no values"
                        )));
                    }
                    for v in &values {
                        validate_value(v).map_err(err)?;
                    }
                    requirements.push(Requirement {
                        key: key.to_string(),
                        operator,
                        values,
                    });
                }
            }
            Some(_) => return Err(err("matchExpressions must be a list".into())),
        }
        Ok(Self::from_requirements(requirements))
    }

    fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        for r in &mut requirements {
            r.values.sort();
            r.values.dedup();
        }
        // Sorted by key so the string form is canonical, as upstream prints it.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches `metadata.labels` of an object; a missing or malformed label map counts as empty.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(&object_labels(object))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

pub fn object_labels(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s:?}"),
            Tok::Not => f.write_str("'!'"),
            Tok::Eq => f.write_str("'='"),
            Tok::DoubleEq => f.write_str("'=='"),
            Tok::NotEq => f.write_str("'!='"),
            Tok::Gt => f.write_str("'>'"),
            Tok::Lt => f.write_str("'<'"),
            Tok::Open => f.write_str("'('"),
            Tok::Close => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '>' | '<' | '(' | ')' | ',') || c.is_whitespace()
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let tok = match c {
            c if c.is_whitespace() => continue,
            '!' if chars.peek().map(|p| p.1) == Some('=') => {
                chars.next();
                Tok::NotEq
            }
            '!' => Tok::Not,
            '=' if chars.peek().map(|p| p.1) == Some('=') => {
                chars.next();
                Tok::DoubleEq
            }
            '=' => Tok::Eq,
            '>' => Tok::Gt,
            '<' => Tok::Lt,
            '(' => Tok::Open,
            ')' => Tok::Close,
            ',' => Tok::Comma,
            _ => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if is_special(d) {
                        break;
                    }
                    end = j + d.len_utf8();
                    chars.next();
                }
                Tok::Ident(s[i..end].to_string())
            }
        };
        out.push(tok);
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn key(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Ident(k)) => {
                validate_key(&k)?;
                Ok(k)
            }
            Some(t) => Err(format!("expected a label key, found {t}")),
            None => Err("expected a label key, found the end".into()),
        }
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            let key = self.key()?;
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: Vec::new(),
            });
        }
        let key = self.key()?;
        let operator = match self.peek() {
            None | Some(Tok::Comma) => {
                return Ok(Requirement {
                    key,
                    operator: Operator::Exists,
                    values: Vec::new(),
                })
            }
            Some(Tok::Eq | Tok::DoubleEq) => Operator::Equals,
            Some(Tok::NotEq) => Operator::NotEquals,
            Some(Tok::Gt) => Operator::GreaterThan,
            Some(Tok::Lt) => Operator::LessThan,
            Some(Tok::Ident(w)) if w == "in" => Operator::In,
            Some(Tok::Ident(w)) if w == "notin" => Operator::NotIn,
            Some(t) => {
                return Err(format!(
                    "after key {key:?} expected one of '=', '==', '!=', 'in', 'notin', '>', '<', ',' or the end, found {t}"
                ))
            }
        };
        self.next();
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set(&key)?,
            _ => {
                let v = match self.peek() {
                    Some(Tok::Ident(v)) => {
                        let v = v.clone();
                        self.next();
                        v
                    }
                    // `a=` selects an empty value.
                    None | Some(Tok::Comma) => String::new(),
                    Some(t) => return Err(format!("expected a value for {key:?}, found {t}")),
                };
                if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
                    v.parse::<i64>().map_err(|_| {
                        format!(
                            "the value for {key:?} with '>' or '<' must be an integer, found {v:?}"
                        )
                    })?;
                } else {
                    validate_value(&v)?;
                }
                vec![v]
            }
        };
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    fn value_set(&mut self, key: &str) -> Result<Vec<String>, String> {
        match self.next() {
            Some(Tok::Open) => {}
            Some(t) => {
                return Err(format!(
                    "expected '(' after 'in'/'notin' for {key:?}, found {t}"
                ))
            }
            None => return Err(format!("expected '(' after 'in'/'notin' for {key:?}")),
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Some(Tok::Ident(v)) if expect_value => {
                    validate_value(&v)?;
                    values.push(v);
                    expect_value = false;
                }
                Some(Tok::Comma) if !expect_value => expect_value = true,
                // An empty slot, as in `a in ()` or `a in (x,)`, stands for the empty value.
                Some(Tok::Comma) => values.push(String::new()),
                Some(Tok::Close) => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Some(t) => return Err(format!("unexpected {t} in the value list of {key:?}")),
                None => return Err(format!("the value list of {key:?} is missing ')'")),
            }
        }
    }
}

/// A name segment: up to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric.
fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn valid_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

fn validate_key(key: &str) -> Result<(), String> {
    let ok = match key.split_once('/') {
        Some((prefix, name)) => valid_dns_subdomain(prefix) && valid_name(name),
        None => valid_name(key),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}: a key is an optional DNS subdomain prefix and '/', then a name of at most 63 characters made of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() || valid_name(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: at most 63 characters made of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Field selectors

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub negated: bool,
    pub value: String,
}

/// A conjunction of `field=value` / `field!=value` terms, checked against the fields the
/// resource supports at parse time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSelector {
    resource: String,
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn everything(resource: &str) -> Self {
        FieldSelector {
            resource: plural(resource).to_string(),
            requirements: Vec::new(),
        }
    }

    /// `resource` is the plural name (`pods`, optionally `pods.` + group or `/subresource`).
    pub fn parse(resource: &str, selector: &str) -> Result<Self, SelectorError> {
        let mut out = Self::everything(resource);
        let err = |detail: String| SelectorError::Field {
            selector: selector.to_string(),
            detail,
        };
        if selector.trim().is_empty() {
            return Ok(out);
        }
        for term in split_unescaped(selector, ',') {
            let term = term.trim();
            let (field, negated, raw) = split_term(term).ok_or_else(|| {
                err(format!(
                    "cannot understand {term:?}: expected field=value, field==value or field!=value"
                ))
            })?;
            let field = match (out.resource.as_str(), field.trim()) {
                // Old v1 clients still send the pre-1.0 name of spec.nodeName.
                ("pods", "spec.host") => "spec.nodeName",
                (_, f) => f,
            };
            let value = unescape(raw.trim()).map_err(err)?;
            if field_value(&out.resource, &Value::Null, field).is_none() {
                return Err(SelectorError::UnsupportedField {
                    resource: out.resource.clone(),
                    field: field.to_string(),
                });
            }
            out.requirements.push(FieldRequirement {
                field: field.to_string(),
                negated,
                value,
            });
        }
        Ok(out)
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value an `=` term pins `field` to, so callers can serve `metadata.name=x` or
    /// `spec.nodeName=n` from an index instead of a scan.
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| !r.negated && r.field == field)
            .map(|r| r.value.as_str())
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let have = field_value(&self.resource, object, &r.field).unwrap_or_default();
            (have == r.value) != r.negated
        })
    }
}

fn plural(resource: &str) -> &str {
    let base = resource.split('/').next().unwrap_or(resource);
    base.split('.').next().unwrap_or(base)
}

fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Splits at the first operator, trying `!=` and `==` before `=` at each position as upstream.
fn split_term(term: &str) -> Option<(&str, bool, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
            continue;
        }
        let rest = &term[i..];
        if rest.starts_with("!=") {
            return Some((&term[..i], true, &term[i + 2..]));
        }
        if rest.starts_with("==") {
            return Some((&term[..i], false, &term[i + 2..]));
        }
        if rest.starts_with('=') {
            return Some((&term[..i], false, &term[i + 1..]));
        }
    }
    None
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('\\' | ',' | '=')) => out.push(e),
            Some(e) => return Err(format!("invalid escape sequence '\\{e}' in {s:?}")),
            None => return Err(format!("{s:?} ends with a lone '\\'")),
        }
    }
    Ok(out)
}

fn str_at(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn bool_at(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// The value of a supported field selector label on `object`, `None` if `resource` does not
/// support `field`. Missing fields read as the empty string (booleans as "false", numbers as
/// "0") because that is what the Go zero value prints as upstream.
pub fn field_value(resource: &str, object: &Value, field: &str) -> Option<String> {
    let plural = plural(resource);
    let v = match field {
        "metadata.name" => str_at(object, "/metadata/name"),
        // Nodes and namespaces register their own field label lists, which leave this out.
        "metadata.namespace" if !matches!(plural, "nodes" | "namespaces") => {
            str_at(object, "/metadata/namespace")
        }
        _ => match (plural, field) {
            ("pods", "spec.nodeName") => str_at(object, "/spec/nodeName"),
            ("pods", "spec.restartPolicy") => str_at(object, "/spec/restartPolicy"),
            ("pods", "spec.schedulerName") => str_at(object, "/spec/schedulerName"),
            ("pods", "spec.serviceAccountName") => str_at(object, "/spec/serviceAccountName"),
            ("pods", "spec.hostNetwork") => bool_at(object, "/spec/hostNetwork"),
            ("pods", "status.phase") => str_at(object, "/status/phase"),
            ("pods", "status.nominatedNodeName") => str_at(object, "/status/nominatedNodeName"),
            ("pods", "status.podIP") => {
                let first = str_at(object, "/status/podIPs/0/ip");
                if first.is_empty() {
                    str_at(object, "/status/podIP")
                } else {
                    first
                }
            }
            // Accepted as a label but never indexed upstream, so it only ever matches "".
            ("pods", "status.podIPs") => String::new(),
            ("services", "spec.clusterIP") => str_at(object, "/spec/clusterIP"),
            ("services", "spec.type") => str_at(object, "/spec/type"),
            ("events", "involvedObject.kind") => str_at(object, "/involvedObject/kind"),
            ("events", "involvedObject.namespace") => str_at(object, "/involvedObject/namespace"),
            ("events", "involvedObject.name") => str_at(object, "/involvedObject/name"),
            ("events", "involvedObject.uid") => str_at(object, "/involvedObject/uid"),
            ("events", "involvedObject.apiVersion") => str_at(object, "/involvedObject/apiVersion"),
            ("events", "involvedObject.resourceVersion") => {
                str_at(object, "/involvedObject/resourceVersion")
            }
            ("events", "involvedObject.fieldPath") => str_at(object, "/involvedObject/fieldPath"),
            ("events", "reason") => str_at(object, "/reason"),
            ("events", "reportingComponent") => str_at(object, "/reportingComponent"),
            ("events", "type") => str_at(object, "/type"),
            ("events", "source") => {
                let component = str_at(object, "/source/component");
                if component.is_empty() {
                    str_at(object, "/reportingComponent")
                } else {
                    component
                }
            }
            ("nodes", "spec.unschedulable") => bool_at(object, "/spec/unschedulable"),
            ("secrets", "type") => str_at(object, "/type"),
            ("namespaces", "status.phase") => str_at(object, "/status/phase"),
            ("replicationcontrollers" | "replicasets", "status.replicas") => {
                let n = str_at(object, "/status/replicas");
                if n.is_empty() {
                    "0".into()
                } else {
                    n
                }
            }
            ("jobs", "status.successful") => {
                let n = str_at(object, "/status/succeeded");
                if n.is_empty() {
                    "0".into()
                } else {
                    n
                }
            }
            ("certificatesigningrequests", "spec.signerName") => str_at(object, "/spec/signerName"),
            _ => return None,
        },
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_operators() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let yes = [
            "",
            "app=web",
            "app==web",
            "app!=db",
            "missing!=x",
            "app in (web,db)",
            "app notin (db)",
            "missing notin (x)",
            "app",
            "!missing",
            "app=web,tier=front",
            "  app = web ,  tier in ( front , back ) ",
            "n>3",
            "n<6",
            "example.com/x notin (a)",
        ];
        for s in yes {
            let sel = LabelSelector::parse(s).unwrap();
            assert!(sel.matches(&l), "{s:?} should match");
        }
        let no = [
            "app=db",
            "app!=web",
            "app in (db)",
            "app notin (web)",
            "missing",
            "!app",
            "app=web,tier=back",
            "n>5",
            "missing>1",
            "app=",
        ];
        for s in no {
            let sel = LabelSelector::parse(s).unwrap();
            assert!(!sel.matches(&l), "{s:?} should not match");
        }
        assert!(LabelSelector::parse("app=")
            .unwrap()
            .matches(&labels(&[("app", "")])));
    }

    #[test]
    fn label_parse_errors_are_clear() {
        for (s, needle) in [
            ("app=web,", "must follow ','"),
            ("app in web", "expected '('"),
            ("app in (a", "missing ')'"),
            ("=x", "expected a label key"),
            ("app=web=x", "expected ',' or the end"),
            ("-bad=x", "invalid label key"),
            ("app=has space", "expected ',' or the end"),
            ("n>x", "must be an integer"),
            ("app=-x", "invalid label value"),
        ] {
            let e = LabelSelector::parse(s).unwrap_err();
            assert_eq!(e.http_status(), 400);
            assert!(e.to_string().contains(needle), "{s:?}: {e}");
        }
    }

    #[test]
    fn label_display_is_canonical() {
        let sel = LabelSelector::parse("tier in (b,a), app=web, !x").unwrap();
        assert_eq!(sel.to_string(), "app=web,tier in (a,b),!x");
    }

    #[test]
    fn label_selector_from_k8s_object() {
        let sel = LabelSelector::from_k8s(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(sel.to_string(), "app=web,!canary,tier in (edge,front)");
        let pod = json!({"metadata": {"labels": {"app": "web", "tier": "edge"}}});
        assert!(sel.matches_object(&pod));
        let canary = json!({"metadata": {"labels": {"app": "web", "tier": "edge", "canary": "1"}}});
        assert!(!sel.matches_object(&canary));

        assert!(LabelSelector::from_k8s(&json!({}))
            .unwrap()
            .matches_object(&json!({})));
        assert!(!LabelSelector::from_k8s(&Value::Null)
            .unwrap()
            .matches_object(&json!({})));
        let e =
            LabelSelector::from_k8s(&json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
                .unwrap_err();
        assert!(e.to_string().contains("at least one value"), "{e}");
        let e = LabelSelector::from_k8s(
            &json!({"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not one of"), "{e}");
    }

    #[test]
    fn field_selectors_for_pods() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default"},
                         "spec": {"nodeName": "n1", "schedulerName": "default-scheduler"},
                         "status": {"phase": "Running", "podIP": "10.0.0.5",
                                    "podIPs": [{"ip": "10.0.0.5"}]}});
        for s in [
            "metadata.name=web",
            "metadata.namespace==default",
            "spec.nodeName=n1,status.phase!=Succeeded",
            "status.podIP=10.0.0.5",
            "spec.schedulerName=default-scheduler",
            "spec.hostNetwork=false",
            "status.nominatedNodeName=",
        ] {
            let sel = FieldSelector::parse("pods", s).unwrap();
            assert!(sel.matches(&pod), "{s:?} should match");
        }
        for s in [
            "spec.nodeName=n2",
            "status.phase!=Running",
            "metadata.name=web,spec.nodeName=",
        ] {
            let sel = FieldSelector::parse("pods", s).unwrap();
            assert!(!sel.matches(&pod), "{s:?} should not match");
        }
        let sel = FieldSelector::parse("pods", "spec.nodeName=n1").unwrap();
        assert_eq!(sel.exact("spec.nodeName"), Some("n1"));
        assert!(FieldSelector::parse("pods", "").unwrap().is_everything());
    }

    #[test]
    fn field_selectors_other_resources() {
        let ev = json!({"metadata": {"name": "e1"}, "type": "Warning", "reason": "BackOff",
                        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
                        "source": {"component": "kubelet"}});
        let sel = FieldSelector::parse(
            "events",
            "involvedObject.kind=Pod,involvedObject.name=web,type=Warning,reason=BackOff,source=kubelet",
        )
        .unwrap();
        assert!(sel.matches(&ev));
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(FieldSelector::parse("nodes", "spec.unschedulable=true")
            .unwrap()
            .matches(&node));
        assert!(!FieldSelector::parse("nodes", "spec.unschedulable=false")
            .unwrap()
            .matches(&node));
        let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
        assert!(FieldSelector::parse("secrets", "type=kubernetes.io/tls")
            .unwrap()
            .matches(&secret));
        assert!(FieldSelector::parse("configmaps", "metadata.name=x").is_ok());
    }

    #[test]
    fn field_selector_errors_and_escapes() {
        let e = FieldSelector::parse("pods", "spec.foo=x").unwrap_err();
        assert_eq!(e.to_string(), "field label not supported: spec.foo");
        assert_eq!(e.http_status(), 400);
        let e = FieldSelector::parse("configmaps", "spec.nodeName=x").unwrap_err();
        assert_eq!(e.to_string(), "field label not supported: spec.nodeName");
        let e = FieldSelector::parse("nodes", "metadata.namespace=x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "field label not supported: metadata.namespace"
        );
        let sel = FieldSelector::parse("pods", "spec.host=n1").unwrap();
        assert_eq!(sel.exact("spec.nodeName"), Some("n1"));
        let svc =
            json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "type": "ClusterIP"}});
        assert!(
            FieldSelector::parse("services", "spec.clusterIP!=None,spec.type=ClusterIP")
                .map(|s| !s.matches(&svc))
                .unwrap()
        );
        let e = FieldSelector::parse("pods", "metadata.name").unwrap_err();
        assert!(e.to_string().contains("cannot understand"), "{e}");
        let e = FieldSelector::parse("pods", r"metadata.name=a\x").unwrap_err();
        assert!(e.to_string().contains("invalid escape"), "{e}");

        let sel = FieldSelector::parse("configmaps", r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(sel.exact("metadata.name"), Some("a,b=c"));
        assert!(sel.matches(&json!({"metadata": {"name": "a,b=c"}})));
    }
}
