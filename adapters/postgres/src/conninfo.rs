//! Connection strings as libpq reads them (a `postgres://` URL or `key=value` pairs),
//! checked so that a mistake is reported as what it is: an unknown scheme, a bare word, a
//! port that is not a number, an `sslmode` libpq does not know. The TLS parameters
//! (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) are taken out here, since the driver
//! knows only some of their values; everything else goes to the driver as written.

use std::str::FromStr;

use tokio_postgres::Config;

/// libpq's `sslmode` values, with libpq's meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Plain first, TLS if the server insists (phony tries TLS first without verifying it,
    /// which reaches the same servers).
    Allow,
    /// TLS if the server offers it, without verifying the certificate (libpq's default).
    #[default]
    Prefer,
    /// TLS or fail; the certificate is verified against `sslrootcert` when one is given or
    /// the default root file exists (as libpq does), not otherwise.
    Require,
    /// TLS, with a certificate signed by a CA in `sslrootcert`, whatever its host name.
    VerifyCa,
    /// TLS, with a certificate signed by a CA in `sslrootcert` and issued for the host.
    VerifyFull,
}

impl SslMode {
    /// The name libpq gives the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }
}

/// The TLS parameters of a connection string (or of libpq's environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: Option<SslMode>,
    pub root_cert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// A parsed connection string: the driver's configuration and the TLS parameters.
#[derive(Debug)]
pub struct Parsed {
    pub config: Config,
    pub tls: TlsParams,
}

/// Parses `s`; the error is a message saying what is wrong (without the password).
pub fn parse(s: &str) -> Result<Parsed, String> {
    let s = s.trim();
    if let Some((scheme, rest)) = url_scheme(s) {
        if scheme != "postgres" && scheme != "postgresql" {
            return Err(format!(
                "unknown scheme \"{scheme}://\": a connection URL starts with postgres:// or postgresql://"
            ));
        }
        return parse_url(scheme, rest);
    }
    parse_key_values(s)
}

/// The scheme of a URL-looking string: letters, digits, `+`, `-` and `.` before `://`.
fn url_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    is_scheme.then_some((scheme, rest))
}

fn parse_url(scheme: &str, rest: &str) -> Result<Parsed, String> {
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = base.split('/').next().unwrap_or("");
    let hosts = match authority.rsplit_once('@') {
        Some((_, h)) => h,
        None => authority,
    };
    check_host_list(hosts)?;

    let mut tls = TlsParams::default();
    let mut kept = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("URL parameter {:?} has no value", decode(pair)?));
        };
        let (key, value) = (decode(k)?, decode(v)?);
        if !take_tls_param(&mut tls, &key, &value)? {
            check_param(&key, &value)?;
            kept.push(pair);
        }
    }
    let mut rebuilt = format!("{scheme}://{base}");
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    let config = Config::from_str(&rebuilt).map_err(driver_message)?;
    Ok(Parsed { config, tls })
}

fn parse_key_values(s: &str) -> Result<Parsed, String> {
    let pairs = split_key_values(s)?;
    let mut tls = TlsParams::default();
    let mut rebuilt = String::new();
    for (key, value) in pairs {
        if take_tls_param(&mut tls, &key, &value)? {
            continue;
        }
        check_param(&key, &value)?;
        let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
        rebuilt.push_str(&format!("{key}='{escaped}' "));
    }
    let config = Config::from_str(rebuilt.trim_end()).map_err(driver_message)?;
    Ok(Parsed { config, tls })
}

/// libpq's `key = value` syntax: values may be single-quoted, with `\` escaping.
fn split_key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            if pairs.is_empty() && chars.peek().is_none() {
                return Err(format!(
                    "{key:?} is neither a URL (postgres://host/{key}) nor key=value pairs (host=… dbname={key})"
                ));
            }
            return Err(format!("missing \"=\" after {key:?}"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(format!("unterminated quoted value of {key:?}")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(format!("unterminated quoted value of {key:?}")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Takes a TLS parameter into `tls`; false when `key` is not one.
fn take_tls_param(tls: &mut TlsParams, key: &str, value: &str) -> Result<bool, String> {
    let slot = match key {
        "sslmode" => {
            tls.mode = Some(value.parse()?);
            return Ok(true);
        }
        "sslrootcert" => &mut tls.root_cert,
        "sslcert" => &mut tls.cert,
        "sslkey" => &mut tls.key,
        _ => return Ok(false),
    };
    *slot = Some(value.to_owned()).filter(|v| !v.is_empty());
    Ok(true)
}

/// Checks the values whose driver errors say too little.
fn check_param(key: &str, value: &str) -> Result<(), String> {
    match key {
        "port" => value.split(',').try_for_each(|p| check_port(p, value)),
        "host" => check_host_names(value),
        "password"
        | "user"
        | "dbname"
        | "options"
        | "application_name"
        | "hostaddr"
        | "connect_timeout"
        | "tcp_user_timeout"
        | "keepalives"
        | "keepalives_idle"
        | "keepalives_interval"
        | "keepalives_retries"
        | "target_session_attrs"
        | "channel_binding"
        | "load_balance_hosts"
        | "sslnegotiation" => Ok(()),
        other => Err(format!("unknown connection parameter {other:?}")),
    }
}

fn check_port(port: &str, context: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ if port.is_empty() => Ok(()),
        _ => Err(format!(
            "port {port:?} in {context:?} is not a number from 1 to 65535"
        )),
    }
}

fn check_host_names(hosts: &str) -> Result<(), String> {
    for host in hosts.split(',') {
        if host.contains(['[', ']', '@', '/']) && !host.starts_with('/') {
            return Err(format!("host {host:?} is not a host name or address"));
        }
    }
    Ok(())
}

/// Checks a URL's `host[:port],…` list.
fn check_host_list(hosts: &str) -> Result<(), String> {
    for spec in hosts.split(',') {
        let port = if let Some(inner) = spec.strip_prefix('[') {
            let Some((_, after)) = inner.split_once(']') else {
                return Err(format!("host {spec:?} has an unclosed '['"));
            };
            match after {
                "" => None,
                a => match a.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return Err(format!("unexpected {a:?} after the address in {spec:?}")),
                },
            }
        } else {
            if spec.contains(['[', ']']) {
                return Err(format!("host {spec:?} has a stray '[' or ']'"));
            }
            spec.rsplit_once(':').map(|(_, p)| p)
        };
        if let Some(p) = port {
            check_port(p, spec)?;
        }
    }
    Ok(())
}

fn decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => return Err("a '%' in the URL is not followed by two hex digits".into()),
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "the URL decodes to invalid UTF-8".to_owned())
}

/// The driver's message without its generic "invalid connection string" prefix.
fn driver_message(e: tokio_postgres::Error) -> String {
    match std::error::Error::source(&e) {
        Some(cause) => cause.to_string().replace('`', "\""),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s).unwrap_err()
    }

    #[test]
    fn urls_and_key_values_parse() {
        let p = parse("postgres://u:pw@h:5433/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(p.config.get_dbname(), Some("db"));
        assert_eq!(p.config.get_ports(), &[5433]);
        assert_eq!(p.tls.mode, Some(SslMode::VerifyFull));
        assert_eq!(p.tls.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let kv =
            parse("host=h port=1 user=u password='a b\\'c' dbname=d sslmode=require sslcert=/c")
                .unwrap();
        assert_eq!(kv.config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(kv.tls.mode, Some(SslMode::Require));
        assert_eq!(kv.tls.cert.as_deref(), Some("/c"));
        let multi = parse("postgresql://h1:1,[::1]:2/db").unwrap();
        assert_eq!(multi.config.get_ports(), &[1, 2]);
    }

    #[test]
    fn mistakes_are_named() {
        assert!(err("postgress://h/db").contains("unknown scheme \"postgress://\""));
        assert!(err("nc_dev").contains("neither a URL"));
        assert!(err("postgres://h:notaport/db").contains("port \"notaport\""));
        assert!(err("postgres://h:70000/db").contains("1 to 65535"));
        assert!(err("host=h port=x").contains("port \"x\""));
        assert!(err("postgres://h/db?sslmode=bogus").contains("sslmode \"bogus\" is not one of"));
        assert!(err("sslmode=bogus host=h").contains("sslmode \"bogus\""));
        assert!(err("postgres://[::1/db").contains("unclosed '['"));
        assert!(err("postgres://h[/db").contains("stray '['"));
        assert!(err("host=h dbname").contains("missing \"=\" after \"dbname\""));
        assert!(err("host='h").contains("unterminated"));
        assert!(err("postgres://h/db?frobnicate=1").contains("unknown connection parameter"));
        assert!(err("postgres://h/db?x").contains("has no value"));
    }

    #[test]
    fn the_password_is_not_in_messages() {
        for s in [
            "postgres://u:s3cret@h:bad/db",
            "postgres://u:s3cret@h/db?sslmode=nope",
            "user=u password=s3cret port=bad",
        ] {
            assert!(!err(s).contains("s3cret"), "{s}");
        }
    }
}
