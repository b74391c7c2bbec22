//! The web console over HTTP (always) and in a real browser: headless Chromium driven by
//! chromedriver through WebDriver (skipped, loudly, when chromedriver is not installed;
//! CI installs Debian's chromium and chromium-driver). Screenshots of each page go to
//! `target/console-screenshots/`.

mod common;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::TestDb;
use gatewatch::api::{router, serve, ApiToken, ServeSettings};
use gatewatch::detect::{Evidence, Explain, Incident, Severity, Tally};
use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::{Store, TriageState};
use reqwest::header;
use reqwest::StatusCode;

const TOKEN: &str = "console-test-token-0123";
/// 2026-11-18T11:06:40Z in ns.
const T0: i64 = 1_795_000_000_000_000_000;
/// What an attacker puts in a user agent, a path and an evidence line: shown as text, never run.
const SCRIPT: &str = "<script>window.__pwned=1</script>";
const IMG: &str = "<img src=x onerror=\"window.__pwned=2\">";

fn incident(detector: &str, entity: &str, start_s: i64) -> Incident {
    let start = Timestamp(T0 + start_s * 1_000_000_000);
    let mut incident = common::incident(detector, EntityKind::Ip, entity, start, 300);
    incident.severity = Severity::High;
    incident
}

fn hostile() -> Incident {
    let mut incident = incident("scanner-ip", "203.0.113.66", 600);
    incident.summary = format!("203.0.113.66 scored 12 probe points {SCRIPT}");
    incident.evidence = vec![Evidence::new(
        incident.detected_at,
        format!("203.0.113.66 - - \"GET /{IMG} HTTP/1.1\" 404 0 \"-\" \"{SCRIPT}\"").as_bytes(),
    )];
    incident.explain = Explain {
        rule: "≥ 8 probe points in 10m".into(),
        top_paths: vec![Tally {
            value: format!("/{IMG}"),
            count: 7,
        }],
        statuses: vec![Tally {
            value: "404".into(),
            count: 12,
        }],
        user_agents: vec![Tally {
            value: SCRIPT.into(),
            count: 12,
        }],
        upstreams: Vec::new(),
        timeline: vec![(T0 / 1_000_000_000 + 600, 5), (T0 / 1_000_000_000 + 660, 7)],
    };
    incident
}

struct Console {
    base: String,
    db: TestDb,
    hostile: Incident,
    related: Incident,
}

async fn start() -> Console {
    let db = TestDb::sqlite();
    let store = Store::open(&db.url).await.unwrap();
    let mut hostile = hostile();
    let mut related = incident("rate-spike-ip", "203.0.113.66", 620);
    hostile.related = vec![related.id.clone()];
    related.related = vec![hostile.id.clone()];
    let others = [
        incident("brute-force-ip", "198.51.100.7", 100),
        incident("rate-spike-ip", "192.0.2.44", 200),
    ];
    store
        .upsert_incidents(&[
            hostile.clone(),
            related.clone(),
            others[0].clone(),
            others[1].clone(),
        ])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(store, ApiToken::new(TOKEN).unwrap());
    tokio::spawn(async move {
        serve(
            listener,
            app,
            ServeSettings::default(),
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    Console {
        base,
        db,
        hostile,
        related,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Logs in through the form; the session cookie.
async fn log_in(console: &Console) -> String {
    let response = client()
        .post(format!("{}/ui/login", console.base))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(console: &Console, path: &str, cookie: &str) -> (StatusCode, String) {
    let response = client()
        .get(format!("{}{path}", console.base))
        .header(header::COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    (response.status(), response.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn pages_need_a_login_and_the_wrong_token_is_refused() {
    let console = start().await;
    let response = client()
        .get(format!("{}/ui/", console.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/ui/login");
    let wrong = client()
        .post(format!("{}/ui/login", console.base))
        .form(&[("token", "not-the-token-at-all")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let forged = page(&console, "/ui/", "gatewatch_session=00112233").await;
    assert_eq!(
        forged.0,
        StatusCode::SEE_OTHER,
        "an unknown session is no session"
    );
    // Scripts and checks use the API token as a bearer.
    let bearer = client()
        .get(format!(
            "{}/ui/incidents/{}",
            console.base, console.hostile.id
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn log_text_is_escaped_and_the_page_explains_the_incident() {
    let console = start().await;
    let cookie = log_in(&console).await;
    let (status, html) = page(
        &console,
        &format!("/ui/incidents/{}", console.hostile.id),
        &cookie,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script"), "no script element at all");
    assert!(!html.contains("<img"), "no image element from log text");
    assert!(html.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"));
    assert!(html.contains("onerror=&quot;window.__pwned=2&quot;"));
    for shown in [
        "≥ 8 probe points in 10m",
        "Top paths",
        "User agents",
        "Requests per minute",
        "<svg",
    ] {
        assert!(html.contains(shown), "{shown} missing");
    }
    assert!(
        html.contains(&format!("/ui/incidents/{}", console.related.id)),
        "the related incident is linked"
    );
}

#[tokio::test]
async fn filters_select_by_cidr_and_bad_ones_are_named() {
    let console = start().await;
    let cookie = log_in(&console).await;
    let (status, html) = page(&console, "/ui/?entity=203.0.113.0%2F24", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("203.0.113.66")
            && !html.contains("198.51.100.7")
            && !html.contains("192.0.2.44")
    );
    let (status, html) = page(&console, "/ui/?entity=10.0.0.0%2F33&severity=", &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("is not a CIDR"), "{html}");
    let (_, html) = page(&console, "/ui/?severity=critical", &cookie).await;
    assert!(html.contains("No incident matches."));
}

#[tokio::test]
async fn triage_needs_the_sessions_csrf_token() {
    let console = start().await;
    let cookie = log_in(&console).await;
    let path = format!("/ui/incidents/{}", console.hostile.id);
    let (_, html) = page(&console, &path, &cookie).await;
    let csrf = csrf_of(&html);
    let post = |csrf: String| {
        let url = format!("{}{path}/triage", console.base);
        let cookie = cookie.clone();
        async move {
            client()
                .post(url)
                .header(header::COOKIE, cookie)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("action", "acknowledge"),
                    ("note", "seen <b>it</b>"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let forged = post("0".repeat(64)).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let store = Store::open(&console.db.url).await.unwrap();
    let untouched = store.get_incident(&console.hostile.id).await.unwrap();
    assert_eq!(untouched.triage.state, TriageState::New);
    let done = post(csrf).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    let acked = store.get_incident(&console.hostile.id).await.unwrap();
    assert_eq!(acked.triage.state, TriageState::Acknowledged);
    assert_eq!(acked.triage.note.as_deref(), Some("seen <b>it</b>"));
    let (_, html) = page(&console, &format!("{path}?done=acknowledged"), &cookie).await;
    assert!(html.contains("Marked acknowledged.") && html.contains("seen &lt;b&gt;it&lt;/b&gt;"));
    // After logging out the cookie opens nothing.
    let out = client()
        .post(format!("{}/ui/logout", console.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page(&console, "/ui/", &cookie).await.0,
        StatusCode::SEE_OTHER
    );
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    })
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// WebDriver steps the browser test repeats.
async fn type_into(browser: &fantoccini::Client, at: fantoccini::Locator<'_>, text: &str) {
    browser
        .find(at)
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(browser: &fantoccini::Client, at: fantoccini::Locator<'_>) {
    browser.find(at).await.unwrap().click().await.unwrap();
}

async fn wait_for(browser: &fantoccini::Client, at: fantoccini::Locator<'_>) {
    browser.wait().for_element(at).await.unwrap();
}

async fn text_of(browser: &fantoccini::Client, at: fantoccini::Locator<'_>) -> String {
    browser.find(at).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_browser_logs_in_filters_by_cidr_opens_an_incident_and_acknowledges_it() {
    use fantoccini::{ClientBuilder, Locator};
    let Some(driver) = chromedriver() else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: console browser test: chromedriver not found (apt install chromium chromium-driver)"
        );
        return;
    };
    let console = start().await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("chromedriver starts a headless Chromium session");
    let shots = screenshot_dir();
    let shoot = |name: &'static str| {
        let browser = browser.clone();
        let path = shots.join(name);
        async move { std::fs::write(path, browser.screenshot().await.unwrap()).unwrap() }
    };

    browser
        .goto(&format!("{}/ui/", console.base))
        .await
        .unwrap();
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/ui/login"));
    shoot("login.png").await;
    type_into(&browser, Locator::Id("token"), TOKEN).await;
    click(&browser, Locator::Css("form button")).await;
    wait_for(&browser, Locator::Css("table.incidents")).await;
    shoot("list.png").await;
    let rows = browser
        .find_all(Locator::Css("table.incidents tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);

    type_into(&browser, Locator::Id("entity"), "203.0.113.0/24").await;
    click(&browser, Locator::Css("form.filters button")).await;
    for _ in 0..100 {
        let url = browser.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains("entity=")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entities: Vec<String> = {
        let mut out = Vec::new();
        for cell in browser.find_all(Locator::Css("td.entity")).await.unwrap() {
            out.push(cell.text().await.unwrap());
        }
        out
    };
    assert_eq!(entities, ["203.0.113.66", "203.0.113.66"]);
    shoot("filtered.png").await;

    let link = format!("a[href='/ui/incidents/{}']", console.hostile.id);
    click(&browser, Locator::Css(&link)).await;
    wait_for(&browser, Locator::Css("form.triage")).await;
    let body = text_of(&browser, Locator::Css("body")).await;
    assert!(body.contains(SCRIPT), "the script shows as text");
    let ran = browser
        .execute("return [window.__pwned === undefined, document.querySelectorAll('img, script').length]", vec![])
        .await
        .unwrap();
    assert_eq!(
        ran,
        serde_json::json!([true, 0]),
        "nothing from the log ran"
    );
    shoot("incident.png").await;

    type_into(
        &browser,
        Locator::Id("note"),
        "scanner, blocked at the edge",
    )
    .await;
    click(&browser, Locator::Css("button[value='acknowledge']")).await;
    wait_for(&browser, Locator::Css("p.notice")).await;
    shoot("acknowledged.png").await;
    let triage = text_of(&browser, Locator::Css("span.triage")).await;
    assert_eq!(triage, "acknowledged");
    let store = Store::open(&console.db.url).await.unwrap();
    let stored = store.get_incident(&console.hostile.id).await.unwrap();
    assert_eq!(stored.triage.state, TriageState::Acknowledged);
    assert_eq!(
        stored.triage.note.as_deref(),
        Some("scanner, blocked at the edge")
    );
    browser.close().await.unwrap();
    drop(driver);
}
