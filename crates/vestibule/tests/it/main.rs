//! Integration tests: one binary, one module per area. Servers start on random ports and are
#![allow(unreachable_pub)] // test-crate items are shared between modules, not exported
//! spoken to over real HTTP.

mod account;
mod api;
mod bearer;
mod coherence;
mod cookie_store;
mod cors;
mod csrf;
mod doctor;
mod email;
mod framing;
mod layering;
mod limits;
mod mfa;
mod oidc;
mod oidc_logout;
mod openapi;
mod outage;
mod postgres;
mod proxy;
mod revocation;
mod robustness;
mod services;
mod session_layer;
mod sessions;
mod slow_clients;
mod store_conformance;
mod support;
mod tokens;
