//! The README's commands run as written: every `sh` block not marked `illustrative` is run
//! with bash, with `/tmp/gw`, `gatewatch.db` and port 9400 moved into a temporary
//! directory (so runs never collide), `cargo run --release --` and `cargo build --release`
//! replaced by the binary under test, and `cargo test` left out (it is what runs this).

use std::path::Path;
use std::process::Command;

/// (first line number, text) of each runnable `sh` block.
fn runnable_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in readme.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some((n + 1, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), line) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn adapted(block: &str, tmp: &Path, port: u16) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gatewatch")).parent().unwrap();
    block
        .lines()
        .filter(|line| line.trim() != "cargo test")
        .map(|line| {
            line.replace(
                "cargo build --release && export PATH=$PWD/target/release:$PATH",
                &format!("export PATH={}:$PATH", bin_dir.display()),
            )
            .replace("cargo run --release -- ", "gatewatch ")
            .replace("/tmp/gw", &format!("{}/gw", tmp.display()))
            .replace(
                "sqlite://gatewatch.db",
                &format!("sqlite://{}/gatewatch.db", tmp.display()),
            )
            .replace("9400", &port.to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_runnable_readme_block_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = runnable_blocks(&readme);
    assert!(
        blocks.len() >= 2,
        "the quick start and the daemon walk-through"
    );
    assert!(
        readme.lines().nth(2) == Some("```sh"),
        "README opens with its two commands"
    );
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_gatewatch")).parent().unwrap();
    for (line, block) in blocks {
        let tmp = tempfile::tempdir().unwrap();
        let script = adapted(&block, tmp.path(), free_port());
        let out = Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(root)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env_remove("GATEWATCH_DB")
            .env_remove("COLUMNS")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README block at line {line} failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        // What each block is for shows in its output.
        if block.contains("replay testdata/") {
            assert!(
                stdout.contains("TIME (UTC)") && stdout.contains("scanner-ip"),
                "{stdout}"
            );
        }
        if block.contains("gatewatch run") {
            assert!(stdout.contains("gatewatch_lines_read_total"), "{stdout}");
            assert!(
                stdout.contains("TIME (UTC)"),
                "the incidents list: {stdout}"
            );
        }
    }
}
