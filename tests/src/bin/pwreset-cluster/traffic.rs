//! What the check sends and counts: one HTTP request at a time on a new connection
//! (HAProxy balances each one), the tally of answers by class and by series, and the
//! bounded load that runs while a fault is injected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pwreset_tests::http::{Response, try_send};
use serde_json::{Value, json};

pub const JSONAPI: &str = "application/vnd.api+json";
/// Longer than any answer the deadlines allow: past it a request counts as hung.
pub const HUNG: Duration = Duration::from_secs(15);

/// One request: method, target, the route pattern it is counted under, bearer token,
/// body (JSON:API document or OAuth form).
#[derive(Debug, Clone)]
pub struct Call {
    pub method: &'static str,
    pub target: String,
    pub route: &'static str,
    pub token: Option<String>,
    pub body: Option<Body>,
}

#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Form(String),
}

impl Call {
    pub fn get(target: String, route: &'static str, token: &str) -> Self {
        Self {
            method: "GET",
            target,
            route,
            token: Some(token.to_owned()),
            body: None,
        }
    }

    pub fn json(
        method: &'static str,
        target: String,
        route: &'static str,
        token: &str,
        doc: Value,
    ) -> Self {
        Self {
            method,
            target,
            route,
            token: Some(token.to_owned()),
            body: Some(Body::Json(doc)),
        }
    }

    pub fn oauth(form: String) -> Self {
        Self {
            method: "POST",
            target: "/oauth/token".into(),
            route: "/oauth/token",
            token: None,
            body: Some(Body::Form(form)),
        }
    }
}

/// Sends `call` to `addr` on a new connection; `Err` for a connection failure or
/// silence past [`HUNG`].
pub async fn send(addr: SocketAddr, call: &Call) -> Result<Response, String> {
    let auth = call.token.as_ref().map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("Accept", JSONAPI)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let bytes = match &call.body {
        Some(Body::Json(doc)) => {
            headers.push(("Content-Type", JSONAPI));
            Some(doc.to_string().into_bytes())
        }
        Some(Body::Form(form)) => {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
            Some(form.clone().into_bytes())
        }
        None => None,
    };
    tokio::time::timeout(
        HUNG,
        try_send(addr, call.method, &call.target, &headers, bytes.as_deref()),
    )
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {}s", HUNG.as_secs())))
}

/// Answers by class, as the fault table shows them, and by series, as `/metrics` counts
/// them.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: u64,
    pub ok: u64,
    pub client_errors: u64,
    /// 503 from an instance (`SERVICE_UNAVAILABLE`, JSON:API).
    pub unavailable: u64,
    /// 503 from HAProxy when no instance was up (its JSON:API error file).
    pub proxy_unavailable: u64,
    /// Any other 5xx; `server_errors` of them from an instance itself.
    pub other_5xx: u64,
    pub server_errors: u64,
    /// No HTTP answer at all (refused, reset) or none within [`HUNG`].
    pub transport: u64,
    pub slowest: Duration,
    /// `(method, route, status)` of answers an instance gave (not HAProxy).
    pub series: BTreeMap<(String, String, u16), u64>,
    /// What the first few odd answers said, for the report.
    pub samples: Vec<String>,
}

impl Tally {
    pub fn count(&mut self, call: &Call, result: &Result<Response, String>, took: Duration) {
        self.requests += 1;
        self.slowest = self.slowest.max(took);
        let res = match result {
            Ok(res) => res,
            Err(e) => {
                self.transport += 1;
                self.sample(format!("{} {}: {e}", call.method, call.route));
                return;
            }
        };
        let code = error_code(res);
        let from_proxy = matches!(
            code.as_deref(),
            Some("NO_INSTANCE_AVAILABLE" | "BAD_GATEWAY" | "GATEWAY_TIMEOUT")
        );
        if !from_proxy {
            *self
                .series
                .entry((call.method.into(), call.route.into(), res.status))
                .or_default() += 1;
        }
        match res.status {
            200..=299 => self.ok += 1,
            400..=499 => self.client_errors += 1,
            503 if code.as_deref() == Some("SERVICE_UNAVAILABLE") => self.unavailable += 1,
            503 if from_proxy => self.proxy_unavailable += 1,
            _ => {
                self.other_5xx += 1;
                if !from_proxy {
                    self.server_errors += 1;
                }
                self.sample(format!(
                    "{} {} -> {}: {}",
                    call.method,
                    call.route,
                    res.status,
                    res.body.chars().take(300).collect::<String>()
                ));
            }
        }
    }

    fn sample(&mut self, text: String) {
        if self.samples.len() < 5 {
            self.samples.push(text);
        }
    }
}

fn error_code(res: &Response) -> Option<String> {
    serde_json::from_str::<Value>(&res.body).ok()?["errors"][0]["code"]
        .as_str()
        .map(str::to_owned)
}

/// Sends `call` and counts it in `tally`.
pub async fn counted(
    addr: SocketAddr,
    call: &Call,
    tally: &Mutex<Tally>,
) -> Result<Response, String> {
    let started = Instant::now();
    let result = send(addr, call).await;
    tally
        .lock()
        .expect("tally")
        .count(call, &result, started.elapsed());
    result
}

pub fn customer_doc(email: &str, password: Option<&str>) -> Value {
    let mut attributes = json!({ "email": email });
    if let Some(p) = password {
        attributes["password"] = json!(p);
    }
    json!({ "data": { "type": "customers", "attributes": attributes } })
}

pub fn reset_doc(email: &str) -> Value {
    json!({ "data": { "type": "customer_password_resets",
        "attributes": { "customer_email": email }, "relationships": {} } })
}

pub fn complete_doc(id: &str, token: &str, password: &str) -> Value {
    json!({ "data": { "type": "customer_password_resets", "id": id, "attributes": {
        "customer_password": password, "_reset_password_token": token } } })
}

pub fn json_of(res: &Response) -> Value {
    serde_json::from_str(&res.body).unwrap_or(Value::Null)
}

/// What a load run did: its tally and the resets it was told were created (201).
#[derive(Debug, Default)]
pub struct LoadOutcome {
    pub tally: Tally,
    pub acked: Vec<String>,
}

/// Closed-loop load through `addr` until `until`: `workers` loops, each creating a
/// customer and a reset for them while the paced create budget (`creates_per_sec`,
/// at most `max_creates`) allows, reading an acknowledged reset otherwise.
pub async fn load(
    addr: SocketAddr,
    token: &str,
    run: &str,
    workers: usize,
    creates_per_sec: f64,
    max_creates: u64,
    until: Instant,
) -> LoadOutcome {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let started_creates = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (tally, acked, started_creates) =
            (tally.clone(), acked.clone(), started_creates.clone());
        let token = token.to_owned();
        let run = run.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let due = (started.elapsed().as_secs_f64() * creates_per_sec) as u64;
                let create = started_creates.load(Ordering::Relaxed) < due.min(max_creates)
                    && started_creates.fetch_add(1, Ordering::Relaxed) < max_creates;
                if create {
                    let email = format!("{run}-{w}-{n}@load.example");
                    let made = Call::json(
                        "POST",
                        "/api/customers".into(),
                        "/api/customers",
                        &token,
                        customer_doc(&email, None),
                    );
                    if !matches!(counted(addr, &made, &tally).await, Ok(r) if r.status == 201) {
                        continue;
                    }
                    let reset = Call::json(
                        "POST",
                        "/api/customer_password_resets".into(),
                        "/api/customer_password_resets",
                        &token,
                        reset_doc(&email),
                    );
                    if let Ok(res) = counted(addr, &reset, &tally).await
                        && res.status == 201
                        && let Some(id) = json_of(&res)["data"]["id"].as_str()
                    {
                        acked.lock().expect("acked").push(id.to_owned());
                    }
                } else {
                    let pick = {
                        let acked = acked.lock().expect("acked");
                        (!acked.is_empty())
                            .then(|| acked[(n as usize * 7919 + w) % acked.len()].clone())
                    };
                    let call = match pick {
                        Some(id) => Call::get(
                            format!("/api/customer_password_resets/{id}"),
                            "/api/customer_password_resets/{id}",
                            &token,
                        ),
                        None => Call::get(
                            "/api/customer_password_resets?page[size]=5".into(),
                            "/api/customer_password_resets",
                            &token,
                        ),
                    };
                    let _ = counted(addr, &call, &tally).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let tally = tally.lock().expect("tally").clone();
    let acked = acked.lock().expect("acked").clone();
    LoadOutcome { tally, acked }
}

/// Runs `calls` all at once, each on its own connection.
pub async fn concurrently(addr: SocketAddr, calls: Vec<Call>) -> Vec<Result<Response, String>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(calls.len()));
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                send(addr, &call).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    out
}
