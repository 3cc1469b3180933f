//! Performs the core's requests with reqwest (rustls, pooled connections, connect and request timeouts).

use std::time::Duration;

use std::sync::Arc;

use cxone_agent_state_core::{
    HttpRequest, HttpResponse, Method, RequestId, Target, TransportErrorKind,
};

use crate::manager::IoObserver;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A finished request: its id and what came back.
pub(crate) type Answer = (RequestId, Result<HttpResponse, Failure>);

/// A request that got no HTTP answer: the kind the core decides on, and the cause in words for log lines
/// ("connection refused", "DNS lookup failed", "TLS handshake failed: …"). The cause never holds the URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// What the core is told.
    pub(crate) kind: TransportErrorKind,
    /// Why, for a log line.
    pub(crate) cause: String,
}

/// How long a TCP + TLS connect may take before the request counts as a connect failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Performs `request` on its own task in `in_flight` and sends the answer back by id: the drive loop keeps
/// running while requests are in flight, and the tasks end with the driver (none outlives a shutdown).
pub(crate) fn spawn_perform(
    in_flight: &mut JoinSet<()>,
    client: &reqwest::Client,
    (id, target): (RequestId, Target),
    request: HttpRequest,
    answers: &mpsc::UnboundedSender<Answer>,
    observer: Option<Arc<dyn IoObserver>>,
) {
    let client = client.clone();
    let answers = answers.clone();
    in_flight.spawn(async move {
        let started = std::time::Instant::now();
        let host = observer.as_ref().map(|_| host_of(&request.url));
        let result = perform(&client, request).await;
        if let (Some(o), Some(host)) = (observer, host) {
            let status = result.as_ref().ok().map(|r| r.status);
            o.request_finished(target, &host, status, started.elapsed());
        }
        let _ = answers.send((id, result));
    });
}

/// `host[:port]` of a URL: what a metric may name (never its path, query or user info).
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A pooled HTTPS client.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        // Room for every connection a busy moment opened: at a few thousand changes a second there are
        // hundreds of requests in flight, and a smaller pool closes connections after each burst only to
        // open them again (a handshake each).
        .pool_max_idle_per_host(1024)
        .user_agent(concat!("cxone-agent-state/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a rustls client always builds")
}

/// Performs one request. A dropped connection, a refused connect or a timeout comes back as a transport
/// error, never as a panic or a made-up status.
pub(crate) async fn perform(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, Failure> {
    let timeout_ms = request.timeout_ms;
    send(client, request)
        .await
        .map_err(|e| failure(e, timeout_ms))
}

async fn send(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, reqwest::Error> {
    let method = match request.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
    };
    let mut builder = client.request(method, &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    if request.timeout_ms > 0 {
        builder = builder.timeout(Duration::from_millis(request.timeout_ms));
    }
    let response = builder.send().await?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.text().await?;
    Ok(HttpResponse::new(status, headers, body))
}

/// The failure a reqwest error stands for. The URL is dropped first: its query may carry a token.
fn failure(e: reqwest::Error, timeout_ms: u64) -> Failure {
    let e = e.without_url();
    Failure {
        kind: kind(&e),
        cause: cause(&e, timeout_ms),
    }
}

/// Why a request got no answer, in words: the first error in the chain that names a cause we know, else
/// the chain's messages (which, the URL dropped, hold none).
fn cause(e: &reqwest::Error, timeout_ms: u64) -> String {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return format!("TLS handshake failed: {tls}");
        }
        // hyper-util's connector names a failed lookup only in its message.
        if err.to_string().starts_with("dns error") {
            return "DNS lookup failed".to_owned();
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => {
                if let Some(cause) = io_cause(io.kind()) {
                    return cause.to_owned();
                }
                // An `io::Error` that wraps another error (rustls reports through two of them) gives the
                // wrapped error's source as its own, skipping the wrapped error itself: step into it.
                io.get_ref()
                    .map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => err.source(),
        };
    }
    if e.is_timeout() {
        return if e.is_connect() {
            "timed out connecting".to_owned()
        } else {
            format!("no answer within {timeout_ms} ms")
        };
    }
    let mut chain = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(err) = next {
        chain.push_str(": ");
        chain.push_str(&err.to_string());
        next = err.source();
    }
    chain
}

fn io_cause(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind;
    Some(match kind {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset by the receiver",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        ErrorKind::AddrNotAvailable => "address not available",
        _ => return None,
    })
}

fn kind(e: &reqwest::Error) -> TransportErrorKind {
    if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_request() || e.is_body() || e.is_decode() {
        TransportErrorKind::Reset
    } else {
        TransportErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn post(url: &str) -> HttpRequest {
        HttpRequest {
            method: Method::Post,
            url: url.to_owned(),
            headers: vec![],
            body: Some("{}".to_owned()),
            timeout_ms: 2_000,
        }
    }

    /// A loopback port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_refused_connection_is_named_without_the_url() {
        let port = closed_port().await;
        let url = format!("http://127.0.0.1:{port}/hook?token=sekrit");
        let f = perform(&client(), post(&url)).await.unwrap_err();
        assert_eq!(f.kind, TransportErrorKind::Connect);
        assert_eq!(f.cause, "connection refused");
    }

    #[tokio::test]
    async fn a_server_that_does_not_speak_tls_fails_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let url = format!("https://127.0.0.1:{port}/hook?token=sekrit");
        let f = perform(&client(), post(&url)).await.unwrap_err();
        assert!(f.cause.starts_with("TLS handshake failed: "), "{f:?}");
        assert!(!f.cause.contains("sekrit"), "{f:?}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_dns_failure() {
        let f = perform(
            &client(),
            post("https://receiver.invalid/hook?token=sekrit"),
        )
        .await
        .unwrap_err();
        assert_eq!(f.kind, TransportErrorKind::Connect);
        assert_eq!(f.cause, "DNS lookup failed", "{f:?}");
    }
}
