//! A small WebDriver client (the W3C protocol over HTTP) driving Debian's headless Chromium, for
//! the tests that check what a person sees on the operator console.

use std::{path::PathBuf, process::Command, time::Duration};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{wait_until, ChildGuard};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The path of a program on `PATH`, or a failure saying which package brings it.
pub fn tool(name: &str) -> String {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(!path.is_empty(), "{name} not found: install Debian's package (.ci/services does)");
    path
}

/// How long one WebDriver step may keep trying (an element to appear, a click to land).
const STEP: u64 = 20;

pub struct Browser {
    http: reqwest::Client,
    base: String,
    _driver: ChildGuard,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = ChildGuard(
            Command::new(tool("chromedriver"))
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}");
        wait_until(20, "chromedriver", || async { http.get(format!("{url}/status")).send().await.is_ok() }).await;
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": tool("chromium"),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1100"]}}}});
        let session: Value =
            http.post(format!("{url}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = session["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {session}")).to_string();
        Browser { http, base: format!("{url}/session/{id}"), _driver: driver }
    }

    /// One WebDriver command: its `value`, or the error WebDriver gave.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, String> {
        let r = self.http.request(method, format!("{}{path}", self.base)).json(&body).send().await;
        let v: Value = r.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        match v["value"].get("error").and_then(Value::as_str) {
            Some(e) => Err(format!("{e}: {}", v["value"]["message"].as_str().unwrap_or(""))),
            None => Ok(v["value"].clone()),
        }
    }

    pub async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url})).await.unwrap();
    }

    pub async fn source(&self) -> String {
        let v = self.call(reqwest::Method::GET, "/source", json!({})).await;
        v.ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    }

    /// Runs `script` (a function body) in the page with `args`; its return value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", json!({"script": script, "args": args}))
            .await
            .unwrap_or(Value::Null)
    }

    /// Runs `script` in the page and waits for it to call its last argument back; the value given.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(reqwest::Method::POST, "/execute/async", json!({"script": script, "args": args}))
            .await
            .unwrap_or_else(|e| panic!("the page's script failed: {e}"))
    }

    /// The strings a script returns as an array (an empty list for anything else).
    pub async fn strings(&self, script: &str) -> Vec<String> {
        let v = self.run(script, json!([])).await;
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
    }

    /// The text of the first element `css` matches, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .run("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", json!([css]))
            .await;
        v.as_str().map(String::from)
    }

    /// How many elements `css` matches.
    pub async fn count(&self, css: &str) -> usize {
        self.run("return document.querySelectorAll(arguments[0]).length;", json!([css])).await.as_u64().unwrap_or(0)
            as usize
    }

    /// Whether the first element `css` matches is shown (laid out, not `display: none`).
    pub async fn visible(&self, css: &str) -> bool {
        let script = "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;";
        self.run(script, json!([css])).await.as_bool().unwrap_or(false)
    }

    async fn element(&self, css: &str) -> Result<String, String> {
        let v = self.call(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await?;
        v.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).map(String::from).ok_or("no id".into())
    }

    /// Clicks the element `css` matches, finding it again if the page redrew it meanwhile.
    pub async fn click(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(STEP);
        loop {
            let done = match self.element(css).await {
                Ok(el) => self.call(reqwest::Method::POST, &format!("/element/{el}/click"), json!({})).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("could not click {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Types `text` into the element `css` matches (after what it holds).
    pub async fn type_into(&self, css: &str, text: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(STEP);
        loop {
            let done = match self.element(css).await {
                Ok(el) => {
                    self.call(reqwest::Method::POST, &format!("/element/{el}/value"), json!({"text": text})).await
                }
                Err(e) => Err(e),
            };
            match done {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("could not type into {css}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Signs in on the page with `token` and waits for the page to say so.
    pub async fn sign_in(&self, token: &str, role: &str) {
        self.type_into("#token", token).await;
        self.click("#signin button[type=submit]").await;
        let want = format!("signed in: {role}");
        wait_until(STEP, "the page to say who is signed in", || async {
            self.text("#who").await.is_some_and(|t| t.starts_with(&want))
        })
        .await;
    }

    /// The text of the dialog the page opened (a `confirm`), waiting for it to open.
    pub async fn dialog_text(&self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(STEP);
        loop {
            match self.call(reqwest::Method::GET, "/alert/text", json!({})).await {
                Ok(v) => return v.as_str().unwrap_or("").to_string(),
                Err(e) if tokio::time::Instant::now() > deadline => panic!("the page asked nothing: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Answers the open dialog: OK (`true`) or Cancel.
    pub async fn answer_dialog(&self, ok: bool) {
        let path = if ok { "/alert/accept" } else { "/alert/dismiss" };
        self.call(reqwest::Method::POST, path, json!({})).await.unwrap();
    }

    /// Saves what the browser shows as `target/screenshots/NAME.png`, for a reviewer to look at.
    pub async fn screenshot(&self, name: &str) {
        let v = self.call(reqwest::Method::GET, "/screenshot", json!({})).await.unwrap();
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let (http, base) = (self.http.clone(), self.base.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move { http.delete(base).send().await })
        })
        .join();
    }
}
