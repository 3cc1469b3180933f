//! `cxone-agent-state serve` as a test drives it: a key file, the service as a child process (its address
//! read from the `listening on` line on stderr), an HTTP client with or without a key, a reader of its
//! server-sent events, and a parser of its OpenMetrics text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use super::cli::{cli, keep_lines, path_str, run};

/// A key file holding one read-write and one read-only key, and the keys themselves.
pub struct KeyFile {
    pub path: PathBuf,
    /// Reaches every endpoint.
    pub rw: String,
    /// Reaches only the GET endpoints.
    pub ro: String,
}

/// `serve new-key NAME [--read-only] --json`: the key and its line.
pub async fn new_key(name: &str, read_only: bool) -> (String, String) {
    let mut a = vec!["serve", "new-key", name, "--json"];
    if read_only {
        a.push("--read-only");
    }
    let out = run(cli(a)).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let v = out.json();
    assert_eq!(v["name"], name, "{v}");
    let key = v["key"].as_str().expect("key").to_owned();
    let line = v["line"].as_str().expect("line").to_owned();
    assert!(!line.contains(&key), "the key file never holds a key");
    (key, line)
}

/// Writes `dir/api-keys` with a read-write key `writer` and a read-only key `viewer`.
pub async fn key_file(dir: &Path) -> KeyFile {
    let (rw, rw_line) = new_key("writer", false).await;
    let (ro, ro_line) = new_key("viewer", true).await;
    let path = dir.join("api-keys");
    std::fs::write(&path, format!("# test keys\n{rw_line}\n{ro_line}\n")).unwrap();
    KeyFile { path, rw, ro }
}

/// A running `serve`: its base URL once it said `listening on`, and its stderr lines as they come.
pub struct Service {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

/// The arguments of `serve` on loopback with `keys`, the connection flags `conn` and `extra` flags.
pub fn serve_args(keys: &Path, conn: &[String], extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--api-keys"]
        .map(str::to_owned)
        .to_vec();
    a.push(path_str(keys).to_owned());
    a.extend(conn.iter().cloned());
    a.extend(extra.iter().map(|s| (*s).to_owned()));
    a
}

impl Service {
    /// Starts `serve` on a free loopback port and waits (20 s at most) for its `listening on` line.
    pub async fn start(keys: &Path, conn: &[String], extra: &[&str]) -> Self {
        Self::from_command(cli(serve_args(keys, conn, extra))).await
    }

    /// Starts `cmd` (a `serve` command line, e.g. with its own environment) and waits (20 s at most) for
    /// its `listening on` line.
    pub async fn from_command(cmd: std::process::Command) -> Self {
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("serve starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let base = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                stderr.lock().unwrap().push(line.clone());
                if let Some(rest) = line.strip_prefix("listening on ") {
                    return rest.split_whitespace().next().expect("a URL").to_owned();
                }
            }
            panic!(
                "serve ended before it listened:\n{}",
                stderr.lock().unwrap().join("\n")
            )
        })
        .await
        .expect("serve listens within 20 s");
        let reader = keep_lines(lines, stderr.clone());
        Self {
            child,
            base,
            stderr,
            reader,
        }
    }

    /// A client of this service presenting `key` (none: no `Authorization` header).
    pub fn api(&self, key: Option<&str>) -> Api {
        Api::new(&self.base, key)
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Sends a signal (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits (`within` at most) for the service to end: its exit status and all of its stderr.
    pub async fn wait(mut self, within: Duration) -> (ExitStatus, String) {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not end within {within:?}:\n{}", self.stderr()))
            .expect("serve can be waited for");
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        let stderr = self.stderr();
        assert!(!stderr.contains("panicked"), "serve panicked:\n{stderr}");
        (status, stderr)
    }

    /// SIGTERM, then [`wait`](Self::wait) (20 s at most).
    pub async fn stop(self) -> (ExitStatus, String) {
        self.signal("TERM");
        self.wait(Duration::from_secs(20)).await
    }

    /// Waits (10 s at most) until `/readyz` answers 200: the service holds a token.
    pub async fn ready(&self) {
        let api = self.api(None);
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let r = api.get("/readyz").await;
            if r.status == 200 {
                assert_eq!(r.json()["ready"], true, "{r}");
                return;
            }
            assert!(Instant::now() < end, "never ready: {r}\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One answer of the service.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl Answer {
    /// The body as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {self}"))
    }

    /// The body as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        super::cli::json_lines(&self.text)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The stable `code` of the body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// An HTTP client of the service, with or without an API key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    key: Option<String>,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, key: Option<&str>) -> Self {
        Self {
            base: base.to_owned(),
            key: key.map(str::to_owned),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client"),
        }
    }

    /// A request, with `Authorization: Bearer KEY` when this client has a key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a whole body");
        Answer {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// POST `body` as `application/json`.
    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, "application/json", body.to_string().into_bytes())
            .await
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// `POST /v1/agents/{id}/state` with `body`.
    pub async fn set_state(&self, id: &str, body: &Value) -> Answer {
        self.post_json(&format!("/v1/agents/{id}/state"), body)
            .await
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Exposition {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{r}");
        parse_metrics(&r.text)
            .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", r.text))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------------------------------------

/// One server-sent event.
#[derive(Clone, Debug, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// A stream of server-sent events being read.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// `GET path` with `Accept: text/event-stream` (and `Last-Event-ID` when given): the stream, once its
    /// head says 200 and `text/event-stream`.
    pub async fn open(api: &Api, path: &str, last_event_id: Option<&str>) -> Self {
        let mut request = api
            .request(reqwest::Method::GET, path)
            .header("accept", "text/event-stream")
            // The stream outlives the client's default timeout only when it is read in time.
            .timeout(Duration::from_secs(120));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.expect("the service answers");
        assert_eq!(response.status().as_u16(), 200, "{response:?}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` when none comes within `within` or the stream ends.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let end = tokio::time::Instant::now() + within;
        loop {
            while let Some(i) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..i + 2).collect();
                if let Some(e) = parse_sse_block(&block) {
                    return Some(e);
                }
            }
            let chunk = tokio::time::timeout_at(end, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                _ => return None,
            }
        }
    }
}

fn parse_sse_block(block: &str) -> Option<SseEvent> {
    let mut e = SseEvent::default();
    let mut data = Vec::new();
    let mut any = false;
    for line in block.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "event" => e.event = Some(value.to_owned()),
            "id" => e.id = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    e.data = data.join("\n");
    any.then_some(e)
}

// ---------------------------------------------------------------------------------------------------------
// OpenMetrics text
// ---------------------------------------------------------------------------------------------------------

/// One sample: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// The family (the `# TYPE` line's name) it belongs to.
    pub family: String,
}

/// A parsed exposition: the families' types and every sample.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// Family name to type (`counter`, `gauge`, `histogram`, …).
    pub types: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` whose labels include every one of `labels`, summed over the samples
    /// that match (0 when none does).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include every one of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The one sample named `name` with exactly `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// The sample-name suffixes a family of type `kind` may use (OpenMetrics 1.0).
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" | "gaugehistogram" => {
            &["_bucket", "_sum", "_count", "_created", "_gsum", "_gcount"]
        }
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Parses `{a="x",b="y"}` (without the braces): label names and unescaped values.
fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\": {rest:?}"))?;
        if !is_metric_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated label value in {s:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?} in {s:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} twice in {s:?}"));
        }
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(r) => r,
            None if rest.is_empty() => rest,
            None => return Err(format!("expected , between labels in {s:?}")),
        };
    }
    Ok(labels)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// Parses OpenMetrics text: `# TYPE`/`# HELP`/`# UNIT` lines, samples `name{labels} value [timestamp]`, each
/// sample's family declared by a `# TYPE` line before it (its name the family's or the family's plus a
/// suffix its type allows), and a last line `# EOF`.
pub fn parse_metrics(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition does not end with # EOF")?;
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            return Err(at("empty line".into()));
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name, rest) = (words.next(), words.next(), words.next());
            let name = name.ok_or_else(|| at("a comment without a name".into()))?;
            if !is_metric_name(name) {
                return Err(at(format!("bad family name {name:?}")));
            }
            match kind {
                Some("TYPE") => {
                    let t = rest.ok_or_else(|| at("TYPE without a type".into()))?;
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ];
                    if !known.contains(&t) {
                        return Err(at(format!("unknown type {t:?}")));
                    }
                    if out.types.insert(name.to_owned(), t.to_owned()).is_some() {
                        return Err(at(format!("{name} typed twice")));
                    }
                }
                Some("HELP" | "UNIT") => {}
                _ => return Err(at("an unknown comment".into())),
            }
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line
                    .rfind('}')
                    .ok_or_else(|| at("labels without }".into()))?;
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]).map_err(at)?,
                    &line[close + 1..],
                )
            }
            None => {
                let name = line.split(' ').next().unwrap_or_default();
                (name, BTreeMap::new(), &line[name.len()..])
            }
        };
        if !is_metric_name(name) {
            return Err(at(format!("bad metric name {name:?}")));
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<f64>()
                .map_err(|e| at(format!("bad timestamp {ts:?}: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = out
            .types
            .iter()
            .find(|(f, t)| {
                suffixes(t)
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(f.as_str()))
            })
            .map(|(f, _)| f.clone())
            .ok_or_else(|| at(format!("{name} belongs to no family with a # TYPE line")))?;
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
            family,
        });
    }
    check_histograms(&out)?;
    Ok(out)
}

/// Every histogram's buckets are cumulative (non-decreasing in `le`), end with `+Inf`, which equals `_count`.
fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, t) in &e.types {
        if t != "histogram" {
            continue;
        }
        // Grouped by the labels other than `le`.
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for s in e
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut labels = s.labels.clone();
            let le = labels
                .remove("le")
                .ok_or_else(|| format!("{family}: a bucket without le"))?;
            series
                .entry(labels)
                .or_default()
                .push((parse_value(&le)?, s.value));
        }
        for (labels, buckets) in series {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, n) in &buckets {
                if le <= last.0 || n < last.1 {
                    return Err(format!("{family}{labels:?}: buckets not cumulative"));
                }
                last = (le, n);
            }
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let count = e
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && s.labels == labels)
                .ok_or_else(|| format!("{family}{labels:?}: no _count"))?;
            if count.value != last.1 {
                return Err(format!(
                    "{family}{labels:?}: +Inf {} != _count {}",
                    last.1, count.value
                ));
            }
        }
    }
    Ok(())
}
