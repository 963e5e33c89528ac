//! Helpers for the tests of the admin HTTP server: small HTTP and
//! Prometheus text helpers. The application itself is a
//! [`super::app::query_app`], started with
//! [`super::app::App::start_with_admin`].

use std::time::{Duration, Instant};

use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// GET: the status and the body.
pub async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// GET: the status and the body as JSON.
pub async fn get_json(url: &str) -> (u16, Value) {
    let (status, text) = get(url).await;
    (status, serde_json::from_str(&text).expect(&text))
}

/// Polls `{base}/api/control-points/Eis` until `pred` holds for it and
/// returns it; panics with the last answer after 60 s.
pub async fn wait_eis(base: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = get_json(&format!("{base}/api/control-points/Eis")).await;
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} never showed: {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// POST a JSON body: the status and the answer as JSON.
pub async fn post_json(url: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(url)
        .header("content-type", "application/json")
        .header("x-sfwd-request", "test")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).expect(&text))
}

/// Any request with `headers`: the status, the `WWW-Authenticate` header,
/// and the answer as JSON (`Null` when it is not JSON).
pub async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Option<String>, Value) {
    let mut r = client().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.body(body.to_string()).send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let text = r.text().await.unwrap();
    (
        status,
        challenge,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// The sum of the samples of `name` whose labels include every `labels`
/// pair, from Prometheus text.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}
