//! `gatewatch serve` under hostile connections, over real sockets: idle and half-sent
//! connections are closed, a full server makes room, thousands of idle sockets do not starve
//! real requests, and refused logins are logged without the token.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatewatch::event::{EntityKind, Timestamp};
use gatewatch::store::Store;

use common::TestDb;

const TOKEN: &str = "limits-token-8e1f-2b6a";

/// A `gatewatch serve` child on a free port, its stderr collected.
struct Serve {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    fn start(db: &TestDb, extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["serve", "--db", &db.url, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("GATEWATCH_API_TOKEN", TOKEN)
            .env("GATEWATCH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("serve prints its address").unwrap();
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let stderr = Arc::new(Mutex::new(String::new()));
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        Serve {
            child,
            addr,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn seeded_db() -> TestDb {
    let db = TestDb::sqlite();
    let incidents: Vec<_> = (0..20)
        .map(|i| {
            common::incident(
                "rate-spike-ip",
                EntityKind::Ip,
                &format!("192.0.2.{i}"),
                Timestamp(1_795_000_000_000_000_000 + i * 60_000_000_000),
                30,
            )
        })
        .collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let store = Store::open(&db.url).await.unwrap();
                store.upsert_incidents(&incidents).await.unwrap();
                store.close().await;
            })
        });
    });
    db
}

/// Whether the server closed the socket: a read gives end-of-file or a reset within `wait`
/// (false when it is still open then).
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (408 or the response); the close follows
            Err(e) if matches!(e.kind(), std::io::ErrorKind::ConnectionReset) => return true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Still open: nothing to read yet, no end-of-file.
fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!(
        (&*stream).read(&mut buf),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
    );
    stream.set_nonblocking(false).unwrap();
    open
}

/// GET on a fresh connection (HTTP/1.1, read to the close); returns the status and how
/// long connecting and the whole answer took.
fn timed_get(url: &str, token: Option<&str>) -> (u16, Duration) {
    let rest = url.trim_start_matches("http://");
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    #[allow(clippy::disallowed_methods)] // measuring a latency the issue bounds
    let start = std::time::Instant::now();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let took = start.elapsed();
    let status = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {:?}", String::from_utf8_lossy(&answer)));
    (status, took)
}

/// The bound: answers within 1 s while the idle connections are held.
const ANSWER_BOUND: Duration = Duration::from_secs(1);

#[test]
fn ten_thousand_idle_connections_do_not_starve_healthz_or_the_list() {
    let soft = gatewatch::api::raise_open_file_limit();
    // Our sockets, plus headroom for the test's own descriptors.
    let wanted = 10_000usize;
    let n = wanted.min(soft.saturating_sub(200) as usize);
    if n < wanted {
        eprintln!("open-file limit {soft}: holding {n} idle connections, not {wanted}");
    }
    let db = seeded_db();
    // Timeouts far above the test's length: every idle socket stays open while we measure.
    let serve = Serve::start(&db, &["--header-timeout", "300s", "--idle-timeout", "300s"]);
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let stream =
            TcpStream::connect(&serve.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        // Half of them silent, half with a request header begun and never finished.
        if i % 2 == 1 {
            (&stream)
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
        }
        idle.push(stream);
    }
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let (status, took) = timed_get(&serve.url("/healthz"), None);
        assert_eq!(status, 200);
        worst = worst.max(took);
        assert!(
            took < ANSWER_BOUND,
            "/healthz took {took:?} under {n} idle connections"
        );
        let (status, took) = timed_get(&serve.url("/api/v1/incidents?limit=20"), Some(TOKEN));
        assert_eq!(status, 200);
        worst = worst.max(took);
        assert!(
            took < ANSWER_BOUND,
            "the list took {took:?} under {n} idle connections"
        );
    }
    eprintln!("{n} idle connections held; slowest /healthz or list answer {worst:?}");
    // They were held, not dropped to make the numbers.
    let open = idle.iter().filter(|s| still_open(s)).count();
    assert_eq!(
        open, n,
        "the server closed idle connections under its limit"
    );
}

#[test]
fn silent_half_sent_and_idle_kept_alive_connections_are_closed() {
    let db = seeded_db();
    let serve = Serve::start(&db, &["--header-timeout", "1s", "--idle-timeout", "2s"]);
    let generous = Duration::from_secs(20);

    let mut silent = TcpStream::connect(&serve.addr).unwrap();
    assert!(
        closed_within(&mut silent, generous),
        "a silent socket stays open"
    );

    let mut half = TcpStream::connect(&serve.addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(
        closed_within(&mut half, generous),
        "a half-sent header stays open"
    );

    // A header trickled a byte at a time is on the same clock (slowloris).
    let mut trickle = TcpStream::connect(&serve.addr).unwrap();
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: "
        .iter()
        .cycle()
        .take(200)
    {
        if trickle.write_all(&[*byte]).is_err()
            || closed_within(&mut trickle, Duration::from_millis(200))
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled header stays open for 40 s");

    // A kept-alive connection: one answer, then closed once idle.
    let mut kept = TcpStream::connect(&serve.addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0u8; 512];
    let got = kept.read(&mut answer).unwrap();
    assert!(
        answer[..got].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..got])
    );
    assert!(still_open(&kept), "kept alive after the answer");
    assert!(
        closed_within(&mut kept, generous),
        "an idle kept-alive connection stays open"
    );
}

#[test]
fn a_full_server_closes_its_longest_waiting_connection_for_a_new_one() {
    let db = seeded_db();
    let serve = Serve::start(
        &db,
        &["--max-connections", "20", "--header-timeout", "300s"],
    );
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| {
            let stream = TcpStream::connect(&serve.addr).unwrap();
            // Each accepted in turn, so "oldest" is well defined.
            std::thread::sleep(Duration::from_millis(20));
            stream
        })
        .collect();
    let (status, took) = timed_get(&serve.url("/healthz"), None);
    assert_eq!(status, 200);
    assert!(
        took < ANSWER_BOUND,
        "/healthz took {took:?} on a full server"
    );
    let (status, _) = timed_get(&serve.url("/api/v1/incidents"), Some(TOKEN));
    assert_eq!(status, 200);
    // Each new connection made room by closing the longest-waiting idle one (the second
    // may have found the first's room freed already): the oldest went, the newest stayed.
    assert!(closed_within(&mut idle[0], Duration::from_secs(20)));
    assert!(still_open(&idle[19]));
    let evicted = idle.iter().filter(|s| !still_open(s)).count();
    assert!(
        (1..=2).contains(&evicted),
        "{evicted} closed for 2 new connections"
    );
}

#[test]
fn refused_logins_are_logged_throttled_and_without_the_token() {
    let db = seeded_db();
    let serve = Serve::start(&db, &[]);
    let guess = "guessed-SECRET-a1b2c3d4e5";
    for i in 0..30 {
        let token = if i % 3 == 0 { None } else { Some(guess) };
        assert_eq!(timed_get(&serve.url("/api/v1/incidents"), token).0, 401);
    }
    // The first refusal is logged at once; wait for the line, not for a clock.
    let mut log = String::new();
    for _ in 0..200 {
        log = serve.stderr.lock().unwrap().clone();
        if log.contains("API request refused") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = log
        .lines()
        .filter(|l| l.contains("API request refused"))
        .count();
    assert!(lines >= 1, "no refusal logged: {log}");
    assert!(lines < 30, "one line per refusal, not throttled: {log}");
    assert!(
        log.contains("peer=127.0.0.1:") && log.contains("path=\"/api/v1/incidents\""),
        "{log}"
    );
    assert!(
        !log.contains(guess) && !log.contains("SECRET"),
        "the token was logged: {log}"
    );
}
