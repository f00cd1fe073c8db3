//! Credentials in a URL's authority (`user:password@host`): split off for Basic auth, or
//! replaced for logs, API responses and webhook bodies.
//!
//! Invariant: [`redact`] never lets a password through, whatever the URL's shape.

use percent_encoding::percent_decode_str;

/// Splits `user:pass@` off a URL: (URL without credentials, Basic-auth user and password).
pub fn split_userinfo(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let creds = match userinfo.split_once(':') {
        Some((u, p)) => (decode(u), Some(decode(p))),
        None => (decode(userinfo), None),
    };
    (
        format!("{scheme}://{host}{}", &rest[auth_end..]),
        Some(creds),
    )
}

/// The URL with any password replaced, for logs and API responses.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:REDACTED@{host}{}", &rest[auth_end..])
        }
        None => url.to_string(),
    }
}
