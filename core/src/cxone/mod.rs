//! The `cxone` profile's wire formats: how the real NICE CXone APIs are asked, and how their answers read.
//!
//! Everything here is pure: a function builds an [`HttpRequest`](crate::HttpRequest) or reads an
//! [`HttpResponse`](crate::HttpResponse) into a typed answer or a coded [`TransitionError`](crate::TransitionError).
//! The engine decides what to ask and when; these modules know only how it looks on the wire. Facts and their
//! sources are in the project's `cxone-api-facts.md`; a behaviour that rests on an inferred fact is
//! configurable, and its documentation says so.
//!
//! - [`auth`]: discovery (`/.well-known/openid-configuration`, the id_token's `tenantId`,
//!   `/.well-known/cxone-configuration`) and the password and refresh grants.
//! - [`acd`]: the agent directory, teams' unavailable codes, and the Admin API's `SetAgentState`.
//! - [`wfm`]: the WFM schedule export and what it says about "scheduled now" and "mandatory break now".

pub mod acd;
pub mod auth;
pub mod wfm;
