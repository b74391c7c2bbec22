//! Our Standard Webhooks signatures, checked by an independent implementation: Python's
//! standard library (hmac, hashlib, base64), as a receiver would write it.

use std::io::Write;
use std::process::{Command, Stdio};

use gatewatch::alert::signing::{signature_header, Secret};

const VERIFY: &str = r#"
import base64, hashlib, hmac, sys
secret, msg_id, ts, header = sys.argv[1:5]
body = sys.stdin.buffer.read()
key = base64.b64decode(secret.removeprefix("whsec_"))
expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
ok = any(hmac.compare_digest(part.removeprefix("v1,"), expected) for part in header.split(" ") if part.startswith("v1,"))
sys.exit(0 if ok else 1)
"#;

fn python_verifies(secret: &str, id: &str, ts: i64, header: &str, body: &[u8]) -> Option<bool> {
    let mut child = Command::new("python3")
        .args(["-c", VERIFY, secret, id, &ts.to_string(), header])
        .stdin(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(body).unwrap();
    Some(child.wait().unwrap().success())
}

#[test]
fn signatures_verify_with_python_and_a_wrong_secret_fails() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let other = "whsec_c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmU=";
    let body = "{\"event\":\"opened\",\"id\":\"9f2c\",\"entity\":\"203.0.113.7\",\"summary\":\"ünïcode & <tags>\"}";
    let id = "9f2c-opened-soc";
    let ts = 1_764_590_400;
    let header = signature_header(&[Secret::parse(secret).unwrap()], id, ts, body.as_bytes());
    let Some(ok) = python_verifies(secret, id, ts, &header, body.as_bytes()) else {
        let _ = writeln!(std::io::stderr(), "SKIPPED: python3 is not installed");
        return;
    };
    assert!(ok, "python rejects {header}");
    assert_eq!(
        python_verifies(other, id, ts, &header, body.as_bytes()),
        Some(false)
    );
    assert_eq!(
        python_verifies(secret, id, ts + 1, &header, body.as_bytes()),
        Some(false),
        "another timestamp"
    );
    // During a rotation both secrets sign; the receiver with either verifies.
    let both = signature_header(
        &[
            Secret::parse(secret).unwrap(),
            Secret::parse(other).unwrap(),
        ],
        id,
        ts,
        body.as_bytes(),
    );
    assert_eq!(
        python_verifies(other, id, ts, &both, body.as_bytes()),
        Some(true)
    );
}
