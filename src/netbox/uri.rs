//! The URI forms `net.box.connect` takes, split as Tarantool 2.6's `uri.parse` splits them:
//! `3301`, `host:3301`, `login:password@host:3301`, `unix/:/path`, `/path`, an optional
//! `scheme://` and `[ipv6]` hosts. Only the parts net.box uses are kept.

/// A parsed URI. `host` is `unix/` for a unix socket, whose path is then the `service`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uri {
    pub host: Option<String>,
    pub service: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
}

/// The host that stands for "a unix socket path follows".
pub const UNIX_HOST: &str = "unix/";

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '%' | '~')
}

fn is_service_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}

/// Splits `text`; None where `uri.parse` gives nil (empty text, spaces, a bare `:port`).
pub fn parse(text: &str) -> Option<Uri> {
    let mut uri = Uri::default();
    let mut rest = text;
    if let Some(i) = rest.find("://") {
        rest = &rest[i + 3..];
    }
    if rest.starts_with('/') {
        uri.host = Some(UNIX_HOST.into());
        uri.service = Some(rest.to_string());
        return Some(uri);
    }
    // Credentials end at the last '@' before a unix path (a path may hold '@').
    let unix_at = rest.find("unix/:");
    let at = match unix_at {
        Some(u) => rest[..u].rfind('@'),
        None => rest.rfind('@'),
    };
    if let Some(at) = at {
        let creds = &rest[..at];
        match creds.split_once(':') {
            Some((login, password)) => {
                uri.login = Some(login.to_string());
                uri.password = Some(password.to_string());
            }
            None => uri.login = Some(creds.to_string()),
        }
        rest = &rest[at + 1..];
    }
    if let Some(path) = rest.strip_prefix("unix/:") {
        uri.host = Some(UNIX_HOST.into());
        uri.service = Some(path.to_string());
        return Some(uri);
    }
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return None;
    }
    if rest.chars().all(|c| c.is_ascii_digit()) {
        uri.service = Some(rest.to_string());
        return Some(uri);
    }
    let (host, service) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((host, service)) => (host, Some(service)),
            None => (rest, None),
        }
    };
    if host.is_empty() || !(host.contains(':') || host.chars().all(is_host_char)) {
        return None;
    }
    if let Some(s) = service {
        if s.is_empty() || !s.chars().all(is_service_char) {
            return None;
        }
    }
    uri.host = Some(host.to_string());
    uri.service = service.map(str::to_string);
    Some(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (host, service, login, password)
    type Parts = (Option<String>, Option<String>, Option<String>, Option<String>);

    fn parts(text: &str) -> Option<Parts> {
        parse(text).map(|u| (u.host, u.service, u.login, u.password))
    }

    fn want(host: Option<&str>, service: Option<&str>, login: Option<&str>, password: Option<&str>) -> Option<Parts> {
        let own = |s: Option<&str>| s.map(str::to_string);
        Some((own(host), own(service), own(login), own(password)))
    }

    /// What Tarantool 2.6.0's `uri.parse` returned for each text (host, service, login,
    /// password), captured with the real binary.
    #[test]
    fn splits_as_tarantool_does() {
        let cases: Vec<(&str, Option<Parts>)> = vec![
            ("3401", want(None, Some("3401"), None, None)),
            ("localhost:3401", want(Some("localhost"), Some("3401"), None, None)),
            (
                "test:pass@127.0.0.1:3401",
                want(Some("127.0.0.1"), Some("3401"), Some("test"), Some("pass")),
            ),
            (
                "test@127.0.0.1:3401",
                want(Some("127.0.0.1"), Some("3401"), Some("test"), None),
            ),
            (
                "unix/:/tmp/x.sock",
                want(Some("unix/"), Some("/tmp/x.sock"), None, None),
            ),
            (
                "test:pass@unix/:/tmp/x.sock",
                want(Some("unix/"), Some("/tmp/x.sock"), Some("test"), Some("pass")),
            ),
            ("/tmp/x.sock", want(Some("unix/"), Some("/tmp/x.sock"), None, None)),
            ("abc", want(Some("abc"), None, None, None)),
            ("tcp://h:1", want(Some("h"), Some("1"), None, None)),
            ("[::1]:3301", want(Some("::1"), Some("3301"), None, None)),
            ("h:abc", want(Some("h"), Some("abc"), None, None)),
            ("user:@h:1", want(Some("h"), Some("1"), Some("user"), Some(""))),
            ("", None),
            (":3401", None),
            ("a b:1", None),
        ];
        for (i, (text, expected)) in cases.iter().enumerate() {
            assert_eq!(parts(text), *expected, "#{i}: {text:?}");
        }
    }
}
