//! How a client reaches a Valkey queue: its URL (`valkey://HOST[:PORT]/NAME`), and on a
//! shared network TLS with the user's CA
//! (`valkeys://`), and AUTH as an ACL user whose password comes from a file or the
//! environment, never from the URL, the command line or a log.
//!
//! - `VALKEY_BENCH_QUEUE_CA`: the PEM file of the CA that signed the queue server's
//!   certificate; required by `valkeys://`. The server's name is checked against the
//!   URL's host (its IP address when the host is one).
//! - `VALKEY_BENCH_QUEUE_USER`: the ACL user (default `default`).
//! - `VALKEY_BENCH_QUEUE_PASSWORD_FILE`: a file whose first line is the password, or
//!   `VALKEY_BENCH_QUEUE_PASSWORD`: the password itself. Neither set: no AUTH.

use std::fmt;
use std::path::Path;

use bench_core::transport::Tls;

use super::check_name;

pub const CA: &str = "VALKEY_BENCH_QUEUE_CA";
pub const USER: &str = "VALKEY_BENCH_QUEUE_USER";
pub const PASSWORD_FILE: &str = "VALKEY_BENCH_QUEUE_PASSWORD_FILE";
pub const PASSWORD: &str = crate::process::QUEUE_PASSWORD;

/// The most a CA file or a password file may hold: a bound on what a mistaken path
/// (a log, a device) makes us read.
const MAX_FILE: u64 = 1 << 20;

/// TLS and AUTH for one queue, from the environment.
#[derive(Default)]
pub struct Access {
    pub tls: Option<Tls>,
    pub auth: Option<Auth>,
}

/// An ACL user and its password; the password is never shown (`Debug` hides it).
pub struct Auth {
    pub user: String,
    password: String,
}

impl Auth {
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Auth {{ user: {:?}, password: <hidden> }}", self.user)
    }
}

impl Access {
    /// `tls`: the URL said `valkeys://`; `host` is its host. `var` reads the environment
    /// (a map in the tests). Errors name the variable, what is wrong and the fix.
    pub fn from_env(
        tls: bool,
        host: &str,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Access, String> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let tls = match (tls, set(CA)) {
            (false, None) => None,
            (false, Some(_)) => {
                return Err(format!(
                    "{CA} is set but the queue URL says valkey:// (plain TCP); give valkeys://HOST[:PORT]/NAME \
                     to speak TLS, or unset {CA}"
                ));
            }
            (true, None) => {
                return Err(format!(
                    "a valkeys:// queue needs the CA that signed its server's certificate: set {CA}=FILE (PEM)"
                ));
            }
            (true, Some(path)) => {
                let pem = read_small(Path::new(&path)).map_err(|e| format!("{CA}={path}: {e}"))?;
                // An IP host is checked against the certificate's IP addresses (the
                // address connected to); a name against its DNS names.
                let name = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_err()
                    .then_some(host);
                Some(Tls::new(&pem, None, name).map_err(|e| format!("{CA}={path}: {e}"))?)
            }
        };
        let password = match (set(PASSWORD_FILE), set(PASSWORD)) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "both {PASSWORD_FILE} and {PASSWORD} are set; keep one (the file keeps the password \
                     out of the environment of every process you start)"
                ));
            }
            (Some(path), None) => {
                let text = read_small(Path::new(&path))
                    .map_err(|e| format!("{PASSWORD_FILE}={path}: {e}"))?;
                let text = String::from_utf8(text)
                    .map_err(|_| format!("{PASSWORD_FILE}={path}: the password is not UTF-8"))?;
                let first = text.lines().next().unwrap_or("").to_string();
                if first.is_empty() {
                    return Err(format!(
                        "{PASSWORD_FILE}={path}: the first line is empty; write the password there"
                    ));
                }
                Some(first)
            }
            (None, Some(password)) => Some(password),
            (None, None) => None,
        };
        let user = set(USER);
        let auth = match (password, user) {
            (Some(password), user) => Some(Auth {
                user: user.unwrap_or_else(|| "default".into()),
                password,
            }),
            (None, Some(user)) => {
                return Err(format!(
                    "{USER}={user} is set with no password; set {PASSWORD_FILE}=FILE (or {PASSWORD})"
                ));
            }
            (None, None) => None,
        };
        if auth.is_some() && tls.is_none() && !loopback(host) {
            return Err(format!(
                "a password for a queue on {host} would cross the network in the clear: give \
                 valkeys:// (with {CA}), or keep the plain queue on a loopback address"
            ));
        }
        Ok(Access { tls, auth })
    }
}

/// A Valkey queue's URL, parsed.
#[derive(Debug, PartialEq)]
pub struct QueueUrl {
    /// `host:port` (port 6379 when the URL gave none).
    pub hostport: String,
    pub host: String,
    pub name: String,
    /// `valkeys://`: TLS (`access.rs`).
    pub tls: bool,
}

/// `valkey://HOST[:PORT]/NAME`, or `valkeys://` for TLS. Errors name the part and the fix.
pub fn parse_url(url: &str) -> Result<QueueUrl, String> {
    // Credentials typed into the URL are refused below, and never echoed.
    let shown = match url.split_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{after}"),
            None => format!("***@{after}"),
        },
        None => url.to_string(),
    };
    // Parsed redacted: a URL with an `@` is refused either way (no '@' in a name).
    let url = shown.as_str();
    let form =
        "give valkey://HOST[:PORT]/NAME (valkeys:// for TLS), e.g. valkey://127.0.0.1:6379/lab";
    let (rest, tls) = match (
        url.strip_prefix("valkey://"),
        url.strip_prefix("valkeys://"),
    ) {
        (Some(rest), _) => (rest, false),
        (_, Some(rest)) => (rest, true),
        _ => {
            let scheme = url.split("://").next().unwrap_or(url);
            return Err(format!(
                "--queue {url:?}: {scheme}:// is not a queue; {form}, or a directory"
            ));
        }
    };
    let Some((authority, name)) = rest.split_once('/') else {
        return Err(format!("--queue {url:?}: no queue NAME; {form}"));
    };
    check_name(name).map_err(|e| format!("--queue {url:?}: {e}"))?;
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "--queue {url:?}: {:?} is no HOST[:PORT] (credentials are not taken in the URL); \
             {form}",
            authority
        ));
    }
    let (hostport, host) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.ends_with(']') => {
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("--queue {url:?}: port {port:?} is not 1-65535"))?;
            (authority.to_string(), host.to_string())
        }
        _ => (format!("{authority}:6379"), authority.to_string()),
    };
    if host.is_empty() {
        return Err(format!("--queue {url:?}: no HOST; {form}"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "--queue {url:?}: an IPv6 address goes in brackets, e.g. valkey://[::1]:6379/lab"
        ));
    }
    Ok(QueueUrl {
        hostport,
        host,
        name: name.to_string(),
        tls,
    })
}

/// Whether `host` is this machine's loopback (`localhost`, 127.0.0.0/8, `[::1]`).
fn loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A small file's bytes: a regular file of at most [`MAX_FILE`].
fn read_small(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{} bytes, over the {MAX_FILE} this reads",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn urls_name_the_part_that_is_wrong() {
        let url = |hostport: &str, host: &str, name: &str, tls| QueueUrl {
            hostport: hostport.into(),
            host: host.into(),
            name: name.into(),
            tls,
        };
        assert_eq!(
            parse_url("valkey://127.0.0.1:6400/lab"),
            Ok(url("127.0.0.1:6400", "127.0.0.1", "lab", false))
        );
        assert_eq!(
            parse_url("valkeys://queue.example/lab-1"),
            Ok(url("queue.example:6379", "queue.example", "lab-1", true))
        );
        for (url, says) in [
            ("redis://h:1/x", "redis:// is not a queue"),
            ("valkey://h:1", "no queue NAME"),
            ("valkey://h:1/", "queue name \"\""),
            ("valkey://h:1/a/b", "queue name \"a/b\""),
            ("valkey://h:1/{x}", "queue name \"{x}\""),
            ("valkey://h:0/x", "port \"0\""),
            ("valkey://h:99999/x", "port \"99999\""),
            ("valkey://user:pw@h:1/x", "credentials"),
            ("valkey:///x", "no HOST"),
            ("valkeys://:6379/x", "no HOST"),
            ("valkey://::1/x", "IPv6 address goes in brackets"),
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
        }
        // Credentials typed into the URL are refused and never echoed.
        let err = parse_url("valkeys://queue:hunter2@h:1/x").unwrap_err();
        assert!(
            err.contains("credentials") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn a_password_comes_from_a_file_or_the_environment_and_is_never_shown() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let path = file.to_str().unwrap();
        let access = Access::from_env(
            false,
            "localhost",
            &env(&[(PASSWORD_FILE, path), (USER, "queue")]),
        )
        .unwrap();
        let auth = access.auth.unwrap();
        assert_eq!((auth.user.as_str(), auth.password()), ("queue", "s3cret"));
        assert!(!format!("{auth:?}").contains("s3cret"));
        let access = Access::from_env(false, "127.0.0.1", &env(&[(PASSWORD, "p")])).unwrap();
        assert_eq!(access.auth.unwrap().user, "default");
        assert!(
            Access::from_env(false, "h", &env(&[]))
                .unwrap()
                .auth
                .is_none()
        );
    }

    #[test]
    fn a_half_configured_access_is_refused_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        type Env<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(bool, Env, &str)> = vec![
            (true, vec![], "set VALKEY_BENCH_QUEUE_CA=FILE"),
            (false, vec![(CA, "/x")], "give valkeys://"),
            (
                true,
                vec![(CA, "/no/such/ca.pem")],
                "VALKEY_BENCH_QUEUE_CA=/no/such/ca.pem",
            ),
            (
                true,
                vec![(CA, empty.to_str().unwrap())],
                "no PEM certificate",
            ),
            (false, vec![(USER, "queue")], "with no password"),
            (
                false,
                vec![(PASSWORD, "a"), (PASSWORD_FILE, "/b")],
                "keep one",
            ),
            (
                false,
                vec![(PASSWORD_FILE, empty.to_str().unwrap())],
                "first line is empty",
            ),
            (false, vec![(PASSWORD_FILE, "/")], "not a regular file"),
            (
                false,
                vec![(PASSWORD, "p")],
                "cross the network in the clear",
            ),
        ];
        for (tls, pairs, says) in cases {
            let e = Access::from_env(tls, "h", &env(&pairs))
                .err()
                .unwrap_or_default();
            assert!(e.contains(says), "{pairs:?}: {e}");
        }
    }
}
