//! `serve` as an operator deploys it: configuration (a TOML file, the environment and flags, in that order
//! of precedence; `--check-config` with secrets redacted), HTTPS, structured logs with request ids and no
//! secret, and readiness while the tenant is away. The real binary over loopback.
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::*;
use support::serve::{serve_args, Service};
use support::Profile;

/// A key file with one read-write key; returns the key.
async fn key_file(path: &Path) -> String {
    let out = run(cli(["serve", "new-key", "ops", "--json"])).await;
    assert_eq!(out.code(), Some(0), "{out}");
    let v = out.json();
    std::fs::write(path, format!("{}\n", v["line"].as_str().unwrap())).unwrap();
    v["key"].as_str().unwrap().to_owned()
}

fn serve_cmd(keys: &Path, conn: &[String], extra: &[&str]) -> std::process::Command {
    cli(serve_args(keys, conn, extra))
}

#[tokio::test]
async fn check_config_takes_flags_over_the_environment_over_the_file_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    key_file(&keys).await;
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "CXONE_API_KEYS_FILE = {:?}\n\
             cxone_base_url = \"http://127.0.0.1:9\"\n\
             CXONE_CLIENT_ID = \"from-file\"\n\
             CXONE_CLIENT_SECRET = \"file-secret-value\"\n\
             CXONE_RATE_LIMIT_PER_MIN = 100\n\
             CXONE_SERVE_MAX_BATCH = 5\n\
             CXONE_SERVE_READ_TIMEOUT_MS = 2500\n\
             CXONE_AUDIT_LOG = {:?}\n",
            path_str(&keys),
            path_str(&dir.path().join("audit.jsonl")),
        ),
    )
    .unwrap();
    let mut cmd = cli([
        "serve",
        "--config",
        path_str(&config),
        "--check-config",
        "--json",
        "--max-batch",
        "7",
    ]);
    cmd.env("CXONE_RATE_LIMIT_PER_MIN", "200")
        .env("CXONE_SERVE_READ_TIMEOUT_MS", "3000");
    let out = run(cmd).await;
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        !out.all_output().contains("file-secret-value"),
        "a secret is never printed:\n{out}"
    );
    let v = out.json();
    assert_eq!(v["valid"], true);
    assert_eq!(v["profile"], "seed");
    assert_eq!(v["apiKeys"], 1);
    let setting = |flag: &str| -> (Value, Value) {
        let s = v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["flag"] == flag)
            .unwrap_or_else(|| panic!("{flag} not listed: {v}"));
        (s["value"].clone(), s["source"].clone())
    };
    // A flag wins over the file.
    assert_eq!(setting("--max-batch"), ("7".into(), "flag".into()));
    // The environment wins over the file, whether clap or the settings read the variable.
    assert_eq!(
        setting("--read-timeout-ms"),
        ("3000".into(), "environment".into())
    );
    assert_eq!(
        setting("--rate-limit"),
        ("200".into(), "environment".into())
    );
    // The file fills in the rest.
    assert_eq!(setting("--client-id"), ("from-file".into(), "file".into()));
    assert_eq!(
        setting("--client-secret"),
        ("[redacted]".into(), "file".into())
    );
    assert_eq!(
        setting("--listen"),
        ("127.0.0.1:8080".into(), "default".into())
    );

    // A typo in the file is refused by name, as a usage error.
    std::fs::write(&config, "CXONE_RATE_LIMIT_PER_MINUTE = 5\n").unwrap();
    let out = run(cli([
        "serve",
        "--config",
        path_str(&config),
        "--check-config",
    ]))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert!(out.all_output().contains("INVALID_CONFIG"), "{out}");
    assert!(
        out.all_output().contains("CXONE_RATE_LIMIT_PER_MINUTE"),
        "{out}"
    );

    // No key file: the service does not start without keys.
    let out = run(cli([
        "serve",
        "--check-config",
        "--base-url",
        "http://127.0.0.1:9",
        "--client-id",
        "x",
        "--client-secret",
        "y",
    ]))
    .await;
    assert_eq!(out.code(), Some(64), "{out}");
    assert!(out.all_output().contains("CXONE_API_KEYS_FILE"), "{out}");
}

#[tokio::test]
async fn https_with_a_certificate_and_plain_http_refused_on_that_port() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    let key = key_file(&keys).await;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let (cert_file, key_pem_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_pem_file, &key_pem).unwrap();
    let (tenant, _d, _audit, conn) = scene_as(Profile::Seed, 3, &[]).await;
    let mut conn = conn;
    set_flag(
        &mut conn,
        "--audit-log",
        path_str(&dir.path().join("audit.jsonl")),
    );
    let service = Service::from_command(serve_cmd(
        &keys,
        &conn,
        &[
            "--tls-cert",
            path_str(&cert_file),
            "--tls-key",
            path_str(&key_pem_file),
        ],
    ))
    .await;
    assert!(service.base.starts_with("https://"), "{}", service.base);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let url = service.base.replace("127.0.0.1", "localhost");
    let health = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let changed = client
        .post(format!("{url}/v1/agents/{}/state", tenant.id("agent-0001")))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "state": "NOT_READY" }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    assert_eq!(
        tenant.state_of("agent-0001").await,
        tenant.set_as("NOT_READY")
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(service.base.replace("https://", "http://") + "/healthz")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| r.status() != 200).unwrap_or(true),
        "plain HTTP is not served on the HTTPS port"
    );
    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .send()
        .await;
    assert!(untrusting.is_err());
    let (status, stderr) = service.stop().await;
    let code = status.code();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains("BEGIN PRIVATE KEY") && !stderr.contains(&key),
        "{stderr}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_never_a_key_or_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    let key = key_file(&keys).await;
    let (tenant, _d, _audit, mut conn) = scene_as(Profile::Seed, 3, &[]).await;
    set_flag(
        &mut conn,
        "--audit-log",
        path_str(&dir.path().join("audit.jsonl")),
    );
    let mut cmd = serve_cmd(&keys, &conn, &["--log-json"]);
    cmd.env("CXONE_LOG", "info");
    let service = Service::from_command(cmd).await;
    let client = reqwest::Client::new();
    let answer = client
        .post(format!(
            "{}/v1/agents/{}/state",
            service.base,
            tenant.id("agent-0002")
        ))
        .bearer_auth(&key)
        .header("x-request-id", "ticket-4711-req")
        .json(&serde_json::json!({ "state": "READY" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-request-id"], "ticket-4711-req");
    // A wrong key, and no id given: one is made and returned.
    let wrong = client
        .get(format!("{}/v1/agents", service.base))
        .bearer_auth("cxas_not-a-key-of-ours-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let made = wrong.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let (status, stderr) = service.stop().await;
    let code = status.code();
    assert_eq!(code, Some(0), "{stderr}");
    let logs: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of = |id: &str| {
        logs.iter()
            .find(|l| l["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no log line of request {id}:\n{stderr}"))
            .clone()
    };
    let line = of("ticket-4711-req");
    assert_eq!(line["fields"]["status"], 200, "{line}");
    assert_eq!(line["span"]["caller"], "ops", "{line}");
    assert_eq!(line["span"]["route"], "/v1/agents/{id}/state", "{line}");
    assert_eq!(of(&made)["fields"]["status"], 401);
    for secret in [
        key.as_str(),
        "cxas_not-a-key-of-ours-0123456789",
        support::CLIENT_SECRET,
    ] {
        assert!(!stderr.contains(secret), "a secret in the logs:\n{stderr}");
    }
}

#[tokio::test]
async fn the_service_is_alive_but_not_ready_while_the_tenant_is_away_and_ready_once_it_has_a_token()
{
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    key_file(&keys).await;
    // A port nothing listens on.
    let away = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let away_url = format!("http://{}", away.local_addr().unwrap());
    drop(away);
    let conn = connect(&away_url, &dir.path().join("away.jsonl"));
    let service = Service::from_command(serve_cmd(&keys, &conn, &[])).await;
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(format!("{}/healthz", service.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = client
        .get(format!("{}/readyz", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        (&body["ready"], &body["token"], &body["log"]),
        (&Value::from(false), &Value::from(false), &Value::from(true)),
        "{body}"
    );
    let code = service.stop().await.0.code();
    assert_eq!(code, Some(0));

    // With the tenant there, the service fetches a token on its own, before any change.
    let (tenant, _d, _audit, mut conn) = scene_as(Profile::Seed, 3, &[]).await;
    set_flag(
        &mut conn,
        "--audit-log",
        path_str(&dir.path().join("here.jsonl")),
    );
    let service = Service::from_command(serve_cmd(&keys, &conn, &[])).await;
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let r = client
            .get(format!("{}/readyz", service.base))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["token"], true);
            break;
        }
        assert!(Instant::now() < end, "not ready within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        total_requests(&tenant.base_url).await,
        1,
        "only the token was asked for"
    );
    let code = service.stop().await.0.code();
    assert_eq!(code, Some(0));
}
