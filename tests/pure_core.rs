//! The pure core (`parse`, `window`, `detect`, and the pipeline's pure files) does no
//! I/O and reads no clock: replaying a file and tailing it live must give the same incidents.
//! clippy's `disallowed-methods` catches clock calls; this guard also catches file, network,
//! stdin, environment and async-runtime use, by scanning the sources outside test code.

use std::fs;
use std::path::{Path, PathBuf};

/// Source folders of the pure core, relative to the crate root.
const CORE_DIRS: &[&str] = &["src/parse", "src/window", "src/detect"];
const PURE_PIPELINE_FILES: &[&str] = &[
    "src/pipeline/batch.rs",
    "src/pipeline/source_clock.rs",
    "src/pipeline/offsets.rs",
];

/// Paths (after `use` groups are expanded) the core must not name.
const FORBIDDEN: &[&str] = &[
    "std::fs",
    "File::open",
    "std::net",
    "tokio",
    "std::io::stdin",
    "Instant::now",
    "SystemTime",
    "Utc::now",
    "std::thread::sleep",
    "std::env",
];

/// `std::net` items that are plain values (addresses in a `Request`), not sockets.
const NET_VALUES: &[&str] = &[
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "AddrParseError",
];

/// `(line, token)` for every forbidden token in `source` outside test code: an item under
/// `#[cfg(test)]` is skipped to its end, found by rustfmt's layout (a one-line item, or the
/// `}` at the attribute's indentation).
fn violations(source: &str) -> Vec<(usize, &'static str)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line == "#[cfg(test)]" {
            i = end_of_item(&lines, i) + 1;
            continue;
        }
        if line.starts_with("//") {
            i += 1;
            continue;
        }
        // A `use` may span lines (rustfmt wraps long groups): scan it as one statement.
        let start = i;
        let mut statement = line.to_owned();
        if is_use(line) {
            while !lines[i].contains(';') && i + 1 < lines.len() {
                i += 1;
                statement.push(' ');
                statement.push_str(lines[i].trim());
            }
        }
        for token in forbidden_in(&expand_groups(&statement)) {
            found.push((start + 1, token));
        }
        i += 1;
    }
    found
}

/// The last line of the item that the attribute on line `attr` applies to (the file's last
/// line when its end cannot be found, so unclear test code is never scanned).
fn end_of_item(lines: &[&str], attr: usize) -> usize {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let Some(first) = (attr + 1..lines.len()).find(|&i| {
        let line = lines[i].trim();
        !line.is_empty() && !line.starts_with("#[")
    }) else {
        return lines.len().saturating_sub(1);
    };
    let item = lines[first].trim();
    let opens = item.matches('{').count();
    if item.ends_with(';') || (item.ends_with('}') && opens == item.matches('}').count()) {
        return first;
    }
    (first + 1..lines.len())
        .find(|&i| indent(lines[i]) == indent(lines[attr]) && lines[i].trim().starts_with('}'))
        .unwrap_or(lines.len().saturating_sub(1))
}

fn is_use(line: &str) -> bool {
    line.starts_with("use ") || (line.starts_with("pub") && line.contains(" use "))
}

fn forbidden_in(text: &str) -> Vec<&'static str> {
    FORBIDDEN
        .iter()
        .copied()
        .filter(|&token| {
            text.match_indices(token)
                .any(|(at, _)| token != "std::net" || !names_a_net_value(&text[at + token.len()..]))
        })
        .collect()
}

/// `rest` follows `std::net`: only `::IpAddr`-style address values are allowed.
fn names_a_net_value(rest: &str) -> bool {
    let Some(path) = rest.strip_prefix("::") else {
        return false;
    };
    let name: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    NET_VALUES.contains(&name.as_str())
}

/// `std::{fs, io::{self, stdin}}` → `std::fs std::io::self std::io::stdin`, so a group
/// cannot hide a path from the token search.
fn expand_groups(text: &str) -> String {
    let Some(open) = text.find("::{") else {
        return text.to_owned();
    };
    let prefix_start = text[..open]
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .map_or(0, |p| p + 1);
    let prefix = &text[prefix_start..open];
    let body_start = open + 3;
    let mut depth = 1;
    let mut close = None;
    for (offset, c) in text[body_start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            close = Some(body_start + offset);
            break;
        }
    }
    let Some(close) = close else {
        return text.to_owned();
    };
    let mut items = Vec::new();
    let mut depth = 0;
    let mut item_start = body_start;
    for (offset, c) in text[body_start..close].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[item_start..body_start + offset]);
                item_start = body_start + offset + 1;
            }
            _ => {}
        }
    }
    items.push(&text[item_start..close]);
    let expanded: Vec<String> = items
        .iter()
        .map(|item| item.trim())
        .filter(|item| !item.is_empty())
        .map(|item| expand_groups(&format!("{prefix}::{item}")))
        .collect();
    format!(
        "{}{}{}",
        &text[..prefix_start],
        expanded.join(" "),
        expand_groups(&text[close + 1..])
    )
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Files declared as `#[cfg(test)] mod name;` by `file`: test code as a whole.
fn test_module_files(file: &Path, source: &str) -> Vec<PathBuf> {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = match stem {
        "mod" | "lib" => file.parent().expect("parent").to_path_buf(),
        _ => file.with_extension(""),
    };
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|pair| pair[0] == "#[cfg(test)]")
        .filter_map(|pair| {
            let name = pair[1].strip_prefix("mod ")?.strip_suffix(';')?;
            Some([
                dir.join(format!("{name}.rs")),
                dir.join(name).join("mod.rs"),
            ])
        })
        .flatten()
        .collect()
}

fn core_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in CORE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    // The pipeline's pure pieces: decoding a chunk, per-source event time, offsets.
    files.extend(PURE_PIPELINE_FILES.iter().map(|f| root.join(f)));
    files
}

#[test]
fn the_pure_core_does_no_io_and_reads_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = core_files(root);
    assert!(files.len() > 10, "found only {files:?}");
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|path| {
            let source =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, source)
        })
        .collect();
    let test_only: Vec<PathBuf> = sources
        .iter()
        .flat_map(|(path, source)| test_module_files(path, source))
        .collect();
    let mut problems = Vec::new();
    for (path, source) in &sources {
        if test_only.contains(path) {
            continue;
        }
        for (line, token) in violations(source) {
            let shown = path.strip_prefix(root).unwrap_or(path).display();
            problems.push(format!("{shown}:{line}: `{token}`"));
        }
    }
    assert!(
        problems.is_empty(),
        "the pure core must do no I/O and read no clock; move this to an edge module:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_guard_finds_forbidden_tokens_outside_tests_only() {
    let source = "\
use std::net::IpAddr;
use std::net::{Ipv4Addr, TcpStream};
// std::fs in a comment is fine
fn read() -> String {
    std::fs::read_to_string(\"x\").unwrap()
}
#[cfg(test)]
mod helpers;
fn late() { let _ = std::env::var(\"X\"); }
use std::{
    collections::HashMap,
    thread::sleep,
};
#[cfg(test)]
mod tests {
    fn t() {
        std::fs::read(\"x\").unwrap();
    }
}
#[cfg(test)]
#[allow(dead_code)]
fn one_line() { std::env::args(); }
const AFTER_TESTS: &str = \"tokio\";
";
    assert_eq!(
        violations(source),
        [
            (2, "std::net"),
            (5, "std::fs"),
            (9, "std::env"),
            (10, "std::thread::sleep"),
            (23, "tokio")
        ]
    );
    assert_eq!(violations("use std::{fs, io};"), [(1, "std::fs")]);
    assert_eq!(violations("use std::net;"), [(1, "std::net")]);
    assert!(violations("use std::net::{IpAddr, Ipv6Addr};").is_empty());
}

#[test]
fn test_module_files_are_recognised() {
    let source = "mod engine;\n#[cfg(test)]\nmod tests;\n";
    assert_eq!(
        test_module_files(Path::new("src/detect/mod.rs"), source),
        [
            PathBuf::from("src/detect/tests.rs"),
            PathBuf::from("src/detect/tests/mod.rs")
        ]
    );
    assert_eq!(
        test_module_files(Path::new("src/parse/time.rs"), source)[0],
        PathBuf::from("src/parse/time/tests.rs")
    );
}
