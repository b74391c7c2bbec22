//! Reads detector definitions from a `--detectors DIR` directory: the file I/O edge of
//! `detect::definition`, which only parses text.

use std::path::Path;

use crate::detect::definition::{collect_checked, parse_definition, with_builtins};
use crate::detect::{DefinitionErrors, DetectorDef};

/// Definitions from `*.toml` files of a directory, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<DetectorDef>, DefinitionErrors> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DefinitionErrors(vec![format!("{}: {e}", dir.display())]))?;
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let origin = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_definition(&origin, &text) {
                Ok(def) => defs.push(def),
                Err(errs) => errors.extend(errs),
            },
            Err(e) => errors.push(format!("{origin}: {e}")),
        }
    }
    collect_checked(defs, errors)
}

/// The enabled built-in definitions, with `dir`'s added or replacing them by id.
pub fn load(dir: Option<&Path>) -> Result<Vec<DetectorDef>, DefinitionErrors> {
    with_builtins(dir.map(load_dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;

    #[test]
    fn a_directory_overrides_and_disables_builtins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("scanner.toml"),
            "id = \"scanner-ip\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\nenabled = false\n[params]\nstatuses = [404]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bf.toml"),
            "id = \"brute-force-ip\"\nkind = \"brute_force\"\nentity = \"ip\"\nseverity = \"critical\"\n[params]\nstatuses = [401]\npaths = [\"/login\"]\nmin_count = 3\n",
        )
        .unwrap();
        let defs = load(Some(dir.path())).unwrap();
        let ids: Vec<_> = defs.iter().map(|d| d.id.as_str()).collect();
        assert!(!ids.contains(&"scanner-ip"), "{ids:?}");
        let bf = defs.iter().find(|d| d.id == "brute-force-ip").unwrap();
        assert_eq!(bf.severity, Severity::Critical);
    }

    #[test]
    fn only_toml_files_are_read_and_every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a definition").unwrap();
        std::fs::write(dir.path().join("b.toml"), "id = \"b\"\nkind = \"nope\"\n").unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "id = \"a\"\nkind = \"scanner\"\nentity = \"ip\"\nseverity = \"low\"\n[params]\nstatuses = [404]\n",
        )
        .unwrap();
        let errors = load_dir(dir.path()).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert!(errors.0[0].contains("b.toml"), "{errors}");
        std::fs::remove_file(dir.path().join("b.toml")).unwrap();
        let defs = load_dir(dir.path()).unwrap();
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].id, "a");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let errors = load(Some(&missing)).unwrap_err();
        assert!(
            errors.0[0].starts_with(&missing.display().to_string()),
            "{errors}"
        );
    }
}
