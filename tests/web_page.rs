//! The web page in a real headless Chromium, driven over the Chrome
//! DevTools Protocol: during an outage it shows the control point storing
//! with its backlog; a click on Forward (confirmed in the dialog) switches
//! it back, and the page shows the state change and the backlog draining
//! while the target receives the stored requests.
//!
//! Needs the Debian package `chromium` (`./dev test` installs it), or a
//! Chromium binary named by `SFWD_CHROMIUM`. Set `SFWD_SCREENSHOT_DIR` to
//! keep screenshots of the page before and after the click.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::admin::{call, wait_eis};
use common::app::{produce_queries, query_app, start_target};
use common::process::{message, Sfwd};
use serde_json::{json, Value};
use sfwd::target_sim::Mode;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary: `SFWD_CHROMIUM`, else `chromium` on the `PATH`.
/// Fails the test, saying how to install it, when there is none.
fn chromium_binary() -> PathBuf {
    let found = match std::env::var_os("SFWD_CHROMIUM") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|candidate| candidate.is_file())
        }),
    };
    found.unwrap_or_else(|| {
        panic!(
            "this test needs headless Chromium and found none (no `chromium` on the PATH, or \
             SFWD_CHROMIUM names no file): run `./dev test`, which installs the Debian package \
             `chromium`, or `apt-get install chromium`"
        )
    })
}

/// A headless Chromium showing one page, and a DevTools connection to it.
struct Browser {
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _process: Process,
}

/// The Chromium process and its profile; killed when dropped, whatever
/// happened.
struct Process {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM lets Chromium stop its helper processes and reap them.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn open(url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let mut process = Process {
            child,
            _profile: profile,
        };
        // Chromium says where its DevTools endpoint is on stderr.
        let stderr = BufReader::new(process.child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { break };
                if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(ws.trim().to_string());
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium announced its DevTools endpoint");
        let host = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        // The page target opened for `url`.
        let deadline = Instant::now() + Duration::from_secs(30);
        let page_ws = loop {
            let list = http_get_json(&host, "/json/list");
            let page = list.as_array().and_then(|targets| {
                targets.iter().find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                })
            });
            if let Some(ws) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                break ws.to_string();
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (page, _) = tungstenite::connect(page_ws.as_str()).expect("connect to the page");
        if let MaybeTlsStream::Plain(stream) = page.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
        }
        Browser {
            page,
            next_id: 0,
            _process: process,
        }
    }

    /// Calls a DevTools method and returns its result, skipping events.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({ "id": id, "method": method, "params": params });
        self.page
            .send(Message::text(request.to_string()))
            .expect("send to chromium");
        loop {
            let message = self.page.read().expect("read from chromium");
            let Message::Text(text) = message else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("`{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is `true`; panics after `timeout`
    /// with the page's text.
    fn wait_until(&mut self, what: &str, timeout: Duration, expression: &str) {
        let deadline = Instant::now() + timeout;
        while self.eval(expression) != Value::Bool(true) {
            if Instant::now() > deadline {
                let text = self.eval("document.body.innerText");
                panic!("the page never showed {what}; it shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Saves a PNG of the page into `SFWD_SCREENSHOT_DIR`, if set.
    fn screenshot(&mut self, name: &str) {
        let Some(dir) = std::env::var_os("SFWD_SCREENSHOT_DIR") else {
            return;
        };
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = decode_base64(r["data"].as_str().unwrap());
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }
}

/// A GET on the DevTools HTTP endpoint at `host` (`host:port`), as JSON.
fn http_get_json(host: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Read until the body has the length the headers announce.
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).unwrap_or(0);
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            });
            if n == 0 || length.is_some_and(|len| body.len() >= len) {
                return serde_json::from_str(body).unwrap_or(Value::Null);
            }
        } else if n == 0 {
            return Value::Null;
        }
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            _ => 63,
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (value(*c) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// JavaScript: the text of a field of the `Eis` row.
fn field(name: &str) -> String {
    format!(
        r#"(document.querySelector('tr[data-cp="Eis"] [data-field="{name}"]') || {{}}).textContent || """#
    )
}

/// JavaScript: whether field `name` of the `Eis` row includes `text`.
fn shows(name: &str, text: &str) -> String {
    format!(r#"({}).includes("{text}")"#, field(name))
}

/// JavaScript: whether the `Eis` row shows `state` and a backlog of
/// `backlog`.
fn shows_state(state: &str, backlog: &str) -> String {
    format!("{} && {}", shows("state", state), shows("backlog", backlog))
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_from_the_page_replays_the_backlog() {
    // Before anything else: without Chromium the test fails at once.
    chromium_binary();
    let sim = start_target().await;
    let app = query_app("webpage", &sim).await;
    let (mut instance, base) = app.start_with_admin("w");

    // An outage: the first request triggers the store, the others are stored.
    sim.set_mode(Mode::Unavailable);
    produce_queries(&app, 0, 12).await;
    wait_eis(&base, "11 stored", |v| {
        v["state"] == "STORE" && v["stored_backlog"] == 11
    })
    .await;
    sim.set_mode(Mode::Up);
    let received_before = sim.received().len();

    let url = format!("{base}/");
    let page = tokio::task::spawn_blocking(move || {
        let mut b = Browser::open(&url);
        b.wait_until(
            "Eis storing with 11 stored requests",
            Duration::from_secs(30),
            &shows_state("STORE", "11 requests"),
        );
        b.wait_until(
            "the trigger as the one open failed event",
            Duration::from_secs(30),
            &shows("failed", "1 open"),
        );
        let trigger = b.eval(&field("trigger"));
        assert!(
            trigger
                .as_str()
                .is_some_and(|t| t.contains("ServiceUnavailableException")),
            "the trigger's rule is shown: {trigger}"
        );
        // While storing, the trigger's error is the live problem, in full.
        let error = b.eval(&field("trigger-error"));
        assert!(
            error.as_str().is_some_and(
                |e| e.starts_with("ServiceUnavailableException: ") && e.contains("503")
            ),
            "the error of the trigger is shown in full: {error}"
        );
        assert_eq!(
            b.eval(&field("trigger-history")),
            "",
            "not history while storing"
        );
        // The stored requests, listed on the page with a Skip button each.
        b.eval(
            r#"document.querySelector('tr[data-cp="Eis"] button[data-action="stored"]').click()"#,
        );
        b.wait_until(
            "the stored requests listed",
            Duration::from_secs(30),
            r#"!document.getElementById("stored").hidden && document.querySelectorAll('#stored-rows button[data-action="skip"]').length === 11"#,
        );
        b.screenshot("stored");
        b.eval(r#"document.getElementById("stored-close").click()"#);
        b.screenshot("storing");

        // Forward, confirmed in the dialog.
        b.eval(
            r#"document.querySelector('tr[data-cp="Eis"] button[data-action="forward"]').click()"#,
        );
        b.wait_until(
            "the confirmation dialog",
            Duration::from_secs(5),
            r#"document.getElementById("confirm").open && document.getElementById("confirm-title").textContent === "Forward Eis?""#,
        );
        b.screenshot("confirm");
        b.eval(r#"document.getElementById("operator").value = "chromium-test""#);
        // The forward dialog also takes a pace for the replay.
        assert_eq!(
            b.eval(r#"document.getElementById("rate-field").hidden"#),
            false
        );
        b.eval(r#"document.getElementById("rate").value = "500/s""#);
        b.eval(r#"document.getElementById("confirm-yes").click()"#);
        b.wait_until(
            "the command's result",
            Duration::from_secs(30),
            r#"document.getElementById("message").textContent.includes("forward Eis: applied")"#,
        );
        b.wait_until(
            "Eis forwarding with the backlog drained",
            Duration::from_secs(60),
            &shows_state("FORWARD", "0 requests"),
        );
        let cause = b.eval(&field("cause"));
        assert!(
            cause.as_str().is_some_and(
                |c| c.contains("operator:chromium-test") || c.contains("replay-caught-up")
            ),
            "{cause}"
        );
        // After recovery the trigger is history, not a live problem.
        b.wait_until(
            "the trigger shown as history",
            Duration::from_secs(10),
            &shows("trigger-history", "resolved"),
        );
        assert_eq!(b.eval(&field("trigger-error")), "");
        b.screenshot("forwarded");
    });
    page.await.unwrap();
    // The pace went out before the forward, from the page's dialog.
    instance.wait_for("the pace published", Duration::from_secs(10), |v| {
        common::process::message(v) == "operator command published" && v["command"] == "pace"
    });

    // The target received the stored requests.
    sim.wait_for(received_before + 11, Duration::from_secs(60))
        .await
        .expect("the 11 stored requests delivered");
    assert!(sim.duplicates().is_empty(), "{:?}", sim.duplicates());
}

/// Serves `html` to every connection on a free loopback port, in a thread,
/// and returns the page's URL: a site other than the admin server's.
fn serve_other_site(html: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_of_another_site_cannot_switch_a_control_point() {
    chromium_binary();
    let sim = start_target().await;
    let app = query_app("webpage-csrf", &sim).await;
    let (mut instance, base) = app.start_with_admin("w");
    let store = format!("{base}/api/control-points/Eis/store");
    // What a hostile page can do without this server's consent: a form
    // posted into a frame, and a "no-cors" fetch.
    let hostile = serve_other_site(format!(
        r#"<!doctype html><title>hostile</title>
<form id="f" method="POST" action="{store}" target="sink"><input name="operator" value="mallory"></form>
<iframe name="sink"></iframe>
<script>
fetch("{store}", {{ method: "POST", mode: "no-cors", body: "{{}}" }})
  .finally(() => {{ document.getElementById("f").submit(); document.title = "sent"; }});
</script>"#
    ));
    let opened = tokio::task::spawn_blocking(move || {
        let mut b = Browser::open(&hostile);
        b.wait_until(
            "both requests sent",
            Duration::from_secs(30),
            r#"document.title === "sent""#,
        );
        b
    });
    let browser = opened.await.unwrap();
    // Both reached the server and were refused as cross-site.
    let refusals = std::cell::Cell::new(0);
    instance.wait_for(
        "two cross-site actions refused",
        Duration::from_secs(30),
        |l| {
            let refused = message(l) == "admin request refused"
                && l["path"] == "/api/control-points/Eis/store"
                && l["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("CrossSite(\"Sec-Fetch-Site is"));
            refusals.set(refusals.get() + usize::from(refused));
            refusals.get() == 2
        },
    );
    drop(browser);
    let v = wait_eis(&base, "the control point as it was", |_| true).await;
    assert_eq!(
        (v["state"].as_str(), v["epoch"].as_u64()),
        (Some("FORWARD"), Some(0)),
        "{v}"
    );
    assert!(
        !instance
            .seen
            .iter()
            .any(|l| message(l) == "operator command published"),
        "no command was published"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_asks_for_a_token_and_acts_as_its_principal() {
    chromium_binary();
    const TOKEN: &str = "alice-page-0123456789abcdef0123";
    let sim = start_target().await;
    let app = query_app("webpage-token", &sim).await;
    let tokens = app.dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice:operator:{TOKEN}\n")).unwrap();
    let source = format!("file:{}", tokens.display());
    let mut instance = Sfwd::start_with(
        &app.topology,
        "w",
        app.dir.path(),
        &["--admin-listen", "127.0.0.1:0", "--admin-tokens", &source],
    );
    instance.wait_assigned();
    let base = format!("http://{}", instance.admin_addr());
    let url = format!("{base}/");
    let page = tokio::task::spawn_blocking(move || {
        let mut b = Browser::open(&url);
        b.wait_until(
            "the token prompt",
            Duration::from_secs(30),
            r#"(document.getElementById("login") || { hidden: true }).hidden === false"#,
        );
        b.eval(&format!(
            r#"document.getElementById("token").value = "{TOKEN}"; document.getElementById("login").requestSubmit()"#
        ));
        b.wait_until(
            "who the page acts as",
            Duration::from_secs(30),
            r#"document.getElementById("session").textContent === "signed in as alice (operator)""#,
        );
        b.wait_until(
            "the control point",
            Duration::from_secs(30),
            &shows("state", "FORWARD"),
        );
        b.eval(
            r#"document.querySelector('tr[data-cp="Eis"] button[data-action="store"]').click()"#,
        );
        b.wait_until(
            "the confirmation dialog, without a name to type",
            Duration::from_secs(5),
            r#"document.getElementById("confirm").open && document.getElementById("operator-field").hidden"#,
        );
        b.eval(r#"document.getElementById("confirm-yes").click()"#);
        b.wait_until(
            "the command's result",
            Duration::from_secs(30),
            r#"document.getElementById("message").textContent.includes("store Eis: applied")"#,
        );
        b.screenshot("signed-in");
        // The history shows alice's store and the change it made.
        b.eval(
            r#"document.querySelector('tr[data-cp="Eis"] button[data-action="history"]').click()"#,
        );
        b.wait_until(
            "alice's store in the history, with the state change",
            Duration::from_secs(30),
            r##"(() => { document.getElementById("history-refresh").click();
                const rows = [...document.querySelectorAll("#history-rows tr")].map(r => r.textContent);
                return rows.some(t => t.includes("store") && t.includes("operator:alice") && t.includes("admin-api") && t.includes("applied"))
                    && rows.some(t => t.includes("state-change") && t.includes("STORE epoch 1 (operator)")); })()"##,
        );
        b.screenshot("history");
    });
    page.await.unwrap();
    let (status, _, v) = call(
        "GET",
        &format!("{base}/api/control-points/Eis"),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        "",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["state"].as_str(), v["by"].as_str()),
        (Some("STORE"), Some("operator:alice")),
        "{v}"
    );
}
