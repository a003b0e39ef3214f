//! A small blocking HTTP client over `wasi:http/outgoing-handler` (needs the `http` grant, and
//! the server's `http.allow` must list the destination).
//!
//! ```ignore
//! let response = mailwit_plugin::http::post(
//!     "http://127.0.0.1:11333/checkv2",
//!     &[("Content-Type", "message/rfc822")],
//!     &message_bytes,
//! )?;
//! if response.status == 200 { /* response.body */ }
//! ```
//!
//! A destination the operator did not allow fails with [`Error`] `"HttpRequestDenied"` and is
//! never contacted. Timeouts and the response size cap are the host's (`http.timeout_ms`,
//! `http.max_response_bytes`). A plugin that never calls this module does not import wasi:http.

mod wasi {
    wit_bindgen::generate!({
        path: "wasi-http",
        world: "mailwit-sdk:http/http-client",
        generate_all,
    });
}

use wasi::wasi::http::outgoing_handler;
use wasi::wasi::http::types::{
    Fields, IncomingBody, Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme,
};
use wasi::wasi::io::streams::StreamError;

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Head,
}

/// A whole response: status, headers (as received, names lower-cased by the host) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request failed: the wasi:http error code in words (e.g. "HttpRequestDenied",
/// "ConnectionRefused", "ConnectionTimeout", "HttpResponseBodySize(Some(1048576))").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(what: impl std::fmt::Debug) -> Error {
    let text = format!("{what:?}");
    Error(
        text.strip_prefix("ErrorCode::")
            .unwrap_or(&text)
            .to_string(),
    )
}

/// `GET url`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, Error> {
    send(Method::Get, url, headers, &[])
}

/// `POST url` with `body`.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, Error> {
    send(Method::Post, url, headers, body)
}

/// ("https", "host:port", "/path?query") out of "https://host:port/path?query".
pub fn split_url(url: &str) -> Result<(&str, &str, String), Error> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error(format!("{url:?} is not an absolute http(s) URL")))?;
    if scheme != "http" && scheme != "https" {
        return Err(Error(format!("{url:?}: scheme is not http or https")));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() {
        return Err(Error(format!("{url:?} has no host")));
    }
    Ok((scheme, authority, path))
}

/// Sends one request and reads the whole response.
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Error> {
    let (scheme, authority, path) = split_url(url)?;
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value.as_bytes())
            .map_err(|e| Error(format!("header {name}: {e:?}")))?;
    }
    if !body.is_empty() || method == Method::Post || method == Method::Put {
        fields
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(err)?;
    }
    let request = OutgoingRequest::new(fields);
    let set = |r: Result<(), ()>, what: &str| r.map_err(|_| Error(format!("invalid {what}")));
    set(
        request.set_method(&match method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Delete => WasiMethod::Delete,
            Method::Head => WasiMethod::Head,
        }),
        "method",
    )?;
    set(
        request.set_scheme(Some(&if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        })),
        "scheme",
    )?;
    set(request.set_authority(Some(authority)), "authority")?;
    set(request.set_path_with_query(Some(&path)), "path")?;
    let outgoing = request
        .body()
        .map_err(|_| Error("request body already taken".into()))?;
    // Sent first: the body below streams into the request in flight.
    let future = outgoing_handler::handle(request, None).map_err(err)?;
    {
        let stream = outgoing
            .write()
            .map_err(|_| Error("request body stream already taken".into()))?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(err)?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(err)?;

    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(err(code)),
        Some(Err(())) => return Err(Error("response already taken".into())),
        None => return Err(Error("no response".into())),
    };
    let status = response.status();
    let headers = response.headers().entries().into_iter().collect::<Vec<_>>();
    let incoming = response
        .consume()
        .map_err(|_| Error("response body already taken".into()))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|_| Error("response body stream already taken".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(Error(e.to_debug_string()));
                }
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:11333/checkv2").unwrap(),
            ("http", "127.0.0.1:11333", "/checkv2".to_string())
        );
        assert_eq!(
            split_url("https://a.test").unwrap(),
            ("https", "a.test", "/".to_string())
        );
        assert_eq!(
            split_url("https://a.test?x=1").unwrap(),
            ("https", "a.test", "/?x=1".to_string())
        );
        assert!(split_url("ftp://a.test/").is_err());
        assert!(split_url("a.test/x").is_err());
        assert!(split_url("http:///x").is_err());
    }
}
