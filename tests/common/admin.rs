//! Helpers for the tests of the admin HTTP server: an application with one
//! HTTP service over a simulated target, and small HTTP and Prometheus
//! text helpers.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use sfwd::target_sim::TargetSim;

use super::process::Sfwd;

/// A test's own application: one HTTP service with control point `Eis`
/// over a simulated target, reading one topic of 3 partitions.
pub struct App {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub topology: PathBuf,
}

impl App {
    pub async fn new(prefix: &str, sim: &TargetSim) -> App {
        let name = super::unique(prefix);
        let dir = tempfile::tempdir().unwrap();
        let topology = dir.path().join("topology.yaml");
        let url = sim.url("/eis");
        std::fs::write(
            &topology,
            format!(
                r#"
application: {name}
kafka: {{ bootstrap: "unused:9092", partitions: 3 }}
services:
  eis:
    binding:
      http: {{ url: "{url}", timeout: 2s }}
      interaction: async
    store_and_forward: {{ control_point: Eis }}
    interfaces:
      Query: {{ operations: {{ get: {{ topic: {name}.get }} }} }}
"#
            ),
        )
        .unwrap();
        super::create_topics(&[(&format!("{name}.get"), 3)]).await;
        App {
            name,
            dir,
            topology,
        }
    }

    /// Starts an instance and returns it with its admin base URL.
    pub fn start(&self, instance: &str) -> (Sfwd, String) {
        let mut s = Sfwd::start(&self.topology, instance, self.dir.path());
        let addr = s.admin_addr();
        s.wait_ready();
        s.wait_assigned();
        (s, format!("http://{addr}"))
    }

    /// Produces requests `from..from + n`, request `i` to partition `i mod 3`.
    pub async fn produce(&self, from: usize, n: usize) {
        let producer = super::producer();
        let topic = format!("{}.get", self.name);
        for i in from..from + n {
            let value = format!("{{\"n\":{i}}}");
            super::produce(
                &producer,
                &topic,
                Some((i % 3) as i32),
                None,
                Some(value.as_bytes()),
                &[],
            )
            .await;
        }
    }
}

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

/// POST a JSON body: the status and the answer as JSON.
pub async fn post_json(url: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).expect(&text))
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
