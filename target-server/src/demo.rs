//! A small API for scenario demos and tests: log in, then list and add items
//! with the token the login gave.
//!
//! - `POST /login` with `{"user": "...", "password": "secret"}` → `200
//!   {"token": "..."}` and a `session` cookie; a wrong password → `401`,
//!   a body that is not such JSON → `400`.
//! - `GET /items` with `Authorization: Bearer TOKEN` (or the `session`
//!   cookie) → `200 {"items": [...], "count": N}`; without a known token → `401`.
//! - `POST /items` with the token and `{"name": "..."}` → `201 {"id": N,
//!   "name": "..."}`; a bad body → `400`; no token → `401`.
//!
//! Tokens and items live in memory, shared by all server threads behind one
//! lock: this is a demo, not a hot path. Successful logins are counted by
//! user and created items by name (`/stats`: `logins_by_user`,
//! `items_by_name`), so a test can check which users a load tester logged
//! in as, and how often.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderValue, SET_COOKIE};
use hyper::{HeaderMap, Method, Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::routes::Body;

/// The password every demo user has.
pub const PASSWORD: &str = "secret";
/// The most items kept; older ones are dropped from the list (ids keep counting).
const MAX_ITEMS: usize = 100;

/// The demo's state.
#[derive(Debug, Default)]
pub(crate) struct Demo {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tokens: HashSet<String>,
    issued: u64,
    items: std::collections::VecDeque<(u64, String)>,
    next_id: u64,
    logins: HashMap<String, u64>,
    posted: HashMap<String, u64>,
}

/// Counts one more under `key`, or under [`crate::stats::OTHER`] once
/// [`crate::stats::MAX_DEMO_KEYS`] keys are taken.
fn count(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n += 1;
        return;
    }
    let key = if map.len() < crate::stats::MAX_DEMO_KEYS { key } else { crate::stats::OTHER };
    *map.entry(key.to_owned()).or_default() += 1;
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// The token a request presents, from its bearer header or session cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) {
        return Some(t.trim());
    }
    headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == "session").then(|| v.trim())
    })
}

impl Demo {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        volley_common::lock(&self.state)
    }

    /// Adds the demo's counts to `stats`.
    pub(crate) fn fill(&self, stats: &mut crate::stats::Stats) {
        let state = self.lock();
        stats.logins_by_user = state.logins.iter().map(|(k, v)| (k.clone(), *v)).collect();
        stats.items_by_name = state.posted.iter().map(|(k, v)| (k.clone(), *v)).collect();
    }

    /// `POST /login`.
    pub(crate) fn login(&self, body: &[u8]) -> Response<Body> {
        let Ok(login) = serde_json::from_slice::<Login>(body) else {
            return error(StatusCode::BAD_REQUEST, "expected {\"user\": ..., \"password\": ...}");
        };
        if login.password != PASSWORD || login.user.is_empty() {
            return error(StatusCode::UNAUTHORIZED, "bad credentials");
        }
        let mut state = self.lock();
        count(&mut state.logins, &login.user);
        state.issued += 1;
        let token = format!("t{}-{}", state.issued, login.user.len());
        state.tokens.insert(token.clone());
        drop(state);
        let mut r = json_response(StatusCode::OK, &json!({ "token": token }));
        if let Ok(cookie) = HeaderValue::from_str(&format!("session={token}; Path=/; HttpOnly")) {
            r.headers_mut().insert(SET_COOKIE, cookie);
        }
        r
    }

    /// `GET` or `POST /items`.
    pub(crate) fn items(&self, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
        let mut state = self.lock();
        if !presented(headers).is_some_and(|t| state.tokens.contains(t)) {
            return error(StatusCode::UNAUTHORIZED, "missing or unknown token");
        }
        if *method == Method::GET {
            let items: Vec<_> = state.items.iter().map(|(id, name)| json!({ "id": id, "name": name })).collect();
            return json_response(StatusCode::OK, &json!({ "items": items, "count": state.items.len() }));
        }
        let Ok(item) = serde_json::from_slice::<NewItem>(body) else {
            return error(StatusCode::BAD_REQUEST, "expected {\"name\": ...}");
        };
        state.next_id += 1;
        count(&mut state.posted, &item.name);
        let id = state.next_id;
        state.items.push_back((id, item.name.clone()));
        if state.items.len() > MAX_ITEMS {
            state.items.pop_front();
        }
        json_response(StatusCode::CREATED, &json!({ "id": id, "name": item.name }))
    }
}
