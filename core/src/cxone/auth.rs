//! CXone authentication and discovery on the wire: the OpenID configuration, the password and refresh
//! grants, the id_token's `tenantId`, and the tenant's CXone configuration (its API and WFM bases).
//!
//! Nothing here sends anything. The engine runs the steps in this order and hands each answer to its parser:
//!
//! 1. [`openid_configuration_request`] → [`parse_openid_configuration`]: the `issuer` and `token_endpoint`.
//! 2. [`password_grant_request`] → [`parse_token_answer`]: the access token, a refresh token and the id_token.
//!    Later, [`refresh_grant_request`] at [`refresh_at_ms`]; a refusal that [`is_refresh_refused`] recognises
//!    means "run the password grant again".
//! 3. [`id_token_claims`]: the `tenantId` (and `iss`) of the id_token.
//! 4. [`cxone_configuration_request`] → [`parse_cxone_configuration`]: the [`TenantBases`].
//!
//! Facts are from `cxone-api-facts.md` §1. Those tagged **\[I\]** (inferred) are marked below; each is
//! configurable: the client authentication ([`ClientAuth`]), the bases (set them directly and discovery
//! is skipped), and the refresh schedule. Requests come back with `timeout_ms` 0; the engine fills it in.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{check_url, Secret};
use crate::error::{ConfigError, ErrorCode, TransitionError};
use crate::http::{HttpRequest, HttpResponse, Method};

/// Why a token answer gave no token (shared with the `seed` profile).
pub use crate::profile::TokenFailure;

/// Where discovery starts: the commercial cloud's issuer **\[C: SDK `cxone-auth.js`, COG, SPEC-G\]**.
///
/// FedRAMP tenants use `https://cxone-gov.niceincontact.com` instead, so the base is a setting.
pub const AUTH_BASE_DEFAULT: &str = "https://cxone.niceincontact.com";

/// Which discovery step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiscoveryStep {
    /// `GET {auth_base}/.well-known/openid-configuration`.
    OpenIdConfiguration,
    /// Reading `tenantId` from the id_token.
    IdToken,
    /// `GET {issuer}/.well-known/cxone-configuration?tenantId=…`.
    CxoneConfiguration,
}

impl std::fmt::Display for DiscoveryStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::OpenIdConfiguration => "fetching the OpenID configuration",
            Self::IdToken => "reading the id_token",
            Self::CxoneConfiguration => "fetching the CXone configuration",
        })
    }
}

/// A discovery step failed (`DISCOVERY_FAILED`). The message never contains a token or a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("discovery failed while {step}: {message}")]
#[non_exhaustive]
pub struct DiscoveryError {
    /// The step.
    pub step: DiscoveryStep,
    /// What went wrong.
    pub message: String,
}

impl DiscoveryError {
    pub(crate) fn new(step: DiscoveryStep, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
        }
    }

    /// Always [`ErrorCode::DiscoveryFailed`].
    pub fn code(&self) -> ErrorCode {
        ErrorCode::DiscoveryFailed
    }
}

impl From<DiscoveryError> for TransitionError {
    fn from(e: DiscoveryError) -> Self {
        TransitionError::new(e.code(), e.to_string())
    }
}

/// What discovery needs from `/.well-known/openid-configuration`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenIdConfiguration {
    /// `issuer`: the host of the CXone configuration (checked with [`check_url`]).
    pub issuer: String,
    /// `token_endpoint`, normally `{issuer}/auth/token` (checked with [`check_url`]).
    pub token_endpoint: String,
}

/// `GET {auth_base}/.well-known/openid-configuration` (trailing slashes of `auth_base` are ignored).
///
/// The caller checks `auth_base` with [`check_url`] when it is configured.
pub fn openid_configuration_request(auth_base: &str) -> HttpRequest {
    get(format!(
        "{}/.well-known/openid-configuration",
        auth_base.trim_end_matches('/')
    ))
}

/// Reads the `issuer` and `token_endpoint` of a 2xx OpenID configuration answer.
///
/// Both must be URLs [`check_url`] accepts: https, or http on a loopback host only.
pub fn parse_openid_configuration(
    response: &HttpResponse,
) -> Result<OpenIdConfiguration, DiscoveryError> {
    let step = DiscoveryStep::OpenIdConfiguration;
    let body = json_answer(step, response)?;
    Ok(OpenIdConfiguration {
        issuer: url_field(step, &body, "issuer")?,
        token_endpoint: url_field(step, &body, "token_endpoint")?,
    })
}

/// How the client app (the OAuth client) authenticates to the token endpoint.
///
/// Discovery advertises only `client_secret_basic` **\[C\]**; the spec also allows the client id and secret in the
/// form **\[C: SPEC-C\]**, and one public client sends them there. Which one a tenant wants is **\[I\]**, hence the
/// setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// `Authorization: Basic base64(urlencode(client_id) ":" urlencode(client_secret))`.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

impl ClientAuth {
    /// `"basic"` or `"body"`, as settings spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "basic",
            Self::Body => "body",
        }
    }
}

impl std::fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ClientAuth {
    type Err = ConfigError;

    /// Reads `basic` or `body` in any case; the error names the field `client_auth`.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "basic" => Ok(Self::Basic),
            "body" => Ok(Self::Body),
            _ => Err(ConfigError::Invalid {
                field: "client_auth",
                reason: "expected basic or body".to_owned(),
            }),
        }
    }
}

/// A back-end app's credentials: an access key (the user, in the password grant) and the client app
/// registered for the tenant. `Debug` shows the two ids, never the secrets (see [`Secret`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CxoneCredentials {
    /// The access key id (`username` in the password grant).
    pub access_key_id: String,
    /// The access key secret (`password` in the password grant).
    pub access_key_secret: Secret,
    /// The client app's id.
    pub client_id: String,
    /// The client app's secret.
    pub client_secret: Secret,
}

/// `POST {token_endpoint}` with `grant_type=password&username=<access key id>&password=<access key secret>`
/// **\[C: DOCS, COG, DEFRA\]**, the client app authenticated as `client_auth` says.
///
/// Every form value is form-encoded, so secrets holding `=`, `&`, `%` or `+` arrive intact.
pub fn password_grant_request(
    token_endpoint: &str,
    creds: &CxoneCredentials,
    client_auth: ClientAuth,
) -> HttpRequest {
    let mut form = vec![
        ("grant_type", "password"),
        ("username", creds.access_key_id.as_str()),
        ("password", creds.access_key_secret.expose()),
    ];
    if client_auth == ClientAuth::Body {
        form.push(("client_id", &creds.client_id));
        form.push(("client_secret", creds.client_secret.expose()));
    }
    token_request(token_endpoint, &form, creds, client_auth)
}

/// `POST {token_endpoint}` with `grant_type=refresh_token&refresh_token=…&client_id=…`.
///
/// The spec requires `client_id` for this grant **\[C: SPEC-C, SPEC-G\]**, so it is always in the form; with
/// [`ClientAuth::Basic`] the `Authorization` header is sent too, with [`ClientAuth::Body`] the
/// `client_secret` joins the form **\[I: what a back-end client must send\]**. Re-running the password grant
/// works as well **\[I\]**.
pub fn refresh_grant_request(
    token_endpoint: &str,
    refresh_token: &Secret,
    creds: &CxoneCredentials,
    client_auth: ClientAuth,
) -> HttpRequest {
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", creds.client_id.as_str()),
    ];
    if client_auth == ClientAuth::Body {
        form.push(("client_secret", creds.client_secret.expose()));
    }
    token_request(token_endpoint, &form, creds, client_auth)
}

/// A token answer of the CXone token endpoint. `Debug` shows no token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CxoneToken {
    /// The bearer token.
    pub access_token: Secret,
    /// Its lifetime (`expires_in`, in ms). About an hour has been seen; it is always read, never assumed.
    pub expires_in_ms: u64,
    /// The refresh token, when the answer has one.
    pub refresh_token: Option<Secret>,
    /// The id_token, a JWT that carries the `tenantId` (see [`id_token_claims`]). A credential-like token,
    /// hence a [`Secret`].
    pub id_token: Option<Secret>,
}

/// Reads a token answer.
///
/// - 2xx `{access_token, token_type, refresh_token?, expires_in, id_token?}` gives a [`CxoneToken`]. A
///   missing `token_type` is tolerated; one other than `Bearer` is [`TokenFailure::Malformed`], since the
///   token is sent as a bearer token.
/// - 4xx `{error, error_description}` gives [`TokenFailure::Refused`] naming both (the server's words about
///   the request; the body is never echoed). After a refresh grant, check it with [`is_refresh_refused`].
/// - Anything else is [`TokenFailure::Malformed`].
pub fn parse_token_answer(response: &HttpResponse) -> Result<CxoneToken, TokenFailure> {
    let status = response.status;
    let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&response.body) else {
        return Err(TokenFailure::Malformed(format!(
            "token endpoint answered {status} with a body that is not a JSON object"
        )));
    };
    if !(200..300).contains(&status) {
        return match body.get("error").and_then(Value::as_str) {
            Some(error) if (400..500).contains(&status) => {
                let description = body.get("error_description").and_then(Value::as_str);
                Err(TokenFailure::Refused(refusal(status, error, description)))
            }
            _ => Err(TokenFailure::Malformed(format!(
                "token endpoint answered {status} without an OAuth `error`"
            ))),
        };
    }
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(access_token), Some(expires_in)) = (
        text("access_token"),
        body.get("expires_in").and_then(Value::as_u64),
    ) else {
        return Err(TokenFailure::Malformed(
            "token answer lacks access_token or expires_in".to_owned(),
        ));
    };
    if text("token_type").is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(TokenFailure::Malformed(
            "token answer's token_type is not Bearer".to_owned(),
        ));
    }
    Ok(CxoneToken {
        access_token: Secret::new(access_token),
        expires_in_ms: expires_in.saturating_mul(1000),
        refresh_token: text("refresh_token").map(Secret::new),
        id_token: text("id_token").map(Secret::new),
    })
}

/// Whether a failed refresh grant should fall back to the password grant: the token endpoint refused the
/// refresh token itself (`invalid_grant`: expired, revoked or unknown). Other refusals (`invalid_client`, …)
/// would refuse the password grant too.
pub fn is_refresh_refused(failure: &TokenFailure) -> bool {
    match failure {
        TokenFailure::Refused(message) => refused_error(message) == Some("invalid_grant"),
        TokenFailure::Malformed(_) => false,
    }
}

/// The claims discovery reads from the id_token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdTokenClaims {
    /// `tenantId` **\[C: DEFRA, COG\]**: the key of the CXone configuration.
    pub tenant_id: String,
    /// `iss`, when present. COG uses it as the discovery host **\[C\]**; check it with [`check_url`] before use.
    pub issuer: Option<String>,
}

/// Decodes the id_token's payload (its middle part, base64url with or without padding) and reads
/// `tenantId` (required) and `iss`.
///
/// The signature is **not** verified: the token came straight from the token endpoint over TLS, and only
/// the tenant id is read from it, to ask that same issuer for the tenant's configuration. Errors never
/// contain the token.
pub fn id_token_claims(id_token: &str) -> Result<IdTokenClaims, DiscoveryError> {
    let fail = |m: &str| DiscoveryError::new(DiscoveryStep::IdToken, m);
    let mut parts = id_token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail(
            "the id_token is not a JWT (three dot-separated parts)",
        ));
    };
    let bytes = BASE64_URL_ANY_PAD
        .decode(payload)
        .map_err(|_| fail("the id_token's payload is not base64url"))?;
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(fail("the id_token's payload is not a JSON object"));
    };
    let tenant_id = claims
        .get("tenantId")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| fail("id_token has no tenantId"))?;
    Ok(IdTokenClaims {
        tenant_id: tenant_id.to_owned(),
        issuer: claims.get("iss").and_then(Value::as_str).map(str::to_owned),
    })
}

/// The tenant's API bases.
///
/// **\[I: configurable\]** Both may be set directly, which skips discovery (the WFM host in particular is
/// unverified on a tenant).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TenantBases {
    /// The ACD/Admin (and real-time data) base: `api_endpoint` **\[C: SDK, COG\]**, without a trailing slash.
    pub api_base: String,
    /// The UserHub/WFM base: `https://{area}.{uhDomain}` **\[C: SDK `getUserHubWfmUri`\]**.
    pub wfm_base: String,
}

/// `GET {issuer}/.well-known/cxone-configuration?tenantId=<tenant id>` (trailing slashes of `issuer` are
/// ignored; the tenant id is percent-encoded).
pub fn cxone_configuration_request(issuer: &str, tenant_id: &str) -> HttpRequest {
    get(format!(
        "{}/.well-known/cxone-configuration?tenantId={}",
        issuer.trim_end_matches('/'),
        utf8_percent_encode(tenant_id, UNRESERVED_KEPT)
    ))
}

/// Reads a CXone configuration answer for `tenant_id` (named in errors): `api_endpoint`, `area` and
/// `uhDomain` give the [`TenantBases`]. A 404 means the issuer knows no such tenant.
pub fn parse_cxone_configuration(
    response: &HttpResponse,
    tenant_id: &str,
) -> Result<TenantBases, DiscoveryError> {
    let step = DiscoveryStep::CxoneConfiguration;
    if response.status == 404 {
        return Err(DiscoveryError::new(
            step,
            format!("the issuer has no CXone configuration for tenant {tenant_id:?} (404)"),
        ));
    }
    let body = json_answer(step, response)?;
    let api_base = url_field(step, &body, "api_endpoint")?
        .trim_end_matches('/')
        .to_owned();
    let host_part = |key: &str, dots: bool| {
        body.get(key)
            .and_then(Value::as_str)
            .filter(|v| is_host_part(v, dots))
            .ok_or_else(|| {
                DiscoveryError::new(step, format!("`{key}` is missing or not a host name"))
            })
    };
    let wfm_base = format!(
        "https://{}.{}",
        host_part("area", false)?,
        host_part("uhDomain", true)?
    );
    check_url(&wfm_base)
        .map_err(|reason| DiscoveryError::new(step, format!("the WFM base: {reason}")))?;
    Ok(TenantBases { api_base, wfm_base })
}

/// When to refresh a token issued at `issued_at_ms` that lives `expires_in_ms`: the earlier of
/// `expires_in − 600 s` (the SDK's buffer **\[C: `cxone-auth.js`\]**) and 90 % of the lifetime **\[I\]**.
///
/// For lifetimes under 20 minutes the 600 s buffer would leave less than half the lifetime (or nothing,
/// which would refresh in a loop), so such a token is refreshed at half its lifetime instead **\[I\]**.
pub fn refresh_at_ms(issued_at_ms: u64, expires_in_ms: u64) -> u64 {
    let buffered = expires_in_ms.saturating_sub(REFRESH_BUFFER_MS);
    let ninety_percent = expires_in_ms - expires_in_ms / 10;
    let after = buffered.min(ninety_percent).max(expires_in_ms / 2);
    issued_at_ms.saturating_add(after)
}

/// `TOKEN_EXPIREIN_BUFFER_IN_SECONDS = 600` in the SDK's `cxone-auth.js`.
const REFRESH_BUFFER_MS: u64 = 600_000;

/// JWT segments are base64url without padding (RFC 7515); padded ones are accepted too.
const BASE64_URL_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Everything but RFC 3986's unreserved characters is percent-encoded (space as `%20`), so a server that
/// decodes the Basic credentials as a form (RFC 6749 §2.3.1) and one that decodes them as a URI component
/// (DEFRA's `encodeURIComponent`) read the same bytes.
const UNRESERVED_KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn get(url: String) -> HttpRequest {
    HttpRequest {
        method: Method::Get,
        url,
        headers: vec![accept_json()],
        body: None,
        timeout_ms: 0,
    }
}

fn accept_json() -> (String, String) {
    ("Accept".to_owned(), "application/json".to_owned())
}

/// A form POST to the token endpoint, with the Basic header when `client_auth` says so.
fn token_request(
    token_endpoint: &str,
    form: &[(&str, &str)],
    creds: &CxoneCredentials,
    client_auth: ClientAuth,
) -> HttpRequest {
    let mut headers = vec![
        (
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
        accept_json(),
    ];
    if client_auth == ClientAuth::Basic {
        let pair = format!(
            "{}:{}",
            utf8_percent_encode(&creds.client_id, UNRESERVED_KEPT),
            utf8_percent_encode(creds.client_secret.expose(), UNRESERVED_KEPT)
        );
        headers.push((
            "Authorization".to_owned(),
            format!("Basic {}", STANDARD.encode(pair)),
        ));
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    HttpRequest {
        method: Method::Post,
        url: token_endpoint.to_owned(),
        headers,
        body: Some(body),
        timeout_ms: 0,
    }
}

/// The body of a 2xx discovery answer, as a JSON object.
fn json_answer(
    step: DiscoveryStep,
    response: &HttpResponse,
) -> Result<Map<String, Value>, DiscoveryError> {
    let status = response.status;
    if !(200..300).contains(&status) {
        return Err(DiscoveryError::new(
            step,
            format!("the server answered {status}"),
        ));
    }
    match serde_json::from_str::<Value>(&response.body) {
        Ok(Value::Object(body)) => Ok(body),
        _ => Err(DiscoveryError::new(
            step,
            format!("the {status} answer is not a JSON object"),
        )),
    }
}

/// A string member that [`check_url`] accepts.
fn url_field(
    step: DiscoveryStep,
    body: &Map<String, Value>,
    key: &str,
) -> Result<String, DiscoveryError> {
    let url = body
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| DiscoveryError::new(step, format!("`{key}` is missing or not a string")))?;
    check_url(url).map_err(|reason| DiscoveryError::new(step, format!("`{key}`: {reason}")))?;
    Ok(url.to_owned())
}

/// A DNS label (`dots` false) or dotted name: letters, digits, `-`, no empty label.
fn is_host_part(value: &str, dots: bool) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if dots {
        value.len() <= 253 && value.split('.').all(label_ok)
    } else {
        label_ok(value)
    }
}

/// Where a [`TokenFailure::Refused`] message written by [`refusal`] names the OAuth error.
const REFUSED_PREFIX: &str = "token endpoint refused the request (";

/// `token endpoint refused the request (400 invalid_grant): <description>`. The error code is kept only when
/// it is a plain OAuth code, the description only its printable part and at most 200 characters.
fn refusal(status: u16, error: &str, description: Option<&str>) -> String {
    let plain = !error.is_empty()
        && error.len() <= 64
        && error
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    let error = if plain { error } else { "unrecognised_error" };
    let mut message = format!("{REFUSED_PREFIX}{status} {error})");
    if let Some(d) = description.filter(|d| !d.trim().is_empty()) {
        message.push_str(": ");
        message.extend(d.chars().filter(|c| !c.is_control()).take(200));
    }
    message
}

/// The OAuth error code of a message written by [`refusal`].
fn refused_error(message: &str) -> Option<&str> {
    let inside = message.strip_prefix(REFUSED_PREFIX)?.split(')').next()?;
    inside.split(' ').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENID_EXAMPLE: &str = r#"{"issuer":"https://cxone.niceincontact.com",
        "authorization_endpoint":"https://cxone.niceincontact.com/auth/authorize",
        "token_endpoint":"https://cxone.niceincontact.com/auth/token",
        "end_session_endpoint":"https://cxone.niceincontact.com/auth/logout",
        "jwks_uri":"https://cxone.niceincontact.com/.well-known/jwks",
        "token_endpoint_auth_methods_supported":["client_secret_basic"],"scopes_supported":["openid"]}"#;

    const CXONE_EXAMPLE: &str = r#"{"private":false,"ui_endpoint":"https://na1.nice-incontact.com",
        "auth_endpoint":"https://cxone.niceincontact.com","api_endpoint":"https://api-na1.niceincontact.com/",
        "area":"na1","cluster":"c32","domain":"niceincontact.com","acdDomain":"niceincontact.com",
        "uhDomain":"nice-incontact.com","tenantId":"11e0c0de-0000-4000-8000-000000000001",
        "globaldomain":"niceincontact.com"}"#;

    /// Has `=`, `&`, `%`, `+`, a space and a colon: everything form and Basic encoding must carry.
    const TRICKY: &str = "k=1&x%2B+ y:z";

    fn ok(body: &str) -> HttpResponse {
        HttpResponse::new(200, vec![], body)
    }

    fn creds() -> CxoneCredentials {
        CxoneCredentials {
            access_key_id: "AKID=1".into(),
            access_key_secret: Secret::new(TRICKY),
            client_id: "app id:1".into(),
            client_secret: Secret::new("cs=&%"),
        }
    }

    fn form(r: &HttpRequest) -> Vec<(String, String)> {
        form_urlencoded::parse(r.body.as_deref().unwrap().as_bytes())
            .into_owned()
            .collect()
    }

    fn field(r: &HttpRequest, key: &str) -> Option<String> {
        form(r).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The client id and secret a server reads back from the Basic header.
    fn basic_parts(r: &HttpRequest) -> (String, String) {
        let b64 = r
            .header("authorization")
            .unwrap()
            .strip_prefix("Basic ")
            .unwrap();
        let pair = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        let (id, secret) = pair.split_once(':').unwrap();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        (decode(id), decode(secret))
    }

    fn jwt(payload: &str, padded: bool) -> String {
        let engine = if padded {
            base64::engine::general_purpose::URL_SAFE
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
        };
        format!("eyJhbGciOiJSUzI1NiJ9.{}.c2ln", engine.encode(payload))
    }

    #[test]
    fn openid_configuration_request_and_example() {
        let r = openid_configuration_request("https://cxone.niceincontact.com//");
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.url,
            "https://cxone.niceincontact.com/.well-known/openid-configuration"
        );
        assert_eq!(r.header("accept"), Some("application/json"));
        assert_eq!(openid_configuration_request(AUTH_BASE_DEFAULT).url, r.url);
        let c = parse_openid_configuration(&ok(OPENID_EXAMPLE)).unwrap();
        assert_eq!(c.issuer, "https://cxone.niceincontact.com");
        assert_eq!(
            c.token_endpoint,
            "https://cxone.niceincontact.com/auth/token"
        );
    }

    #[test]
    fn openid_configuration_failures_name_the_step() {
        let e = parse_openid_configuration(&HttpResponse::new(503, vec![], "down")).unwrap_err();
        assert_eq!(e.step, DiscoveryStep::OpenIdConfiguration);
        assert!(e.message.contains("503"), "{e}");
        let e = parse_openid_configuration(&ok("<html>")).unwrap_err();
        assert!(e.message.contains("not a JSON object"), "{e}");
        let e = parse_openid_configuration(&ok(r#"{"issuer":"https://a.example"}"#)).unwrap_err();
        assert!(e.message.contains("token_endpoint"), "{e}");
    }

    #[test]
    fn http_is_refused_off_loopback_and_accepted_on_it() {
        let body = |host: &str| {
            format!(
                r#"{{"issuer":"http://{host}:8080","token_endpoint":"http://{host}:8080/auth/token"}}"#
            )
        };
        let e = parse_openid_configuration(&ok(&body("cxone.example"))).unwrap_err();
        assert!(
            e.message.contains("`issuer`") && e.message.contains("loopback"),
            "{e}"
        );
        let c = parse_openid_configuration(&ok(&body("127.0.0.1"))).unwrap();
        assert_eq!(c.token_endpoint, "http://127.0.0.1:8080/auth/token");
        let cfg = CXONE_EXAMPLE.replace("https://api-na1", "http://api-na1");
        let e = parse_cxone_configuration(&ok(&cfg), "t").unwrap_err();
        assert!(e.message.contains("api_endpoint"), "{e}");
    }

    #[test]
    fn password_grant_basic_carries_tricky_secrets_intact() {
        let r = password_grant_request(
            "https://cxone.niceincontact.com/auth/token",
            &creds(),
            ClientAuth::Basic,
        );
        assert_eq!(
            (r.method, r.url.as_str()),
            (Method::Post, "https://cxone.niceincontact.com/auth/token")
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.header("accept"), Some("application/json"));
        let expected = [
            ("grant_type", "password"),
            ("username", "AKID=1"),
            ("password", TRICKY),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(form(&r), expected);
        let body = r.body.as_deref().unwrap();
        assert!(body.contains("password=k%3D1%26x%252B%2B+y%3Az"), "{body}");
        assert_eq!(basic_parts(&r), ("app id:1".to_owned(), "cs=&%".to_owned()));
        let header = r.header("authorization").unwrap();
        assert_eq!(
            header,
            format!("Basic {}", STANDARD.encode("app%20id%3A1:cs%3D%26%25"))
        );
    }

    #[test]
    fn password_grant_body_puts_the_client_in_the_form() {
        let r = password_grant_request("https://t.example/auth/token", &creds(), ClientAuth::Body);
        assert_eq!(r.header("authorization"), None);
        assert_eq!(field(&r, "client_id").as_deref(), Some("app id:1"));
        assert_eq!(field(&r, "client_secret").as_deref(), Some("cs=&%"));
        assert_eq!(field(&r, "password").as_deref(), Some(TRICKY));
    }

    #[test]
    fn refresh_grant_always_sends_client_id() {
        let refresh = Secret::new("r=&%1");
        let basic = refresh_grant_request(
            "https://t.example/auth/token",
            &refresh,
            &creds(),
            ClientAuth::Basic,
        );
        assert_eq!(
            field(&basic, "grant_type").as_deref(),
            Some("refresh_token")
        );
        assert_eq!(field(&basic, "refresh_token").as_deref(), Some("r=&%1"));
        assert_eq!(field(&basic, "client_id").as_deref(), Some("app id:1"));
        assert_eq!(field(&basic, "client_secret"), None);
        assert_eq!(basic_parts(&basic).1, "cs=&%");
        let body = refresh_grant_request(
            "https://t.example/auth/token",
            &refresh,
            &creds(),
            ClientAuth::Body,
        );
        assert_eq!(body.header("authorization"), None);
        assert_eq!(field(&body, "client_id").as_deref(), Some("app id:1"));
        assert_eq!(field(&body, "client_secret").as_deref(), Some("cs=&%"));
    }

    #[test]
    fn token_answer_example() {
        let t = parse_token_answer(&ok(
            r#"{"access_token":"at-XYZ","token_type":"Bearer","refresh_token":"rt-XYZ","expires_in":3600,"id_token":"a.b.c","issued_token_type":"x"}"#,
        ))
        .unwrap();
        assert_eq!(t.access_token.expose(), "at-XYZ");
        assert_eq!(t.expires_in_ms, 3_600_000);
        assert_eq!(t.refresh_token.as_ref().map(Secret::expose), Some("rt-XYZ"));
        assert_eq!(t.id_token.as_ref().map(Secret::expose), Some("a.b.c"));
        let bare = parse_token_answer(&ok(r#"{"access_token":"at","expires_in":60}"#)).unwrap();
        assert_eq!((bare.refresh_token, bare.id_token), (None, None));
        let debug = format!("{t:?}");
        assert!(
            !debug.contains("XYZ") && !debug.contains("a.b.c"),
            "{debug}"
        );
    }

    #[test]
    fn refused_refresh_is_recognised() {
        let answer = |status, body: &str| {
            parse_token_answer(&HttpResponse::new(status, vec![], body)).unwrap_err()
        };
        let grant = answer(
            400,
            r#"{"error":"invalid_grant","error_description":"Refresh token expired (x)"}"#,
        );
        assert!(
            matches!(&grant, TokenFailure::Refused(m) if m.contains("invalid_grant") && m.contains("Refresh token expired")),
            "{grant:?}"
        );
        assert!(is_refresh_refused(&grant));
        let client = answer(
            401,
            r#"{"error":"invalid_client","error_description":"invalid_grant"}"#,
        );
        assert!(
            matches!(&client, TokenFailure::Refused(m) if m.contains("401 invalid_client")),
            "{client:?}"
        );
        assert!(!is_refresh_refused(&client));
        let odd = answer(400, r#"{"error":"x) invalid_grant"}"#);
        assert!(!is_refresh_refused(&odd), "{odd:?}");
    }

    #[test]
    fn malformed_token_answers() {
        let malformed = |status, body: &str| {
            matches!(
                parse_token_answer(&HttpResponse::new(status, vec![], body)),
                Err(TokenFailure::Malformed(_))
            )
        };
        assert!(malformed(200, "not json"));
        assert!(malformed(200, r#"["access_token"]"#));
        assert!(malformed(200, r#"{"access_token":"","expires_in":3600}"#));
        assert!(malformed(
            200,
            r#"{"access_token":"at","expires_in":"3600"}"#
        ));
        assert!(malformed(
            200,
            r#"{"access_token":"at","token_type":"mac","expires_in":3600}"#
        ));
        assert!(malformed(400, r#"{"message":"no"}"#));
        assert!(malformed(502, r#"{"error":"bad_gateway"}"#));
        assert!(!is_refresh_refused(&TokenFailure::Malformed(
            "invalid_grant".into()
        )));
    }

    #[test]
    fn id_token_claims_with_and_without_padding() {
        // 53 bytes: padded, it ends in one '='; its base64url has a '-', which plain base64 would write '+'.
        let payload = r#"{"tenantId":"t-1","iss":"https://x.example","n":"?>"}"#;
        assert_eq!(payload.len() % 3, 2);
        for padded in [false, true] {
            let token = jwt(payload, padded);
            assert_eq!(token.contains('='), padded);
            assert!(token.contains('-'), "{token}");
            let c = id_token_claims(&token).unwrap();
            assert_eq!(c.tenant_id, "t-1");
            assert_eq!(c.issuer.as_deref(), Some("https://x.example"));
        }
        let no_iss = id_token_claims(&jwt(r#"{"tenantId":"t"}"#, false)).unwrap();
        assert_eq!(no_iss.issuer, None);
    }

    #[test]
    fn id_token_without_tenant_id_or_not_a_jwt() {
        let e = id_token_claims(&jwt(r#"{"sub":"user:1","tenantId":""}"#, false)).unwrap_err();
        assert_eq!(e.step, DiscoveryStep::IdToken);
        assert_eq!(e.message, "id_token has no tenantId");
        assert!(id_token_claims("only.two")
            .unwrap_err()
            .message
            .contains("not a JWT"));
        assert!(id_token_claims("a.b!c.d")
            .unwrap_err()
            .message
            .contains("base64url"));
        let e = id_token_claims(&jwt("[1]", false)).unwrap_err();
        assert!(e.message.contains("JSON object"), "{e}");
    }

    #[test]
    fn cxone_configuration_request_and_example() {
        let r = cxone_configuration_request("https://cxone.niceincontact.com/", "11e0 c0de&x=1");
        assert_eq!(
            r.url,
            "https://cxone.niceincontact.com/.well-known/cxone-configuration?tenantId=11e0%20c0de%26x%3D1"
        );
        assert_eq!(r.method, Method::Get);
        let b = parse_cxone_configuration(&ok(CXONE_EXAMPLE), "11e").unwrap();
        assert_eq!(b.api_base, "https://api-na1.niceincontact.com");
        assert_eq!(b.wfm_base, "https://na1.nice-incontact.com");
    }

    #[test]
    fn cxone_configuration_failures() {
        let e =
            parse_cxone_configuration(&HttpResponse::new(404, vec![], ""), "11e-abc").unwrap_err();
        assert_eq!(e.step, DiscoveryStep::CxoneConfiguration);
        assert!(
            e.message.contains("11e-abc") && e.message.contains("404"),
            "{e}"
        );
        let e = parse_cxone_configuration(&HttpResponse::new(500, vec![], "{}"), "t").unwrap_err();
        assert!(e.message.contains("500"), "{e}");
        let bad_area = CXONE_EXAMPLE.replace(r#""area":"na1""#, r#""area":"na1/evil""#);
        let e = parse_cxone_configuration(&ok(&bad_area), "t").unwrap_err();
        assert!(e.message.contains("`area`"), "{e}");
        let no_uh = CXONE_EXAMPLE.replace("uhDomain", "uh");
        let e = parse_cxone_configuration(&ok(&no_uh), "t").unwrap_err();
        assert!(e.message.contains("`uhDomain`"), "{e}");
    }

    #[test]
    fn discovery_error_becomes_discovery_failed() {
        let e = id_token_claims(&jwt("{}", false)).unwrap_err();
        assert_eq!(e.code(), ErrorCode::DiscoveryFailed);
        let t = TransitionError::from(e);
        assert_eq!(t.code, ErrorCode::DiscoveryFailed);
        assert_eq!(
            t.message,
            "discovery failed while reading the id_token: id_token has no tenantId"
        );
        assert_eq!(
            DiscoveryStep::OpenIdConfiguration.to_string(),
            "fetching the OpenID configuration"
        );
        assert_eq!(
            DiscoveryStep::CxoneConfiguration.to_string(),
            "fetching the CXone configuration"
        );
    }

    #[test]
    fn client_auth_words() {
        assert_eq!(ClientAuth::default(), ClientAuth::Basic);
        assert_eq!(" BODY ".parse::<ClientAuth>().unwrap(), ClientAuth::Body);
        assert_eq!("Basic".parse::<ClientAuth>().unwrap(), ClientAuth::Basic);
        assert_eq!(
            "header".parse::<ClientAuth>().unwrap_err().code(),
            ErrorCode::InvalidConfig
        );
        assert_eq!(
            serde_json::to_string(&ClientAuth::Body).unwrap(),
            "\"body\""
        );
        assert_eq!(
            serde_json::from_str::<ClientAuth>("\"basic\"").unwrap(),
            ClientAuth::Basic
        );
        assert_eq!(ClientAuth::Body.as_str(), "body");
    }

    #[test]
    fn credentials_debug_shows_no_secret() {
        let s = format!("{:?}", creds());
        assert!(!s.contains("k=1") && !s.contains("cs="), "{s}");
        assert!(s.contains("AKID=1") && s.contains("app id:1"), "{s}");
        let json = serde_json::to_string(&creds()).unwrap();
        assert!(
            !json.contains("cs=") && json.contains("accessKeyId"),
            "{json}"
        );
    }

    #[test]
    fn refresh_schedule() {
        // An hour: the SDK's 600 s buffer is the earlier.
        assert_eq!(refresh_at_ms(1_000, 3_600_000), 1_000 + 3_000_000);
        // Ten hours: 90 % is the earlier.
        assert_eq!(refresh_at_ms(0, 36_000_000), 32_400_000);
        // Five minutes: half the lifetime, never at once.
        assert_eq!(refresh_at_ms(7, 300_000), 7 + 150_000);
        assert_eq!(refresh_at_ms(u64::MAX - 1, 3_600_000), u64::MAX);
        assert_eq!(refresh_at_ms(5, 0), 5);
    }
}
