//! The HTTP vocabulary shared by the engine, the simulated tenant and every host.
//!
//! The engine hands out [`Transmit`]s: an [`HttpRequest`] with a [`RequestId`] and its [`Target`]. The host
//! performs them however it likes (reqwest, `fetch`, an in-process simulator) and hands back an
//! [`HttpResponse`] or a transport error with the same id.

use serde::{Deserialize, Serialize};

/// Identifies one HTTP request handed out by the engine. Unique for the engine's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// The HTTP methods the API profiles use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
}

impl Method {
    /// `"GET"` or `"POST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// Who a request goes to. Hosts may treat them alike (one HTTP client); the target is there for logs,
/// metrics and hosts that route differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum Target {
    /// The tenant's API (schedules, breaks, state changes; on `cxone`, the ACD/Admin API: the directory,
    /// unavailable codes and state changes).
    Api,
    /// `cxone`: the WFM host (schedule exports).
    Wfm,
    /// The OAuth token endpoint.
    Token,
    /// The webhook receiver.
    Webhook,
}

/// A request for the host to perform; hand the answer back with the same `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transmit {
    /// Echo this id back with the answer ([`Input::Response`](crate::Input::Response) or
    /// [`Input::TransportError`](crate::Input::TransportError)).
    pub id: RequestId,
    /// Who it goes to.
    pub target: Target,
    /// The request.
    pub request: HttpRequest,
}

/// An HTTP request.
///
/// `Debug` redacts the `Authorization` header and form bodies (which carry the client secret).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, if any (JSON or form-encoded text).
    pub body: Option<String>,
    /// The engine treats the request as timed out after this many milliseconds; hosts may enforce it too.
    pub timeout_ms: u64,
}

impl HttpRequest {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The URL's path (without scheme, host and query).
    pub fn path(&self) -> &str {
        let rest = match self.url.find("://") {
            Some(i) => &self.url[i + 3..],
            None => &self.url,
        };
        let path = match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        };
        match path.find('?') {
            Some(i) => &path[..i],
            None => path,
        }
    }
}

impl std::fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("authorization") {
                    (k.as_str(), "[redacted]")
                } else {
                    (k.as_str(), v.as_str())
                }
            })
            .collect();
        let form = self
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let body = match &self.body {
            None => None,
            Some(_) if form => Some("[redacted form]"),
            Some(b) => Some(b.as_str()),
        };
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &body)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// An HTTP response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl HttpResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The wait a `Retry-After` header asks for (seconds or an HTTP date), in ms from `now_unix_ms`.
    pub fn retry_after_ms(&self, now_unix_ms: u64) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| crate::time::parse_retry_after(v, now_unix_ms))
    }

    /// An answer with this status, headers and body.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: impl Into<String>) -> Self {
        Self {
            status,
            headers,
            body: body.into(),
        }
    }
}

/// Why a request produced no HTTP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TransportErrorKind {
    /// The connection could not be made: the request never left, so it cannot have been applied.
    Connect,
    /// The connection dropped before a full response arrived.
    Reset,
    /// No response within the timeout.
    Timeout,
    /// Anything else.
    Other,
}

impl TransportErrorKind {
    /// Whether the request may have reached the server before the failure. Only a failed connect proves
    /// it did not.
    pub fn may_have_arrived(self) -> bool {
        self != Self::Connect
    }

    /// What happened, in a few words for logs and dead-letter reasons.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Connect => "no connection could be made",
            Self::Reset => "the connection dropped before an answer",
            Self::Timeout => "no answer in time",
            Self::Other => "the request failed",
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_strips_host_and_query() {
        let r = HttpRequest {
            method: Method::Get,
            url: "https://t.example/api/v2/x%2Fy?a=1".into(),
            headers: vec![],
            body: None,
            timeout_ms: 1,
        };
        assert_eq!(r.path(), "/api/v2/x%2Fy");
    }

    #[test]
    fn debug_redacts_authorization_and_forms() {
        let r = HttpRequest {
            method: Method::Post,
            url: "https://t.example/oauth2/token".into(),
            headers: vec![
                ("Authorization".into(), "Bearer tok-123".into()),
                (
                    "Content-Type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: Some("client_secret=hunter2".into()),
            timeout_ms: 1,
        };
        let s = format!("{r:?}");
        assert!(!s.contains("tok-123"), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("[redacted]"));
    }
}
