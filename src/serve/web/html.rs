//! HTML pieces: escaping (after redaction) for everything that came from a step, a model or a webhook, and the page frame.

use std::fmt::Write;

/// `text` redacted, then escaped for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let text = crate::secrets::redact(text.to_string());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A percent-encoded path segment (run ids and node keys hold `#`, `/`, `[`).
pub fn seg(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time as `2026-12-02 10:00:00` (UTC).
pub fn when(ms: i64) -> String {
    crate::journal::timestamp(ms)
}

/// A duration in ms, short.
pub fn took(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
        ms => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A status as a coloured word.
pub fn badge(status: &str) -> String {
    format!("<span class=\"st st-{0}\">{0}</span>", esc(status))
}

/// Who is signed in, for the frame.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Their name.
    pub name: String,
    /// Their session's CSRF token ("" for bearer-token requests).
    pub csrf: String,
}

/// A whole page: the frame, the navigation and `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: &str) -> String {
    let nav = match viewer {
        Some(v) => format!(
            "<nav><a href=\"/\">Runs</a> <a href=\"/approvals\">Approvals</a> <a href=\"/stats\">Stats</a>\
             <span class=\"who\">{} <form method=\"post\" action=\"/logout\" class=\"inline\">{}<button>Sign out</button></form></span></nav>",
            esc(&v.name),
            csrf_field(v)
        ),
        None => "<nav><a href=\"/\">flowc</a></nav>".to_string(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · flowc</title><link rel=\"stylesheet\" href=\"/assets/page.css\">\
         <script src=\"/assets/page.js\" defer></script></head>\
         <body>{nav}<main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// The hidden field every form POST carries.
pub fn csrf_field(v: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&v.csrf)
    )
}

/// A page or a piece of one (the live refresh), 200.
pub fn ok(body: String) -> axum::response::Response {
    super::html(axum::http::StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_from_a_step_is_text() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(seg("r1/for[2]#3"), "r1%2Ffor%5B2%5D%233");
    }
}
