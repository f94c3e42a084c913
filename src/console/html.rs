//! The pages' frame, stylesheet and formatting. Every value is interpolated by maud, which
//! escapes `&`, `<`, `>` and `"` in element text and attribute values alike (it always quotes
//! attributes with `"`, so a `'` cannot end one); nothing here
//! uses `PreEscaped`, no page has a script, and links to an order percent-encode its id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use mongodb::bson::{Bson, DateTime, Document};

use super::session::Session;

/// A rendered page and its status.
pub struct Page {
    pub status: StatusCode,
    pub body: String,
}

/// A whole page: the frame (navigation and logout when `session` is given) around `main`.
pub fn frame(status: StatusCode, title: &str, session: Option<&Session>, main: Markup) -> Page {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · draft-reconciler" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    nav {
                        a href="/" { "Review queue" }
                        a href="/status" { "Status" }
                        @if let Some(s) = session {
                            span.who { "Signed in as " strong { (s.user) } }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf());
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (main) }
            }
        }
    };
    Page {
        status,
        body: body.into_string(),
    }
}

/// A page with a heading and one sentence, for errors and 404s (no session, no data).
pub fn plain(status: StatusCode, title: &str, text: &str) -> Response {
    let main = html! { h1 { (title) } p { (text) } p { a href="/" { "Back to the review queue" } } };
    frame(status, title, None, main).into_response()
}

/// `GET /console.css`: the only resource a page loads (`style-src 'self'`).
pub async fn stylesheet() -> Response {
    let mut r = (StatusCode::OK, CSS).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    r
}

/// Phone-first: one column, tables scroll sideways inside their box.
const CSS: &str = "\
*{box-sizing:border-box}
body{margin:0;font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1c2430;background:#f5f6f8}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem}
nav{display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}
nav a{color:#fff;font-weight:600;text-decoration:none}
nav .who{margin-left:auto;font-size:.9rem}
main{max-width:72rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.4rem 0 1rem}
h2{font-size:1.1rem;margin:1.6rem 0 .6rem}
a{color:#1f4f8f}
.box{overflow-x:auto;background:#fff;border:1px solid #d8dde5;border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #e6e9ee;vertical-align:top}
th{background:#eef1f5;font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap}
.tags{display:flex;flex-wrap:wrap;gap:.4rem;margin:0 0 1rem;padding:0;list-style:none}
.tags a{display:inline-block;padding:.25rem .6rem;border-radius:1rem;background:#fff;border:1px solid #c9d1dc;text-decoration:none}
.tags a.on{background:#1f3a5f;color:#fff;border-color:#1f3a5f}
.note{background:#fff8e1;border:1px solid #f0d98c;border-radius:6px;padding:.6rem .8rem}
.done{background:#e7f6ec;border:1px solid #9fd3ae;border-radius:6px;padding:.6rem .8rem}
.refused{background:#fdecea;border:1px solid #f1aca4;border-radius:6px;padding:.6rem .8rem}
.actions{display:flex;flex-wrap:wrap;gap:.6rem;margin:1rem 0}
.button,button{display:inline-block;font:inherit;padding:.5rem 1rem;border-radius:6px;border:1px solid #1f3a5f;background:#1f3a5f;color:#fff;text-decoration:none;cursor:pointer}
.button.light{background:#fff;color:#1f3a5f}
form.inline{display:inline;margin:0}
nav form button{padding:.2rem .6rem;font-size:.9rem;background:transparent;border-color:#fff}
label{display:block;font-weight:600;margin:.8rem 0 .3rem}
input[type=text],input[type=password],textarea{width:100%;max-width:28rem;font:inherit;padding:.5rem;border:1px solid #c9d1dc;border-radius:6px}
textarea{min-height:5rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem;background:#fff;border:1px solid #d8dde5;border-radius:6px;padding:.8rem;margin:0}
dt{font-weight:600}
dd{margin:0;overflow-wrap:anywhere}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem;white-space:pre-wrap;overflow-wrap:anywhere}
@media (max-width:40rem){dl{grid-template-columns:1fr}dt{margin-top:.4rem}}
";

/// An order's page, its id percent-encoded as one path segment.
pub fn order_href(id: &str) -> String {
    format!("/orders/{}", segment(id))
}

/// `text` as one URL path segment: unreserved characters kept, every other byte `%XX`.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Paise as rupees: `₹499.00`.
pub fn rupees(paise: i64) -> String {
    let sign = if paise < 0 { "-" } else { "" };
    let p = paise.unsigned_abs();
    format!("{sign}₹{}.{:02}", p / 100, p % 100)
}

/// An optional amount in paise, or a dash.
pub fn amount(paise: Option<i64>) -> String {
    paise.map_or_else(|| "—".into(), rupees)
}

/// A BSON date as `2026-12-04 17:57:03 UTC`.
pub fn when(t: DateTime) -> String {
    t.try_to_rfc3339_string()
        .map(|s| format!("{} UTC", s.trim_end_matches('Z').replacen('T', " ", 1)))
        .map(|s| match s.split_once('.') {
            Some((whole, _)) => format!("{whole} UTC"),
            None => s,
        })
        .unwrap_or_else(|_| "—".into())
}

/// Any stored value as text: strings as they are, dates formatted, documents and arrays as
/// relaxed extended JSON (escaped on the page like everything else).
pub fn value(b: &Bson) -> String {
    match b {
        Bson::String(s) => s.clone(),
        Bson::DateTime(t) => when(*t),
        Bson::Null => "null".into(),
        other => other.clone().into_relaxed_extjson().to_string(),
    }
}

/// A document's field as text, or a dash.
pub fn field(d: &Document, key: &str) -> String {
    d.get(key).map_or_else(|| "—".into(), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_the_database_are_escaped_in_text_and_attributes() {
        let evil = "\"><script>alert(1)</script><img src=x onerror='alert(2)'>&";
        let m = html! { p title=(evil) { (evil) } a href=(order_href(evil)) { "x" } };
        let out = m.into_string();
        assert!(!out.contains("<script>") && !out.contains("<img"), "{out}");
        assert!(out.contains("&lt;script&gt;") && out.contains("&quot;&gt;"), "{out}");
        assert!(
            out.contains("title=\"&quot;&gt;"),
            "the attribute stays one attribute: {out}"
        );
        assert!(out.contains("href=\"/orders/%22%3E%3Cscript%3E"), "{out}");
    }

    #[test]
    fn amounts_and_times_read_as_people_write_them() {
        assert_eq!(rupees(49_900), "₹499.00");
        assert_eq!(rupees(5), "₹0.05");
        assert_eq!(rupees(-150), "-₹1.50");
        assert_eq!(amount(None), "—");
        assert_eq!(
            when(DateTime::from_millis(1_764_870_000_123)),
            "2025-12-04 17:40:00 UTC"
        );
        assert_eq!(segment("MT-1_a.b~c d/é"), "MT-1_a.b~c%20d%2F%C3%A9");
    }
}
