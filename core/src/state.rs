//! Agent states, user ids and the state → reason-code table.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, TransitionError};

/// The longest accepted state name.
pub const MAX_STATE_LEN: usize = 64;
/// The longest accepted user id.
pub const MAX_USER_ID_LEN: usize = 128;

/// `READY`: the agent takes contacts.
pub const READY: &str = "READY";
/// `NOT_READY`: the agent is unavailable (e.g. on a break).
pub const NOT_READY: &str = "NOT_READY";
/// `PAUSED`: an ad-hoc pause.
pub const PAUSED: &str = "PAUSED";
/// `IDLE`: idle, as set by the system.
pub const IDLE: &str = "IDLE";

/// The states whose time counts as idle, as in the reference module's `calculateIdleTime`.
pub const IDLE_STATES: [&str; 3] = [IDLE, PAUSED, NOT_READY];

/// Whether time spent in `state` counts as idle.
pub fn is_idle_state(state: &str) -> bool {
    IDLE_STATES.contains(&state)
}

/// A well-formed agent state name: 1 to 64 characters of `A-Z`, `0-9` and `_`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentState(String);

impl AgentState {
    /// Validates a state name; a malformed one gives `INVALID_STATE`.
    pub fn parse(name: &str) -> Result<Self, TransitionError> {
        let bad = |why: &str| {
            TransitionError::new(
                ErrorCode::InvalidState,
                format!("invalid state name: {why}"),
            )
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > MAX_STATE_LEN {
            return Err(bad("longer than 64 characters"));
        }
        let allowed = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_';
        let first_ok = name.as_bytes()[0].is_ascii_uppercase();
        if !first_ok || !name.bytes().all(allowed) {
            // `ready`, `Not_Ready`: state names are upper case; say which one was meant.
            let upper = name.to_ascii_uppercase();
            if upper.as_bytes()[0].is_ascii_uppercase() && upper.bytes().all(allowed) {
                return Err(bad(&format!(
                    "upper case is required (did you mean `{upper}`?)"
                )));
            }
            return Err(bad(if first_ok {
                "only A-Z, 0-9 and _ are allowed"
            } else {
                "must start with A-Z"
            }));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `READY`, the only state a mandatory break blocks.
    pub fn is_ready(&self) -> bool {
        self.0 == READY
    }
}

impl TryFrom<String> for AgentState {
    type Error = TransitionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AgentState> for String {
    fn from(s: AgentState) -> String {
        s.0
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters escaped in a path segment: everything but RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A validated user id.
///
/// Rejected with `INVALID_USER_ID`: empty, longer than 128 characters, control characters, and anything that
/// could change the request path (`/`, `\`, `..`). Everything else is percent-encoded as one path segment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    /// Validates a user id.
    pub fn parse(id: &str) -> Result<Self, TransitionError> {
        let bad = |why: &str| {
            TransitionError::new(ErrorCode::InvalidUserId, format!("invalid user id: {why}"))
        };
        if id.is_empty() {
            return Err(bad("empty"));
        }
        if id.chars().count() > MAX_USER_ID_LEN {
            return Err(bad("longer than 128 characters"));
        }
        if id.chars().any(char::is_control) {
            return Err(bad("contains control characters"));
        }
        if id.contains('/') || id.contains('\\') {
            return Err(bad("contains a path separator"));
        }
        if id.contains("..") || id == "." {
            return Err(bad("contains a dot segment"));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id percent-encoded as a single URL path segment.
    pub fn path_segment(&self) -> String {
        utf8_percent_encode(&self.0, SEGMENT).to_string()
    }
}

impl TryFrom<String> for UserId {
    type Error = TransitionError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<UserId> for String {
    fn from(s: UserId) -> String {
        s.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Maps states to reason codes. Unknown but well-formed states get the fallback (`GENERAL`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonCodeTable {
    /// State name → reason code.
    pub codes: BTreeMap<String, String>,
    /// The reason code for states not in `codes`.
    pub fallback: String,
}

impl Default for ReasonCodeTable {
    /// The reference module's `getReasonCodeForState` mapping.
    fn default() -> Self {
        let codes = [
            (READY, "WORKING"),
            (NOT_READY, "BREAK"),
            (PAUSED, "ADHOC"),
            (IDLE, "SYSTEM_IDLE"),
        ]
        .into_iter()
        .map(|(s, c)| (s.to_owned(), c.to_owned()))
        .collect();
        Self {
            codes,
            fallback: "GENERAL".to_owned(),
        }
    }
}

impl ReasonCodeTable {
    /// The reason code for a state.
    pub fn reason_for(&self, state: &AgentState) -> &str {
        self.codes
            .get(state.as_str())
            .map(String::as_str)
            .unwrap_or(&self.fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names() {
        for ok in ["READY", "NOT_READY", "ON_CALL_2", "X"] {
            assert!(AgentState::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ready",
            "Ready",
            "READY ",
            "_X",
            "9X",
            "RE-ADY",
            &"A".repeat(65),
        ] {
            assert_eq!(
                AgentState::parse(bad).unwrap_err().code,
                ErrorCode::InvalidState,
                "{bad}"
            );
        }
        assert!(AgentState::parse(&"A".repeat(64)).is_ok());
        // A lower-case name is answered with the name that was meant.
        for (typed, meant) in [("ready", "READY"), ("Not_Ready", "NOT_READY")] {
            let e = AgentState::parse(typed).unwrap_err();
            assert!(e.message.contains(&format!("`{meant}`")), "{}", e.message);
        }
        assert!(!AgentState::parse("9X")
            .unwrap_err()
            .message
            .contains("did you mean"));
    }

    #[test]
    fn user_ids() {
        let u = UserId::parse("agent 7?#%é").unwrap();
        assert_eq!(u.path_segment(), "agent%207%3F%23%25%C3%A9");
        for bad in ["", "a/b", "..", "a\\b", "x\ny", "\u{7f}", &"u".repeat(129)] {
            assert_eq!(
                UserId::parse(bad).unwrap_err().code,
                ErrorCode::InvalidUserId,
                "{bad:?}"
            );
        }
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
    }

    #[test]
    fn reason_codes() {
        let t = ReasonCodeTable::default();
        let r = |s: &str| t.reason_for(&AgentState::parse(s).unwrap()).to_owned();
        assert_eq!(r("READY"), "WORKING");
        assert_eq!(r("NOT_READY"), "BREAK");
        assert_eq!(r("PAUSED"), "ADHOC");
        assert_eq!(r("IDLE"), "SYSTEM_IDLE");
        assert_eq!(r("TRAINING"), "GENERAL");
    }
}
