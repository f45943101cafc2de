//! Each route against a real in-process server, and the counts it keeps.

use std::time::{Duration, Instant};

use target_server::Stats;
use volley_testkit::{Client, target as server};

#[test]
fn hello_says_hello() {
    let server = server(1);
    let response = Client::connect(server.local_addr()).get("/hello");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Hello World!");
    assert_eq!(response.header("content-type"), Some("text/plain"));
}

#[test]
fn status_answers_with_the_code_asked_for() {
    let server = server(1);
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/status/503").status, 503);
    assert_eq!(client.get("/status/200").status, 200);
    let no_content = client.get("/status/204");
    assert_eq!((no_content.status, no_content.body.len()), (204, 0));
    for bad in ["/status/100", "/status/600", "/status/abc", "/status/"] {
        assert_eq!(client.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn echo_returns_the_body_and_its_type() {
    let server = server(1);
    let mut client = Client::connect(server.local_addr());
    let body = br#"{"volley": [1, 2, 3]}"#;
    let response = client.request("POST", "/echo", &[("content-type", "application/json")], body);
    assert_eq!(response.status, 200);
    assert_eq!(response.body, body);
    assert_eq!(response.header("content-type"), Some("application/json"));

    let empty = client.request("POST", "/echo", &[], b"");
    assert_eq!((empty.status, empty.body.len()), (200, 0));
}

#[test]
fn cast_and_delay_wait_before_answering() {
    let server = server(1);
    let mut client = Client::connect(server.local_addr());

    let started = Instant::now();
    let response = client.get("/cast/0.1");
    assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
    assert_eq!((response.status, response.text()), (200, "ok"));

    let started = Instant::now();
    let response = client.get("/delay/50");
    assert!(started.elapsed() >= Duration::from_millis(50), "{:?}", started.elapsed());
    assert_eq!((response.status, response.text()), (200, "ok"));

    for bad in ["/cast/-1", "/cast/NaN", "/cast/3601", "/delay/1.5", "/delay/-3"] {
        assert_eq!(client.get(bad).status, 400, "{bad}");
    }
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405() {
    let server = server(1);
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/nope").status, 404);
    assert_eq!(client.get("/cast").status, 404);
    assert_eq!(client.get("/echo").status, 405);
    let response = client.request("POST", "/hello", &[], b"x");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET"));
    assert_eq!(client.request("DELETE", "/status/200", &[], b"").status, 405);
}

#[test]
fn stats_count_exactly_what_was_served_over_keep_alive() {
    let server = server(2);
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for i in 0..37 {
        let n = clients.len();
        let response = clients[i % n].get("/hello?n=1");
        assert_eq!(response.status, 200);
    }
    for client in &mut clients {
        client.get("/status/500");
    }
    clients[0].get("/nope");
    clients[1].request("POST", "/hello", &[], b"");
    // Polling /stats must not change what it reports.
    clients[2].get("/stats");
    clients[3].request("POST", "/stats", &[], b"");

    let over_http = clients[0].get("/stats");
    assert_eq!(over_http.header("content-type"), Some("application/json"));
    let stats: Stats = serde_json::from_slice(&over_http.body).expect("stats JSON");
    assert_eq!(stats, server.stats());

    assert_eq!(stats.count("/hello", 200), 37);
    assert_eq!(stats.count("/hello", 405), 1);
    assert_eq!(stats.path_total("/hello"), 38);
    assert_eq!(stats.count("/status/500", 500), 4);
    assert_eq!(stats.count("/nope", 404), 1);
    assert_eq!(stats.path_total("/stats"), 0);
    assert_eq!(stats.total, 37 + 1 + 4 + 1);
    assert_eq!(stats.by_path.len(), 3);
}

#[test]
fn distinct_paths_past_the_cap_are_counted_together() {
    let server = server(1);
    let mut client = Client::connect(server.local_addr());
    let cap = target_server::stats::MAX_PATHS;
    for i in 0..cap + 5 {
        client.get(&format!("/missing/{i}"));
    }
    let stats = server.stats();
    assert_eq!(stats.by_path.len(), cap + 1);
    assert_eq!(stats.count(target_server::stats::OTHER, 404), 5);
    assert_eq!(stats.total, cap as u64 + 5);
}

#[test]
fn every_thread_serves_and_counts() {
    let server = server(4);
    let addr = server.local_addr();
    // Connections land on whichever thread accepts first; many concurrent
    // clients make it all but certain that several threads take part, and
    // the totals must be exact whichever do.
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for _ in 0..25 {
                    assert_eq!(client.get("/hello").status, 200);
                }
                client.get("/delay/1").status
            })
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().unwrap(), 200);
    }
    let stats = server.stats();
    assert_eq!(stats.count("/hello", 200), 200);
    assert_eq!(stats.count("/delay/1", 200), 8);
    assert_eq!(stats.total, 208);
}

#[test]
fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let server = server(2);
    let addr = server.local_addr();
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/hello").status, 200);

    // `100 Continue` comes back once the handler reads the body, which proves
    // the request is in flight before shutdown begins.
    let mut busy = Client::connect(addr);
    busy.send(b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n");
    assert_eq!(busy.read_response().status, 100);

    let stopping = std::thread::spawn(move || server.shutdown());
    // The idle connection is closed as soon as shutdown starts ...
    assert!(idle.is_closed(), "idle keep-alive connection left open");
    // ... while the in-flight request still gets its answer.
    busy.send(b"volly");
    let response = busy.read_response();
    assert_eq!((response.status, response.text()), (200, "volly"));

    stopping.join().expect("shutdown returns");
    assert!(std::net::TcpStream::connect(addr).is_err(), "still accepting");
}

#[test]
fn zero_threads_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = target_server::start(listener, 0).err().expect("zero threads refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
