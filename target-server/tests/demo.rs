//! The demo API for scenarios: login, then items with the token; every
//! answer counted by method, path and status.

use volley_testkit::{Client, target as server};

fn json(r: &volley_testkit::Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", r.text()))
}

#[test]
fn login_then_items_with_the_token_or_the_cookie() {
    let server = server(2);
    let mut c = Client::connect(server.local_addr());
    let ct = [("content-type", "application/json")];

    let bad = c.request("POST", "/login", &ct, br#"{"user": "alice", "password": "guess"}"#);
    assert_eq!((bad.status, json(&bad)["error"].as_str()), (401, Some("bad credentials")));
    assert_eq!(c.request("POST", "/login", &ct, b"user=alice").status, 400);
    let ok = c.request("POST", "/login", &ct, br#"{"user": "alice", "password": "secret"}"#);
    assert_eq!(ok.status, 200);
    let token = json(&ok)["token"].as_str().unwrap().to_owned();
    assert_eq!(ok.header("set-cookie"), Some(format!("session={token}; Path=/; HttpOnly").as_str()));

    assert_eq!(c.get("/items").status, 401);
    let wrong = c.request("GET", "/items", &[("authorization", "Bearer t999-1")], b"");
    assert_eq!((wrong.status, json(&wrong)["error"].as_str()), (401, Some("missing or unknown token")));
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let added = c.request("POST", "/items", &[auth[0], ct[0]], br#"{"name": "apple"}"#);
    assert_eq!((added.status, json(&added)["name"].as_str()), (201, Some("apple")));
    assert_eq!(c.request("POST", "/items", &auth, b"{}").status, 400);
    assert_eq!(c.request("POST", "/items", &[], br#"{"name": "pear"}"#).status, 401);
    let cookie = format!("theme=dark; session={token}");
    let list = c.request("GET", "/items", &[("cookie", cookie.as_str())], b"");
    assert_eq!(list.status, 200);
    assert_eq!(json(&list)["count"], 1);
    assert_eq!(json(&list)["items"][0]["name"], "apple");
    assert_eq!(c.request("DELETE", "/items", &auth, b"").status, 405);

    let stats = server.stats();
    assert_eq!(stats.count_method("POST", "/login", 200), 1);
    assert_eq!(stats.count_method("POST", "/login", 401), 1);
    assert_eq!(stats.count_method("POST", "/login", 400), 1);
    assert_eq!(stats.count_method("GET", "/items", 401), 2);
    assert_eq!(stats.count_method("GET", "/items", 200), 1);
    assert_eq!(stats.count_method("POST", "/items", 201), 1);
    assert_eq!(stats.method_total("POST", "/items"), 3);
    assert_eq!(stats.count_method("DELETE", "/items", 405), 1);
    assert_eq!(stats.path_total("/items"), 7);
}

#[test]
fn every_token_issued_stays_valid_and_stats_json_tells_methods_apart() {
    let server = server(1);
    let mut c = Client::connect(server.local_addr());
    let ct = [("content-type", "application/json")];
    let tokens: Vec<String> = ["alice", "bob"]
        .iter()
        .map(|user| {
            let body = format!(r#"{{"user": "{user}", "password": "secret"}}"#);
            let r = c.request("POST", "/login", &ct, body.as_bytes());
            assert_eq!(r.status, 200);
            json(&r)["token"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_ne!(tokens[0], tokens[1]);
    for token in &tokens {
        let bearer = format!("Bearer {token}");
        let r = c.request("POST", "/items", &[("authorization", bearer.as_str()), ct[0]], br#"{"name": "x"}"#);
        assert_eq!(r.status, 201);
        assert_eq!(c.request("GET", "/items", &[("authorization", bearer.as_str())], b"").status, 200);
    }
    assert_eq!(c.request("POST", "/items", &[], b"not json").status, 401, "auth is checked before the body");

    // What a load tester's report is compared against: /stats over HTTP.
    let stats = json(&c.get("/stats"));
    assert_eq!(stats["by_method_path"]["POST /items"]["201"], 2, "{stats}");
    assert_eq!(stats["by_method_path"]["POST /items"]["401"], 1, "{stats}");
    assert_eq!(stats["by_method_path"]["GET /items"]["200"], 2, "{stats}");
    assert_eq!(stats["by_method_path"]["POST /login"]["200"], 2, "{stats}");
    assert_eq!(stats["by_path"]["/items"]["201"], 2, "{stats}");
    assert_eq!(stats["total"], 7, "{stats}");
}
