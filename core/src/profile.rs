//! API profiles: how requests are built and answers parsed for a given API dialect.
//!
//! The engine decides *what* to ask and *when*; a profile decides *how it looks on the wire*. The `seed`
//! profile speaks exactly as the reference module does. A later profile speaks the real CXone API behind the
//! same trait.

use serde_json::Value;

use crate::config::{EngineConfig, Secret};
use crate::cxone::bearer;
use crate::error::{BreakWindow, ErrorCode, TransitionError};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::state::{AgentState, UserId};

/// The scope string the reference module requests.
pub const SEED_SCOPE: &str = "users:state:view users:state:write schedules:view breaks:view";

/// A token parsed from a token-endpoint answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedToken {
    /// The bearer token.
    pub access_token: Secret,
    /// Its lifetime (`expires_in`, in ms).
    pub expires_in_ms: u64,
}

/// Why a token answer gave no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenFailure {
    /// The credentials were refused; retrying will not help (`AUTH_FAILED`).
    Refused(String),
    /// The body could not be understood (`BAD_RESPONSE`).
    Malformed(String),
}

/// A schedule answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleAnswer {
    /// Whether the agent is scheduled now.
    pub scheduled: bool,
    /// When the current shift ends, if the answer says (Unix ms).
    pub shift_end_ms: Option<u64>,
}

/// A break answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakStatus {
    /// Whether a mandatory break is required now (READY is refused).
    pub required: bool,
    /// The break's window, when the answer names it.
    pub window: Option<BreakWindow>,
}

/// Builds requests and parses answers for one API dialect.
///
/// Requests are returned with `timeout_ms` 0; the engine fills it in.
pub trait ApiProfile: std::fmt::Debug + Send {
    /// The token request.
    fn token_request(&self, config: &EngineConfig) -> HttpRequest;
    /// Parses a 2xx or 4xx token answer.
    fn parse_token(&self, response: &HttpResponse) -> Result<ParsedToken, TokenFailure>;
    /// "Is this agent scheduled now?"
    fn schedule_request(&self, base: &str, user: &UserId, token: &Secret) -> HttpRequest;
    /// Parses a 2xx schedule answer.
    fn parse_schedule(&self, response: &HttpResponse) -> Result<ScheduleAnswer, TransitionError>;
    /// "Is a mandatory break due for this agent?"
    fn break_request(&self, base: &str, user: &UserId, token: &Secret) -> HttpRequest;
    /// Parses a 2xx break answer: whether a mandatory break is required, and its window if given.
    fn parse_break(&self, response: &HttpResponse) -> Result<BreakStatus, TransitionError>;
    /// The state change.
    fn state_request(
        &self,
        base: &str,
        user: &UserId,
        state: &AgentState,
        reason_code: &str,
        token: &Secret,
        idempotency_key: &str,
    ) -> HttpRequest;
    /// Checks a 2xx state-change answer.
    fn parse_state(&self, response: &HttpResponse) -> Result<(), TransitionError>;
}

/// The reference module's endpoints.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeedProfile;

fn request(
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> HttpRequest {
    HttpRequest {
        method,
        url,
        headers,
        body,
        timeout_ms: 0,
    }
}

fn json_body(response: &HttpResponse) -> Result<Value, TransitionError> {
    serde_json::from_str::<Value>(&response.body).map_err(|e| {
        TransitionError::new(
            ErrorCode::BadResponse,
            format!(
                "status {} with a body that is not JSON: {e}",
                response.status
            ),
        )
    })
}

/// `application/x-www-form-urlencoded`, as `URLSearchParams` writes it (space becomes `+`).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl ApiProfile for SeedProfile {
    fn token_request(&self, config: &EngineConfig) -> HttpRequest {
        let body = form_encode(&[
            ("grant_type", "client_credentials"),
            ("client_id", &config.credentials.client_id),
            ("client_secret", config.credentials.client_secret.expose()),
            ("scope", SEED_SCOPE),
        ]);
        request(
            Method::Post,
            config.token_endpoint(),
            vec![(
                "Content-Type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            )],
            Some(body),
        )
    }

    fn parse_token(&self, response: &HttpResponse) -> Result<ParsedToken, TokenFailure> {
        let value: Value = serde_json::from_str(&response.body)
            .map_err(|_| TokenFailure::Malformed("token answer is not JSON".to_owned()))?;
        if !(200..300).contains(&response.status) {
            let error = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            // The description is the server's text about the request, never an echo of our secret.
            return Err(TokenFailure::Refused(format!(
                "token endpoint answered {} ({error})",
                response.status
            )));
        }
        let token = value.get("access_token").and_then(Value::as_str);
        let expires = value.get("expires_in").and_then(Value::as_u64);
        match (token, expires) {
            (Some(t), Some(e)) if !t.is_empty() => Ok(ParsedToken {
                access_token: Secret::new(t),
                expires_in_ms: e.saturating_mul(1000),
            }),
            _ => Err(TokenFailure::Malformed(
                "token answer lacks access_token or expires_in".to_owned(),
            )),
        }
    }

    fn schedule_request(&self, base: &str, user: &UserId, token: &Secret) -> HttpRequest {
        request(
            Method::Get,
            format!("{base}/api/v2/schedules/users/{}", user.path_segment()),
            vec![bearer(token)],
            None,
        )
    }

    fn parse_schedule(&self, response: &HttpResponse) -> Result<ScheduleAnswer, TransitionError> {
        let v = json_body(response)?;
        let status = v.get("status").and_then(Value::as_str).ok_or_else(|| {
            TransitionError::new(
                ErrorCode::BadResponse,
                "schedule answer has no string `status`",
            )
        })?;
        Ok(ScheduleAnswer {
            scheduled: status == "ACTIVE",
            shift_end_ms: v
                .get("shiftEnd")
                .and_then(Value::as_str)
                .and_then(crate::time::parse_iso8601),
        })
    }

    fn break_request(&self, base: &str, user: &UserId, token: &Secret) -> HttpRequest {
        request(
            Method::Get,
            format!("{base}/api/v2/breaks/users/{}/status", user.path_segment()),
            vec![bearer(token)],
            None,
        )
    }

    fn parse_break(&self, response: &HttpResponse) -> Result<BreakStatus, TransitionError> {
        let v = json_body(response)?;
        let required = v
            .get("mandatoryBreakRequired")
            .and_then(Value::as_bool)
            .ok_or_else(|| {
                TransitionError::new(
                    ErrorCode::BadResponse,
                    "break answer has no boolean `mandatoryBreakRequired`",
                )
            })?;
        // `breakStart`/`breakEnd` are optional extras (the simulated tenant sends them).
        let at = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .and_then(crate::time::parse_iso8601)
        };
        let window = match (at("breakStart"), at("breakEnd")) {
            (Some(start_ms), Some(end_ms)) if start_ms <= end_ms => {
                Some(BreakWindow { start_ms, end_ms })
            }
            _ => None,
        };
        Ok(BreakStatus { required, window })
    }

    fn state_request(
        &self,
        base: &str,
        user: &UserId,
        state: &AgentState,
        reason_code: &str,
        token: &Secret,
        idempotency_key: &str,
    ) -> HttpRequest {
        // Members in the order `json!` wrote them before (sorted), so the bytes on the wire are unchanged.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            reason_code: &'a str,
            state: &'a str,
        }
        let body = serde_json::to_string(&Body {
            reason_code,
            state: state.as_str(),
        })
        .expect("strings serialize");
        request(
            Method::Post,
            format!("{base}/api/v2/users/{}/state", user.path_segment()),
            vec![
                bearer(token),
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("Idempotency-Key".to_owned(), idempotency_key.to_owned()),
            ],
            Some(body),
        )
    }

    fn parse_state(&self, response: &HttpResponse) -> Result<(), TransitionError> {
        if response.body.trim().is_empty() {
            return Ok(());
        }
        json_body(response).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_request_is_the_reference_form() {
        let cfg = EngineConfig::new(
            "https://acme.api.nice.incontact.com",
            "id 1",
            Secret::new("s=&+"),
        );
        let r = SeedProfile.token_request(&cfg);
        assert_eq!(r.url, "https://acme.api.nice.incontact.com/oauth2/token");
        assert_eq!(
            r.body.as_deref(),
            Some("grant_type=client_credentials&client_id=id+1&client_secret=s%3D%26%2B&scope=users%3Astate%3Aview+users%3Astate%3Awrite+schedules%3Aview+breaks%3Aview")
        );
    }

    #[test]
    fn parses_answers() {
        let resp = |status, body: &str| HttpResponse::new(status, vec![], body);
        let t = SeedProfile
            .parse_token(&resp(200, r#"{"access_token":"abc","expires_in":3600}"#))
            .unwrap();
        assert_eq!(
            (t.access_token.expose(), t.expires_in_ms),
            ("abc", 3_600_000)
        );
        assert!(matches!(
            SeedProfile.parse_token(&resp(401, r#"{"error":"invalid_client"}"#)),
            Err(TokenFailure::Refused(m)) if m.contains("invalid_client")
        ));
        assert!(
            SeedProfile
                .parse_schedule(&resp(200, r#"{"status":"ACTIVE"}"#))
                .unwrap()
                .scheduled
        );
        assert!(
            !SeedProfile
                .parse_schedule(&resp(200, r#"{"status":"OFF"}"#))
                .unwrap()
                .scheduled
        );
        assert_eq!(
            SeedProfile
                .parse_schedule(&resp(200, "{\"stat"))
                .unwrap_err()
                .code,
            ErrorCode::BadResponse
        );
        assert!(
            SeedProfile
                .parse_break(&resp(200, r#"{"mandatoryBreakRequired":true}"#))
                .unwrap()
                .required
        );
        let b = SeedProfile
            .parse_break(&resp(
                200,
                r#"{"mandatoryBreakRequired":true,"breakStart":"2026-01-05T10:00:00.000Z","breakEnd":"2026-01-05T10:45:00.000Z"}"#,
            ))
            .unwrap();
        assert_eq!(
            b.window,
            Some(BreakWindow {
                start_ms: 1_767_607_200_000,
                end_ms: 1_767_609_900_000
            })
        );
        assert_eq!(
            SeedProfile
                .parse_break(&resp(200, r#"{"mandatoryBreakRequired":"yes"}"#))
                .unwrap_err()
                .code,
            ErrorCode::BadResponse
        );
    }
}
