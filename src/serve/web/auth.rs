//! Who is asking: a bearer token or a session from a token login; CSRF and `Origin` checks on every form POST.

use super::html::Viewer;
use crate::approvals::{Person, eq_constant_time, new_token, token_hash};
use axum::http::{HeaderMap, header};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a session lasts without signing in again.
const SESSION_MS: i64 = 12 * 3600 * 1000;

/// The session cookie's name.
pub const COOKIE: &str = "flowc_session";

/// The service's sessions, by the hash of their cookie (a restart signs everyone out).
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

#[derive(Debug, Clone)]
struct Session {
    person: String,
    csrf: String,
    expires: i64,
}

/// A signed-in request.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Who.
    pub person: Person,
    /// The session's CSRF token ("" with a bearer token).
    pub csrf: String,
    /// Whether it came with `Authorization: Bearer` (no ambient credential, so no CSRF check).
    pub bearer: bool,
}

impl Auth {
    /// The frame's view of who is signed in.
    pub fn viewer(&self) -> Viewer {
        Viewer {
            name: self.person.name.clone(),
            csrf: self.csrf.clone(),
        }
    }
}

impl Sessions {
    /// Starts a session for `person`; returns the cookie value.
    pub fn start(&self, person: &str, now: i64) -> Result<String, String> {
        let sid = new_token()?;
        let csrf = new_token()?;
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > now);
        map.insert(
            token_hash(&sid),
            Session {
                person: person.to_string(),
                csrf,
                expires: now + SESSION_MS,
            },
        );
        Ok(sid)
    }

    /// Ends the session of this cookie value.
    pub fn end(&self, sid: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&token_hash(sid));
    }

    fn get(&self, sid: &str, now: i64) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&token_hash(sid))
            .filter(|s| s.expires > now)
            .cloned()
    }
}

/// A cookie's value from the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Who the request is from, if anyone: a bearer token of a listed person, or a live session.
pub fn authenticate(
    people: &crate::approvals::People,
    sessions: &Sessions,
    headers: &HeaderMap,
    now: i64,
) -> Option<Auth> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        // A bad bearer token is no identity, even with a cookie beside it.
        return people
            .by_token_hash(&token_hash(token.trim()))
            .map(|p| Auth {
                person: p.clone(),
                csrf: String::new(),
                bearer: true,
            });
    }
    let session = sessions.get(cookie(headers, COOKIE)?, now)?;
    Some(Auth {
        person: people.named(&session.person),
        csrf: session.csrf,
        bearer: false,
    })
}

/// A state-changing request from a browser must come from this page: its
/// `Origin` (or, without one, its `Referer`) names this host, and with a
/// session it carries the session's CSRF token.
pub fn check_post(
    headers: &HeaderMap,
    auth: Option<&Auth>,
    csrf: Option<&str>,
) -> Result<(), String> {
    if auth.is_some_and(|a| a.bearer) {
        return Ok(());
    }
    same_origin(headers)?;
    if let Some(a) = auth
        && !csrf.is_some_and(|c| eq_constant_time(c, &a.csrf))
    {
        return Err("the form's CSRF token is missing or stale; reload the page".into());
    }
    Ok(())
}

/// The request's `Origin` or `Referer` is this host (as the `Host` header names it).
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or("the request has no Host header")?;
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok())
        .ok_or("a form POST must carry an Origin or Referer header")?;
    let authority = from
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    if authority.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(format!(
            "the request comes from `{from}`, not from this page ({host})"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_post_from_another_origin_or_without_the_token_is_refused() {
        let auth = Auth {
            person: Person::unlisted("ann"),
            csrf: "tok".into(),
            bearer: false,
        };
        let ok = headers(&[
            (header::HOST, "127.0.0.1:8737"),
            (header::ORIGIN, "http://127.0.0.1:8737"),
        ]);
        assert!(check_post(&ok, Some(&auth), Some("tok")).is_ok());
        assert!(check_post(&ok, Some(&auth), Some("other")).is_err());
        assert!(check_post(&ok, Some(&auth), None).is_err());
        let evil = headers(&[
            (header::HOST, "127.0.0.1:8737"),
            (header::ORIGIN, "http://evil.example"),
        ]);
        assert!(check_post(&evil, Some(&auth), Some("tok")).is_err());
        let none = headers(&[(header::HOST, "127.0.0.1:8737")]);
        assert!(check_post(&none, Some(&auth), Some("tok")).is_err());
        let bearer = Auth {
            bearer: true,
            ..auth
        };
        assert!(check_post(&none, Some(&bearer), None).is_ok());
    }
}
