//! Keeping secrets out of messages and logs.
//!
//! A broker or camera URL may carry credentials (`mqtt://cam:PASSWORD@host`,
//! `rtsp://admin:PASSWORD@10.0.0.5/stream1`). Every message that quotes a URL goes through
//! [`url`] or [`text`], which replace the password with `***`; the `ocellus` program also passes
//! every log line through [`text`]. Config values of secret keys are never quoted at all
//! ([`is_secret_key`]).

/// What a password is replaced with.
pub const MASK: &str = "***";

/// `scheme://user:***@rest` for `scheme://user:password@rest`; other text is unchanged.
pub fn url(u: &str) -> String {
    text(u)
}

/// Every `scheme://user:password@` in `s` with the password replaced by [`MASK`] (a user name
/// alone is kept: it is not a secret).
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the first '/', '?', '#', whitespace or quote
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Whether a config key holds a secret whose value must never be quoted (`mqtt.password`,
/// `cloud.shared_access_key`, a token, a connection string).
pub fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    last.contains("password")
        || last.contains("secret")
        || last.contains("token")
        || last.contains("connection_string")
        || last.ends_with("key")
}

/// Whether `u` carries a password in its user info.
pub fn has_password(u: &str) -> bool {
    text(u) != u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_and_nothing_else_changes() {
        assert_eq!(
            url("mqtt://cam:s3cret@host:1883"),
            "mqtt://cam:***@host:1883"
        );
        assert_eq!(
            text("cannot open \"rtsp://admin:pa:ss@10.0.0.5/s1?x=1\" twice: rtsp://a:b@h"),
            "cannot open \"rtsp://admin:***@10.0.0.5/s1?x=1\" twice: rtsp://a:***@h"
        );
        assert_eq!(url("mqtt://user@host"), "mqtt://user@host");
        assert_eq!(url("mqtt://host:1883/x@y"), "mqtt://host:1883/x@y");
        assert_eq!(text("no url here"), "no url here");
        assert!(has_password("rtsp://a:b@h/"));
        assert!(!has_password("rtsp://h/"));
    }

    #[test]
    fn secret_keys_are_recognised() {
        for k in [
            "mqtt.password",
            "cloud.shared_access_key",
            "x.token",
            "cloud.connection_string",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["mqtt.url", "source.path", "mqtt.username", "model.card"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
