//! Logging in and out, and who is asking: the session a request's cookie names (else the login
//! page), the CSRF token its form carries, and the client's address for the throttle.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::html::{frame, plain};
use super::session::Session;
use super::{count_login, internal, Console};
use crate::telemetry::labels::console_login;

/// The session the request's cookie names, if it is live and its operator still configured.
pub async fn session(c: &Console, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(id) = c.0.sessions.cookie(headers) else {
        return Ok(None);
    };
    match c.0.sessions.find(id).await {
        Ok(Some(s)) if c.0.passwords.knows(&s.user) => Ok(Some(s)),
        Ok(Some(s)) => {
            // An operator removed from console.users: their sessions end with them.
            c.0.sessions
                .end(&s)
                .await
                .map_err(|e| internal("ending a session", &e))?;
            Ok(None)
        }
        Ok(None) => Ok(None),
        Err(e) => Err(internal("reading a session", &e)),
    }
}

/// The logged-in operator's session, or the answer to send instead: the login page.
pub async fn required(c: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    match session(c, headers).await? {
        Some(s) => Ok(s),
        None => Err(Redirect::to("/login").into_response()),
    }
}

/// 403 unless `given` is the session's CSRF token.
#[allow(clippy::result_large_err)] // the answer itself, built once per refused request
pub fn csrf(s: &Session, given: Option<&str>) -> Result<(), Response> {
    if s.csrf_matches(given) {
        return Ok(());
    }
    tracing::warn!(operator = %s.user, "console: a POST without this session's CSRF token was refused");
    Err(plain(
        StatusCode::FORBIDDEN,
        "Refused",
        "This form is out of date or did not come from this console: nothing was done. Open the page again and retry.",
    ))
}

/// The client: the socket's peer, or when the peer is a trusted proxy the right-most address
/// of `X-Forwarded-For` that is not one.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            // Something the proxy did not write: stop at the last address it vouches for.
            Err(_) => break,
        }
    }
    peer
}

pub async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    match session(&c, &headers).await {
        Ok(Some(_)) => Redirect::to("/").into_response(),
        Ok(None) => form(StatusCode::OK, None, ""),
        Err(r) => r,
    }
}

fn form(status: StatusCode, problem: Option<&str>, name: &str) -> Response {
    let main = html! {
        h1 { "Sign in" }
        @if let Some(p) = problem { p.refused role="alert" { (p) } }
        form method="post" action="/login" {
            label for="name" { "Name" }
            input #name type="text" name="name" value=(name) autocomplete="username" required autofocus;
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            p { button type="submit" { "Sign in" } }
        }
    };
    frame(status, "Sign in", None, main).into_response()
}

/// The login form; the password is never logged or printed (no `Debug`).
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form_data: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form_data else {
        return plain(StatusCode::BAD_REQUEST, "Bad request", "That was not a sign-in form.");
    };
    let address = client_address(peer.ip(), &headers, &c.0.trusted_proxies);
    let keys = super::throttle::keys(&f.name, address);
    if let Err(wait) = c.0.throttle.attempt(&keys, Instant::now()) {
        count_login(console_login::THROTTLED);
        tracing::warn!(%address, "console: a login was refused: too many failures for this name or address");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let problem = format!("Too many failed sign-ins for this name or from this address. Try again in {secs} s.");
        let mut r = form(StatusCode::TOO_MANY_REQUESTS, Some(&problem), &f.name);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let matched = match c.0.passwords.verify(&f.name, &f.password).await {
        Ok(m) => m,
        Err(_) => {
            let busy = "Too many sign-ins at once. Try again in a few seconds.";
            return form(StatusCode::SERVICE_UNAVAILABLE, Some(busy), &f.name);
        }
    };
    if !matched {
        c.0.throttle.failed(&keys, Instant::now());
        count_login(console_login::WRONG_PASSWORD);
        tracing::warn!(%address, "console: a login failed (wrong name or password)");
        return form(StatusCode::UNAUTHORIZED, Some("Wrong name or password."), &f.name);
    }
    // A new session at every login (never one the browser brought); the old one ends.
    if let Ok(Some(old)) = session(&c, &headers).await {
        if let Err(e) = c.0.sessions.end(&old).await {
            return internal("ending the previous session", &e);
        }
    }
    let (id, _) = match c.0.sessions.create(&f.name).await {
        Ok(created) => created,
        Err(e) => return internal("creating a session", &e),
    };
    count_login(console_login::OK);
    tracing::info!(operator = %f.name, %address, "console: an operator signed in");
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&c.0.sessions.set_cookie(&id)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session (its document deleted) and clears the cookie.
pub async fn logout(
    State(c): State<Console>,
    headers: HeaderMap,
    form_data: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let s = match required(&c, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let given = form_data.ok().and_then(|Form(f)| f.csrf);
    if let Err(r) = csrf(&s, given.as_deref()) {
        return r;
    }
    if let Err(e) = c.0.sessions.end(&s).await {
        return internal("ending a session", &e);
    }
    tracing::info!(operator = %s.user, "console: an operator signed out");
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&c.0.sessions.clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 198.51.100.7".parse().expect("value"));
        let proxy = [ip("127.0.0.1")];
        assert_eq!(client_address(ip("127.0.0.1"), &h, &proxy), ip("198.51.100.7"));
        assert_eq!(
            client_address(ip("10.1.1.1"), &h, &proxy),
            ip("10.1.1.1"),
            "not a trusted peer"
        );
        let two = [ip("127.0.0.1"), ip("198.51.100.7")];
        assert_eq!(client_address(ip("127.0.0.1"), &h, &two), ip("203.0.113.9"));
        h.insert("x-forwarded-for", "junk".parse().expect("value"));
        assert_eq!(client_address(ip("127.0.0.1"), &h, &proxy), ip("127.0.0.1"));
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &proxy),
            ip("127.0.0.1")
        );
    }
}
