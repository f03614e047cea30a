//! The UI's static files, embedded in the binary and served under a URL
//! that carries a hash of their content, so browsers may cache them for a
//! year: a new build has new URLs.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL it is served at: `/assets/<stem>.<hash>.<ext>`.
    pub url: String,
    pub etag: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

fn asset(name: &str, content_type: &'static str, body: &'static [u8]) -> Asset {
    let hash = hex::encode(&Sha256::digest(body)[..6]);
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    Asset {
        url: format!("/assets/{stem}.{hash}.{ext}"),
        etag: format!("\"{hash}\""),
        content_type,
        body,
    }
}

pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    )
});

pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    )
});

pub static ICON: LazyLock<Asset> = LazyLock::new(|| {
    asset(
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/icon.svg"),
    )
});

fn all() -> [&'static Asset; 3] {
    [&CSS, &JS, &ICON]
}

/// `GET /assets/{file}`: an embedded file by its hashed name. A stale hash
/// (a page from an older build) still gets the current file, but without
/// the long cache lifetime.
pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let wanted = format!("/assets/{file}");
    let stem = |url: &str| url.split('.').next().map(str::to_string);
    let found = all()
        .into_iter()
        .find(|a| a.url == wanted)
        .map(|a| (a, true))
        .or_else(|| {
            all()
                .into_iter()
                .find(|a| stem(&a.url) == stem(&wanted) && a.url.ends_with(ext(&wanted)))
                .map(|a| (a, false))
        });
    let Some((a, exact)) = found else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let cache = if exact {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    let etag = HeaderValue::from_str(&a.etag).expect("hex etag");
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == a.etag.as_bytes());
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        a.body.into_response()
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ETAG, etag);
    res
}

fn ext(url: &str) -> &str {
    url.rsplit_once('.').map(|(_, e)| e).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_a_content_hash() {
        assert!(CSS.url.starts_with("/assets/app.") && CSS.url.ends_with(".css"));
        assert!(JS.url.starts_with("/assets/app.") && JS.url.ends_with(".js"));
        assert_eq!(CSS.url.len(), "/assets/app..css".len() + 12);
    }
}
