//! Every POST must come from the console's own pages. The CSRF token guards a signed-in
//! session's forms, but the login form has no session yet: without this check another site's
//! page could post its owner's name and password to `/login` and sign the victim's browser in
//! as the attacker (login CSRF), whose later actions would then be recorded under the attacker's
//! name, or whose pages the attacker controls. So before any POST is read, what the browser says
//! about where the request comes from is checked:
//! - `Sec-Fetch-Site` (every current browser sends it, and a page cannot forge it): only
//!   `same-origin` (or `none`, a request the user made themself) passes;
//! - without it, `Origin` (browsers send it with every cross-origin POST): `null`, or a host
//!   other than the request's `Host`, is refused;
//! - with neither (not a browser: curl, scripts), the request passes: a cross-site forgery
//!   needs a victim's browser, and a browser sends one of the two.

use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::html::plain;

/// Why a POST's headers say it comes from another site, if they do.
pub fn foreign(headers: &HeaderMap) -> Option<&'static str> {
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Some(site) = text("sec-fetch-site") {
        return match site.trim().to_ascii_lowercase().as_str() {
            "same-origin" | "none" => None,
            _ => Some("Sec-Fetch-Site is not same-origin"),
        };
    }
    let origin = text(header::ORIGIN.as_str())?;
    let Some((_, authority)) = origin.trim().split_once("://") else {
        return Some("Origin is not a URL of this console (`null`, or opaque)");
    };
    let host = text(header::HOST.as_str()).unwrap_or_default().trim();
    if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
        return Some("Origin names another host");
    }
    None
}

/// The middleware: a POST from another site answers 403 unread; nothing else is touched.
pub async fn same_origin(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        if let Some(why) = foreign(request.headers()) {
            tracing::warn!(
                path = request.uri().path(),
                why,
                "console: a POST from another site was refused"
            );
            return plain(
                StatusCode::FORBIDDEN,
                "Refused",
                "This form did not come from this console's own pages: nothing was done. Open the console and retry.",
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn only_the_consoles_own_pages_may_post() {
        let host = ("host", "review.shop.example");
        // What a browser sends from the console's own form.
        assert_eq!(foreign(&headers(&[("sec-fetch-site", "same-origin"), host])), None);
        assert_eq!(
            foreign(&headers(&[("origin", "https://review.shop.example"), host])),
            None
        );
        assert_eq!(foreign(&headers(&[host])), None, "not a browser");
        // Another site's page.
        for site in ["cross-site", "same-site", "CROSS-SITE", ""] {
            let mut h = headers(&[("origin", "https://review.shop.example"), host]);
            h.insert("sec-fetch-site", site.parse().expect("value"));
            assert!(foreign(&h).is_some(), "{site}");
        }
        for origin in [
            "null",
            "https://evil.example",
            "https://review.shop.example.evil.example",
            "https://review.shop.example:8443",
        ] {
            let mut h = headers(&[host]);
            h.insert("origin", origin.parse().expect("value"));
            assert!(foreign(&h).is_some(), "{origin}");
        }
        assert!(
            foreign(&headers(&[("origin", "https://a.example")])).is_some(),
            "no Host"
        );
    }
}
