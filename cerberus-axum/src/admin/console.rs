//! The admin console at `/console`: a page and a few ES modules (`assets/console/`, built into the
//! binary, no build step) that drive the admin API in the browser with the same bearer tokens as any
//! other client. Nothing is loaded from elsewhere, so the console works on an air-gapped network, and
//! the page's Content-Security-Policy allows only this origin's scripts and styles: no inline script
//! or style, no frames, no forms posted anywhere. `docs/console.md` shows each page.

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// What the console's pages may load: this origin's scripts, styles and API, and data: images.
pub const CONSOLE_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Declares the console's assets, each read from `assets/console/` at build time.
macro_rules! assets {
    ($($name:literal => $content_type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $content_type,
            body: include_str!(concat!("../../assets/console/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the page loads.
const ASSETS: &[Asset] = assets![
    "console.css" => "text/css; charset=utf-8",
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "chart.js" => JS,
    "pages/sign-in.js" => JS,
    "pages/upstream.js" => JS,
    "pages/organisation.js" => JS,
    "pages/workspaces.js" => JS,
    "pages/workspace.js" => JS,
    "pages/policies.js" => JS,
    "pages/audit.js" => JS,
    "pages/analytics.js" => JS,
    "pages/approvals.js" => JS,
    "pages/identity-providers.js" => JS,
];

/// The page itself.
const INDEX: &str = include_str!("../../assets/console/index.html");

/// The headers every console response carries.
fn secured(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONSOLE_CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            // No other window keeps a handle on the console, and no other site embeds its files.
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            // Assets change with the binary; revalidating a few kilobytes is cheap.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /console/`: the page (the console routes with the fragment: `#/audit`).
pub async fn page() -> Response {
    secured("text/html; charset=utf-8", INDEX)
}

/// `GET /console`: to `/console/`, so that the page's relative module paths resolve under it.
pub async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

/// `GET /console/{*name}`: one of the console's files, or 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => secured(asset.content_type, asset.body),
        None => (StatusCode::NOT_FOUND, "no such file in the console\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_nothing_inline() {
        assert!(!CONSOLE_CONTENT_SECURITY_POLICY.contains("http"));
        assert!(!CONSOLE_CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!INDEX.contains("http:") && !INDEX.contains("https:"));
        assert!(!INDEX.contains("<style") && !INDEX.contains(" style="));
        for script in INDEX.split("<script").skip(1) {
            assert!(script.contains("src="), "no inline script: {script}");
        }
    }

    #[test]
    fn every_module_the_console_imports_is_served() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            for line in asset.body.lines() {
                let Some(from) = line.split(" from '").nth(1) else {
                    continue;
                };
                let Some(target) = from.split('\'').next() else {
                    continue;
                };
                let base = asset.name.rsplit_once('/').map_or("", |(dir, _)| dir);
                let resolved = resolve(base, target);
                assert!(
                    ASSETS.iter().any(|a| a.name == resolved),
                    "{} imports {target}, which is not served",
                    asset.name
                );
            }
            assert!(
                !asset.body.contains("innerHTML") && !asset.body.contains("eval("),
                "{} builds the page from nodes, never from markup",
                asset.name
            );
        }
    }

    /// `target` relative to the directory `base`.
    fn resolve(base: &str, target: &str) -> String {
        let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
        for part in target.split('/') {
            match part {
                "." => {}
                ".." => {
                    parts.pop();
                }
                part => parts.push(part),
            }
        }
        parts.join("/")
    }
}
