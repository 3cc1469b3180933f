//! Performs the core's requests with reqwest (rustls, pooled connections, connect and request timeouts).

use std::time::Duration;

use cxone_agent_state_core::{HttpRequest, HttpResponse, Method, RequestId, TransportErrorKind};
use tokio::sync::mpsc;

/// A finished request: its id and what came back.
pub(crate) type Answer = (RequestId, Result<HttpResponse, TransportErrorKind>);

/// How long a TCP + TLS connect may take before the request counts as a connect failure.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Performs `request` on its own task and sends the answer back by id: the drive loop keeps running while
/// requests are in flight.
pub(crate) fn spawn_perform(
    client: &reqwest::Client,
    id: RequestId,
    request: HttpRequest,
    answers: &mpsc::UnboundedSender<Answer>,
) {
    let client = client.clone();
    let answers = answers.clone();
    tokio::spawn(async move {
        let _ = answers.send((id, perform(&client, request).await));
    });
}

/// A pooled HTTPS client.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("cxone-agent-state/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a rustls client always builds")
}

/// Performs one request. A dropped connection, a refused connect or a timeout comes back as a transport
/// error, never as a panic or a made-up status.
pub(crate) async fn perform(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, TransportErrorKind> {
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
    let response = builder.send().await.map_err(kind)?;
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
    let body = response.text().await.map_err(kind)?;
    Ok(HttpResponse::new(status, headers, body))
}

fn kind(e: reqwest::Error) -> TransportErrorKind {
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
