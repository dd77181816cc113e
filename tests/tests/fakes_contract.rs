//! The Pi-hole and NPM fakes (`cubeos_tests::fakes`) hold the real APIs'
//! contracts over real HTTP: authentication and its expiry, status codes, JSON
//! shapes, validation errors and ids. If these pass, a client tested against the
//! fakes has met the same refusals the real servers would give it.

use std::time::Duration;

use cubeos_tests::fakes::{FakeNpm, FakePihole, NpmFlavor};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

/// Sends and returns the status and the JSON body (Null when empty).
async fn call(request: RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let text = response.text().await.expect("no body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("body is not JSON")
    };
    (status, body)
}

fn took_is_number(body: &Value) -> bool {
    body.get("took").is_some_and(Value::is_number)
}

// ---------------------------------------------------------------------------
// Pi-hole

async fn pihole_login(http: &Client, pi: &FakePihole, password: &str) -> (u16, Value) {
    call(
        http.post(format!("{}/api/auth", pi.url()))
            .json(&json!({ "password": password })),
    )
    .await
}

async fn sid_of(http: &Client, pi: &FakePihole) -> String {
    let (status, body) = pihole_login(http, pi, "hunter2").await;
    assert_eq!(status, 200, "{body}");
    body["session"]["sid"].as_str().expect("sid").to_string()
}

fn hosts_url(pi: &FakePihole, entry: &str) -> String {
    format!(
        "{}/api/config/dns/hosts/{}",
        pi.url(),
        utf8_percent_encode(entry, NON_ALPHANUMERIC)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_login_gives_a_session_and_refuses_bad_passwords_and_bodies() {
    let pi = FakePihole::start("hunter2", Duration::from_secs(300)).await;
    let http = Client::new();
    let auth = format!("{}/api/auth", pi.url());

    let (status, body) = pihole_login(&http, &pi, "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(
        body["session"],
        json!({ "valid": false, "totp": false, "sid": null, "validity": -1, "message": "password incorrect" })
    );
    assert!(took_is_number(&body));

    let (status, body) = call(http.post(&auth)).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("No request body data"))
    );
    let (status, body) = call(http.post(&auth).body("{\"password\": ")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["key"], "bad_request");
    assert_eq!(
        body["error"]["message"],
        "Invalid request body data (no valid JSON), error at hint"
    );
    let (status, body) = call(http.post(&auth).json(&json!({ "pw": "hunter2" }))).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("No password found in JSON payload"))
    );
    let (status, body) = call(http.post(&auth).json(&json!({ "password": 5 }))).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("Field password has to be of type 'string'"))
    );
    assert_eq!(pi.meter().logins(), 0);

    let (status, body) = pihole_login(&http, &pi, "hunter2").await;
    assert_eq!(status, 200);
    let session = &body["session"];
    assert_eq!((&session["valid"], &session["totp"]), (&json!(true), &json!(false)));
    assert_eq!(
        (&session["validity"], &session["message"]),
        (&json!(300), &json!("password correct"))
    );
    let sid = session["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 23, "FTL's SIDs are 23 base64 characters");
    assert!(session["csrf"].is_string());
    assert_eq!(pi.meter().logins(), 1);

    let (status, body) = call(http.get(&auth).header("X-FTL-SID", sid)).await;
    assert_eq!((status, &body["session"]["valid"]), (200, &json!(true)));
    let (status, body) = call(http.get(&auth)).await;
    assert_eq!((status, &body["session"]["message"]), (401, &json!("no SID provided")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_config_needs_a_live_session_from_any_of_ftls_sources() {
    let pi = FakePihole::start("hunter2", Duration::from_secs(300)).await;
    let http = Client::new();
    let url = format!("{}/api/config/dns/hosts", pi.url());
    let unauthorized = json!({ "key": "unauthorized", "message": "Unauthorized", "hint": null });

    let (status, body) = call(http.get(&url)).await;
    assert_eq!((status, &body["error"]), (401, &unauthorized));
    assert!(took_is_number(&body));
    let (status, _) = call(http.get(&url).header("X-FTL-SID", "vFA+EP4MQ5JJvJg+3Q2Jnw=")).await;
    assert_eq!(status, 401);

    let sid = sid_of(&http, &pi).await;
    let expected = json!({ "dns": { "hosts": [] } });
    let (status, body) = call(http.get(&url).header("X-FTL-SID", &sid)).await;
    assert_eq!((status, &body["config"]), (200, &expected));
    let (status, _) = call(http.get(&url).header("sid", &sid)).await;
    assert_eq!(status, 200);
    let query = format!("{url}?sid={}", utf8_percent_encode(&sid, NON_ALPHANUMERIC));
    let (status, _) = call(http.get(&query)).await;
    assert_eq!(status, 200);

    // A cookie alone is not enough: FTL wants the CSRF token beside it.
    let (status, login) = pihole_login(&http, &pi, "hunter2").await;
    assert_eq!(status, 200);
    let (cookie_sid, csrf) = (
        login["session"]["sid"].as_str().unwrap(),
        login["session"]["csrf"].as_str().unwrap(),
    );
    let cookie = format!("sid={cookie_sid}");
    let (status, _) = call(http.get(&url).header("Cookie", &cookie)).await;
    assert_eq!(status, 401);
    let (status, _) = call(http.get(&url).header("Cookie", &cookie).header("X-CSRF-TOKEN", "nope")).await;
    assert_eq!(status, 401);
    let (status, _) = call(http.get(&url).header("Cookie", &cookie).header("X-CSRF-TOKEN", csrf)).await;
    assert_eq!(status, 200);

    let (status, body) = call(http.get(format!("{}/api/nothing", pi.url()))).await;
    assert_eq!((status, &body["error"]["key"]), (404, &json!("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_hosts_are_added_once_validated_and_deleted_with_ftls_codes() {
    let pi = FakePihole::start("hunter2", Duration::from_secs(300)).await;
    let http = Client::new();
    let sid = sid_of(&http, &pi).await;
    let entry = "10.42.24.1 app.cubeos.cube";

    let (status, _) = call(http.put(hosts_url(&pi, entry))).await;
    assert_eq!(status, 401, "a PUT needs a session too");
    let (status, body) = call(http.put(hosts_url(&pi, entry)).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 201);
    assert_eq!(
        body.as_object().map(|o| o.keys().collect::<Vec<_>>()),
        Some(vec![&"took".to_string()])
    );
    assert_eq!(pi.hosts(), vec![entry.to_string()]);

    let (status, body) = call(http.put(hosts_url(&pi, entry)).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        json!({ "key": "bad_request", "message": "Item already present", "hint": "Uniqueness of items is enforced" })
    );

    for (bad, why) in [
        ("app.cube 10.0.0.1", "neither a valid IPv4 nor IPv6 address"),
        ("10.0.0.1", "entry does not have at least one hostname"),
        ("10.0.0.1 bad..name", "invalid hostname"),
        ("10.0.0.300 x.cube", "neither a valid IPv4 nor IPv6 address"),
    ] {
        let (status, body) = call(http.put(hosts_url(&pi, bad)).header("X-FTL-SID", &sid)).await;
        assert_eq!(
            (status, &body["error"]["message"]),
            (400, &json!("Invalid value")),
            "{bad}"
        );
        let hint = body["error"]["hint"].as_str().unwrap_or_default();
        assert!(
            hint.starts_with("dns.hosts[1]: ") && hint.contains(why),
            "{bad}: {hint}"
        );
    }
    // The path is percent-decoded without form rules: a '+' is not a space.
    let url = format!("{}/api/config/dns/hosts/10.0.0.2+plus.cube", pi.url());
    let (status, _) = call(http.put(url).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 400);
    assert_eq!(pi.hosts(), vec![entry.to_string()]);

    let (status, body) = call(http.delete(hosts_url(&pi, entry)).header("X-FTL-SID", &sid)).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(http.delete(hosts_url(&pi, entry)).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 404);
    assert!(
        body.get("error").is_none() && took_is_number(&body),
        "FTL's 404 here is only {{\"took\"}}: {body}"
    );

    // What a person (or drift) does behind the API's back shows through it.
    pi.add_host("192.168.1.5 nas.lan");
    let url = format!("{}/api/config/dns/hosts", pi.url());
    let (_, body) = call(http.get(&url).header("X-FTL-SID", &sid)).await;
    assert_eq!(body["config"]["dns"]["hosts"], json!(["192.168.1.5 nas.lan"]));
    assert!(pi.remove_host("192.168.1.5 nas.lan"));
    assert!(!pi.remove_host("192.168.1.5 nas.lan"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_sessions_slide_on_use_and_expire() {
    let pi = FakePihole::start("hunter2", Duration::from_secs(2)).await;
    let http = Client::new();
    let url = format!("{}/api/config/dns/hosts", pi.url());
    let sid = sid_of(&http, &pi).await;

    // Each authenticated request extends the session by its validity.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (status, _) = call(http.get(&url).header("X-FTL-SID", &sid)).await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (status, _) = call(http.get(&url).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 401);
    let (status, body) = call(http.get(format!("{}/api/auth", pi.url())).header("X-FTL-SID", &sid)).await;
    assert_eq!((status, &body["session"]["message"]), (401, &json!("session expired")));

    let sid = sid_of(&http, &pi).await;
    pi.expire_sessions();
    let (status, _) = call(http.get(&url).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 401);
    assert_eq!(pi.meter().logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_logout_ends_the_session_and_seats_are_limited() {
    let pi = FakePihole::start("hunter2", Duration::from_secs(300)).await;
    let http = Client::new();
    let auth = format!("{}/api/auth", pi.url());
    let sid = sid_of(&http, &pi).await;

    let (status, body) = call(http.delete(&auth).header("X-FTL-SID", &sid)).await;
    assert_eq!((status, body), (204, Value::Null));
    let (status, body) = call(http.delete(&auth).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 401);
    assert_eq!(body["session"]["message"], "session unknown");
    let url = format!("{}/api/config/dns/hosts", pi.url());
    let (status, _) = call(http.get(&url).header("X-FTL-SID", &sid)).await;
    assert_eq!(status, 401);

    for _ in 0..16 {
        sid_of(&http, &pi).await;
    }
    let (status, body) = pihole_login(&http, &pi, "hunter2").await;
    assert_eq!(status, 429, "a client that never logs out runs out of FTL's 16 seats");
    assert_eq!(body["error"]["key"], "api_seats_exceeded");
    pi.expire_sessions();
    sid_of(&http, &pi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pihole_down_answers_503_and_requests_are_counted() {
    let pi = FakePihole::start("hunter2", Duration::from_secs(300)).await;
    let http = Client::new();
    pi.meter().set_down(true);
    let (status, body) = pihole_login(&http, &pi, "hunter2").await;
    assert_eq!(status, 503);
    assert!(body["error"]["message"].is_string());
    pi.meter().set_down(false);
    sid_of(&http, &pi).await;
    assert_eq!((pi.meter().requests(), pi.meter().logins()), (2, 1));
}

// ---------------------------------------------------------------------------
// NPM

const EMAIL: &str = "admin@cubeos.cube";
const PASSWORD: &str = "correct horse";

async fn npm_token(http: &Client, npm: &FakeNpm) -> String {
    let (status, body) = call(
        http.post(format!("{}/api/tokens", npm.url()))
            .json(&json!({ "identity": EMAIL, "secret": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["token"].as_str().expect("token").to_string()
}

fn host(names: &[&str], port: u16) -> Value {
    json!({ "domain_names": names, "forward_scheme": "http", "forward_host": "10.42.24.7", "forward_port": port })
}

async fn create(http: &Client, npm: &FakeNpm, token: &str, body: &Value) -> (u16, Value) {
    call(
        http.post(format!("{}/api/nginx/proxy-hosts", npm.url()))
            .bearer_auth(token)
            .json(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_tokens_follow_npms_auth_errors_and_validation() {
    let npm = FakeNpm::start(EMAIL, PASSWORD, Duration::from_secs(86_400)).await;
    let http = Client::new();
    let tokens = format!("{}/api/tokens", npm.url());

    let (status, body) = call(http.post(&tokens).json(&json!({ "identity": EMAIL, "secret": "nope" }))).await;
    assert_eq!(status, 400, "NPM >= 2.13 answers a bad login with 400, not 401");
    assert_eq!(
        body,
        json!({ "error": {
            "code": 400,
            "message": "Invalid email or password",
            "message_i18n": "error.invalid-auth",
        } })
    );
    let (status, body) = call(
        http.post(&tokens)
            .json(&json!({ "identity": "x@y.z", "secret": PASSWORD })),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({ "error": { "code": 400, "message": "Invalid email or password" } })
        )
    );
    let (status, body) = call(http.post(&tokens).json(&json!({ "identity": EMAIL }))).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("data must have required property 'secret'"))
    );
    let (status, body) = call(
        http.post(&tokens)
            .json(&json!({ "identity": EMAIL, "secret": "x", "expiry": "1y" })),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("data must NOT have additional properties"))
    );
    let (status, body) = call(
        http.post(&tokens)
            .body(json!({ "identity": EMAIL, "secret": PASSWORD }).to_string()),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("Payload is undefined")),
        "no Content-Type"
    );
    let (status, body) = call(
        http.post(&tokens)
            .header("Content-Type", "application/json")
            .body("{oops"),
    )
    .await;
    assert_eq!(
        (status, body),
        (400, json!({ "error": { "code": 400, "message": "Internal Error" } }))
    );
    assert_eq!(npm.meter().logins(), 0);

    let identity = format!("  {}  ", EMAIL.to_uppercase());
    let (status, body) = call(
        http.post(&tokens)
            .json(&json!({ "identity": identity, "secret": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200);
    let token = body["token"].as_str().expect("token");
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    let expires = body["expires"].as_str().expect("expires");
    assert!(
        expires.len() == 24 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "{expires}"
    );
    assert_eq!(npm.meter().logins(), 1);

    let (status, body) = call(http.get(&tokens).bearer_auth(token)).await;
    assert_eq!(status, 200);
    assert_ne!(body["token"].as_str(), Some(token), "a refresh hands out a new token");
    assert_eq!(npm.meter().logins(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_refuses_missing_bad_and_expired_tokens_like_each_release() {
    let npm = FakeNpm::start(EMAIL, PASSWORD, Duration::from_secs(1)).await;
    let http = Client::new();
    let hosts = format!("{}/api/nginx/proxy-hosts", npm.url());

    // v2.13.0-v2.15.1: no token falls through to the catch-all 404.
    let (status, body) = call(http.get(&hosts)).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({ "error": { "code": 404, "message": "Not Found - /nginx/proxy-hosts" } })
        )
    );
    // Validation comes before the permission check.
    let (status, body) = call(http.post(&hosts).json(&json!({ "domain_names": [] }))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(http.get(&hosts).bearer_auth("not.a.token")).await;
    assert_eq!(
        (status, body),
        (500, json!({ "error": { "code": 500, "message": "Internal Error" } }))
    );
    let (status, body) = call(http.get(&hosts).bearer_auth("null")).await;
    assert_eq!((status, &body["error"]["message"]), (400, &json!("Empty token")));

    let token = npm_token(&http, &npm).await;
    let (status, body) = call(http.get(&hosts).bearer_auth(&token)).await;
    assert_eq!((status, body), (200, json!([])));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = call(http.get(&hosts).bearer_auth(&token)).await;
    assert_eq!((status, &body["error"]["message"]), (400, &json!("Token has expired")));
    assert_eq!(
        body["error"]["message_i18n"]["name"], "TokenExpiredError",
        "an object there, not a string"
    );

    npm.set_flavor(NpmFlavor::Develop);
    let (status, body) = call(http.get(&hosts)).await;
    assert_eq!(
        (status, body),
        (403, json!({ "error": { "code": 403, "message": "Permission Denied" } }))
    );

    npm.set_flavor(NpmFlavor::V2_12);
    let (status, _) = call(http.get(&hosts)).await;
    assert_eq!(status, 403);
    let (status, body) = call(http.get(&hosts).bearer_auth(&token)).await;
    assert_eq!(
        (status, body),
        (401, json!({ "error": { "code": 401, "message": "Token has expired" } }))
    );
    let (status, body) = call(
        http.post(format!("{}/api/tokens", npm.url()))
            .json(&json!({ "identity": EMAIL, "secret": "no" })),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!(401)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_expire_tokens_forces_a_new_login() {
    let npm = FakeNpm::start(EMAIL, PASSWORD, Duration::from_secs(86_400)).await;
    let http = Client::new();
    let hosts = format!("{}/api/nginx/proxy-hosts", npm.url());
    let token = npm_token(&http, &npm).await;
    npm.expire_tokens();
    let (status, body) = call(http.get(&hosts).bearer_auth(&token)).await;
    assert_eq!((status, &body["error"]["message"]), (400, &json!("Token has expired")));
    let token = npm_token(&http, &npm).await;
    let (status, _) = call(http.get(&hosts).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(npm.meter().logins(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_creates_hosts_with_ids_defaults_and_ajv_validation() {
    let npm = FakeNpm::start(EMAIL, PASSWORD, Duration::from_secs(86_400)).await;
    let http = Client::new();
    let token = npm_token(&http, &npm).await;

    let (status, created) = create(&http, &npm, &token, &host(&["b.cubeos.cube", "app.cubeos.cube"], 8080)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], 1);
    assert_eq!(
        created["domain_names"],
        json!(["app.cubeos.cube", "b.cubeos.cube"]),
        "NPM sorts the names"
    );
    for (field, value) in [
        ("owner_user_id", json!(1)),
        ("forward_scheme", json!("http")),
        ("forward_host", json!("10.42.24.7")),
        ("forward_port", json!(8080)),
        ("access_list_id", json!(0)),
        ("certificate_id", json!(0)),
        ("ssl_forced", json!(false)),
        ("caching_enabled", json!(false)),
        ("block_exploits", json!(false)),
        ("advanced_config", json!("")),
        ("meta", json!({})),
        ("allow_websocket_upgrade", json!(false)),
        ("http2_support", json!(false)),
        ("enabled", json!(true)),
        ("locations", Value::Null),
        ("hsts_enabled", json!(false)),
        ("hsts_subdomains", json!(false)),
        ("trust_forwarded_proto", json!(false)),
        ("certificate", Value::Null),
        ("access_list", Value::Null),
    ] {
        assert_eq!(created[field], value, "{field}");
    }
    assert_eq!(created["owner"]["email"], EMAIL);
    let created_on = created["created_on"].as_str().expect("created_on");
    assert!(
        created_on.len() == 19 && created_on.as_bytes()[10] == b' ',
        "SQLite datetime: {created_on}"
    );

    // ajv's coerceTypes: a numeric string is an integer, "true" a boolean.
    let mut coerced = host(&["a.cubeos.cube"], 0);
    coerced["forward_port"] = json!("8081");
    coerced["allow_websocket_upgrade"] = json!("true");
    coerced["ssl_forced"] = json!(true);
    let (status, second) = create(&http, &npm, &token, &coerced).await;
    assert_eq!(status, 201);
    assert_eq!((&second["id"], &second["forward_port"]), (&json!(2), &json!(8081)));
    assert_eq!(second["allow_websocket_upgrade"], true);
    assert_eq!(second["ssl_forced"], false, "no certificate, no forced SSL");

    let (status, body) = create(&http, &npm, &token, &host(&["APP.cubeos.cube"], 80)).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({ "error": { "code": 400, "message": "APP.cubeos.cube is already in use" } })
        )
    );

    let mut bad = host(&["c.cube"], 80);
    bad["forward_port"] = json!("abc");
    let mut extra = host(&["c.cube"], 80);
    extra["id"] = json!(7);
    for (body, message) in [
        (bad, "data/forward_port must be integer"),
        (host(&["c.cube"], 0), "data/forward_port must be >= 1"),
        (
            json!({ "domain_names": ["c.cube"], "forward_scheme": "http", "forward_host": "x", "forward_port": 70000 }),
            "data/forward_port must be <= 65535",
        ),
        (extra, "data must NOT have additional properties"),
        (
            json!({ "domain_names": ["c.cube"], "forward_scheme": "http", "forward_port": 80 }),
            "data must have required property 'forward_host'",
        ),
        (host(&[], 80), "data/domain_names must NOT have fewer than 1 items"),
        (
            json!({ "domain_names": "c.cube", "forward_scheme": "http", "forward_host": "x", "forward_port": 80 }),
            "data/domain_names must be array",
        ),
        (
            json!({ "domain_names": ["c.cube"], "forward_scheme": "ftp", "forward_host": "x", "forward_port": 80 }),
            "data/forward_scheme must be equal to one of the allowed values",
        ),
        (json!([]), "data must be object"),
    ] {
        let (status, reply) = create(&http, &npm, &token, &body).await;
        assert_eq!(
            (status, &reply["error"]),
            (400, &json!({ "code": 400, "message": message })),
            "{body}"
        );
    }

    // The list is ordered by the names' JSON text, not by id.
    let (status, list) = call(
        http.get(format!("{}/api/nginx/proxy-hosts", npm.url()))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    let ids: Vec<&Value> = list.as_array().expect("array").iter().map(|h| &h["id"]).collect();
    assert_eq!(ids, vec![&json!(2), &json!(1)]);
    assert!(list[0].get("owner").is_none(), "no expansion unless asked");
    let url = format!("{}/api/nginx/proxy-hosts?expand=owner&query=b.cubeos", npm.url());
    let (_, found) = call(http.get(url).bearer_auth(&token)).await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["owner"]["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_gets_updates_and_deletes_by_id() {
    let npm = FakeNpm::start(EMAIL, PASSWORD, Duration::from_secs(86_400)).await;
    let http = Client::new();
    let token = npm_token(&http, &npm).await;
    let base = format!("{}/api/nginx/proxy-hosts", npm.url());
    let (_, first) = create(&http, &npm, &token, &host(&["one.cube"], 8001)).await;
    let (_, _) = create(&http, &npm, &token, &host(&["two.cube"], 8002)).await;

    let (status, got) = call(http.get(format!("{base}/1")).bearer_auth(&token)).await;
    assert_eq!((status, &got["domain_names"]), (200, &json!(["one.cube"])));
    assert_eq!(got["meta"], json!({ "nginx_online": true, "nginx_err": null }));
    let (status, body) = call(http.get(format!("{base}/99")).bearer_auth(&token)).await;
    assert_eq!(
        (status, body),
        (404, json!({ "error": { "code": 404, "message": "Not Found - 99" } }))
    );
    let (status, body) = call(http.get(format!("{base}/abc")).bearer_auth(&token)).await;
    assert_eq!((status, &body["error"]["message"]), (400, &json!("Internal Error")));

    let (status, updated) = call(
        http.put(format!("{base}/1"))
            .bearer_auth(&token)
            .json(&json!({ "forward_port": 9000 })),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        (&updated["forward_port"], &updated["domain_names"]),
        (&json!(9000), &json!(["one.cube"]))
    );
    assert_eq!(updated["created_on"], first["created_on"]);
    assert_eq!(updated["owner"]["id"], 1);
    for (body, message) in [
        (json!({ "id": 5 }), "data must NOT have additional properties"),
        (
            json!({ "created_on": "2020-01-01 00:00:00" }),
            "data must NOT have additional properties",
        ),
        (json!({}), "data must NOT have fewer than 1 properties"),
        (json!({ "forward_port": "x" }), "data/forward_port must be integer"),
        (json!({ "domain_names": ["TWO.cube"] }), "TWO.cube is already in use"),
    ] {
        let (status, reply) = call(http.put(format!("{base}/1")).bearer_auth(&token).json(&body)).await;
        assert_eq!((status, &reply["error"]["message"]), (400, &json!(message)), "{body}");
    }
    let (status, _) = call(
        http.put(format!("{base}/1"))
            .bearer_auth(&token)
            .json(&json!({ "domain_names": ["one.cube"] })),
    )
    .await;
    assert_eq!(status, 200, "a host's own names are not a conflict");
    let (status, body) = call(
        http.put(format!("{base}/99"))
            .bearer_auth(&token)
            .json(&json!({ "enabled": false })),
    )
    .await;
    assert_eq!((status, &body["error"]["message"]), (404, &json!("Not Found - 99")));

    let (status, body) = call(http.delete(format!("{base}/1")).bearer_auth(&token)).await;
    assert_eq!((status, body), (200, json!(true)));
    let (status, body) = call(http.delete(format!("{base}/1")).bearer_auth(&token)).await;
    assert_eq!((status, &body["error"]["message"]), (404, &json!("Not Found - 1")));
    let (_, third) = create(&http, &npm, &token, &host(&["one.cube"], 8001)).await;
    assert_eq!(third["id"], 3, "ids are never reused");

    npm.set_flavor(NpmFlavor::V2_12);
    let (status, body) = call(http.get(format!("{base}/99")).bearer_auth(&token)).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (404, &json!("Item Not Found - 99"))
    );
    let mut newer = host(&["three.cube"], 80);
    newer["trust_forwarded_proto"] = json!(true);
    let (status, _) = create(&http, &npm, &token, &newer).await;
    assert_eq!(status, 400, "v2.12 has no trust_forwarded_proto");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_side_doors_and_outage() {
    let npm = FakeNpm::start(EMAIL, PASSWORD, Duration::from_secs(86_400)).await;
    let http = Client::new();
    let token = npm_token(&http, &npm).await;
    let base = format!("{}/api/nginx/proxy-hosts", npm.url());

    let id =
        npm.insert_host(json!({ "domain_names": ["nas.lan"], "forward_host": "192.168.1.5", "forward_port": 5000 }));
    assert_eq!(id, 1);
    let hosts = npm.hosts();
    assert_eq!(
        (hosts.len(), &hosts[0]["enabled"], &hosts[0]["owner_user_id"]),
        (1, &json!(true), &json!(1))
    );
    let (status, got) = call(http.get(format!("{base}/1")).bearer_auth(&token)).await;
    assert_eq!((status, &got["forward_port"]), (200, &json!(5000)));
    let (status, body) = create(&http, &npm, &token, &host(&["nas.lan"], 80)).await;
    assert_eq!(
        (status, &body["error"]["message"]),
        (400, &json!("nas.lan is already in use"))
    );

    assert!(npm.delete_host(id));
    assert!(!npm.delete_host(id));
    let (status, _) = call(http.get(format!("{base}/1")).bearer_auth(&token)).await;
    assert_eq!(status, 404);

    let before = npm.meter().requests();
    npm.meter().set_down(true);
    let (status, body) = call(http.get(&base).bearer_auth(&token)).await;
    assert_eq!((status, &body["error"]["code"]), (503, &json!(503)));
    npm.meter().set_down(false);
    let (status, _) = call(http.get(&base).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(npm.meter().requests(), before + 2);

    let (status, body) = call(http.get(format!("{}/api/nginx/nothing", npm.url())).bearer_auth(&token)).await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({ "error": { "code": 404, "message": "Not Found - /nginx/nothing" } })
        )
    );
}
