//! Tidy: the layering and house rules ARCHITECTURE.md states, checked on the source text
//! (rust-analyzer's `tidy.rs` is the model). Fast, no build of Valkey, no processes.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every `.rs` file under `dir`, relative to the workspace root, sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), &mut out);
    out.sort();
    out.into_iter()
        .map(|p| p.strip_prefix(root()).unwrap().to_path_buf())
        .collect()
}

fn read(path: &Path) -> String {
    fs::read_to_string(root().join(path)).unwrap()
}

/// The text before a file's `#[cfg(test)]` module: what ships.
fn shipped(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

fn source_dirs() -> Vec<PathBuf> {
    [
        "xtask/src",
        "xtask/tests",
        "bench-core/src",
        "bench-core/tests",
        "tests",
    ]
    .into_iter()
    .flat_map(rust_files)
    .collect()
}

/// Fails with every violation at once, one per line.
fn report(rule: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{rule}:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn every_source_file_says_what_it_is() {
    let violations = source_dirs()
        .into_iter()
        .filter(|p| !read(p).starts_with("//!"))
        .map(|p| format!("{}: the first line is not a `//!` doc comment", p.display()))
        .collect();
    report("every source file starts with a //! line", violations);
}

#[test]
fn only_the_process_module_creates_commands() {
    let mut violations = Vec::new();
    for path in rust_files("xtask/src")
        .into_iter()
        .chain(rust_files("bench-core/src"))
    {
        if path == Path::new("xtask/src/process.rs") {
            continue;
        }
        if shipped(&read(&path)).contains("Command::new") {
            violations.push(format!("{}: Command::new", path.display()));
        }
    }
    report(
        "only xtask/src/process.rs creates std::process::Commands",
        violations,
    );
}

#[test]
fn bench_core_spawns_nothing_and_knows_nothing_of_xtask() {
    let mut violations = Vec::new();
    for path in rust_files("bench-core/src") {
        let text = read(&path);
        let code: Vec<&str> = shipped(&text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for word in [
            "xtask::",
            "std::process::Command",
            "xshell",
            "std::fs",
            "File::open",
        ] {
            if code.iter().any(|l| l.contains(word)) {
                violations.push(format!("{}: {word}", path.display()));
            }
        }
    }
    report(
        "bench-core never spawns, touches files or imports xtask",
        violations,
    );
}

#[test]
fn layers_point_down_to_the_cli_never_up() {
    let mut violations = Vec::new();
    for path in rust_files("xtask/src") {
        let relative = path.strip_prefix("xtask/src").unwrap();
        let text = read(&path);
        if relative.starts_with("cli") {
            let name = relative.file_name().unwrap().to_str().unwrap();
            if ["mod.rs", "args.rs"].contains(&name) {
                continue;
            }
            // A subcommand uses the shared flag groups (`super::X`), never a sibling.
            for (i, line) in text.lines().enumerate() {
                let uses_sibling = line.contains("super::")
                    && line
                        .split("super::")
                        .skip(1)
                        .any(|rest| rest.contains("::") && !rest.starts_with('{'))
                    && !line.trim_start().starts_with("use super::*");
                if uses_sibling || line.contains("crate::cli::") {
                    violations.push(format!(
                        "{}:{}: a subcommand reaches into another: {}",
                        path.display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        } else if relative != Path::new("main.rs") && relative != Path::new("lib.rs") {
            for (i, line) in text.lines().enumerate() {
                if line.contains("crate::cli") || line.contains("xtask::cli") {
                    violations.push(format!(
                        "{}:{}: below the CLI, imports it: {}",
                        path.display(),
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    report(
        "nothing below the CLI imports it; no subcommand imports another",
        violations,
    );
}

#[test]
fn exit_code_errors_live_in_the_error_module() {
    let mut violations = Vec::new();
    for path in rust_files("xtask/src") {
        if path == Path::new("xtask/src/error.rs") {
            continue;
        }
        let text = read(&path);
        for name in [
            "struct UsageError",
            "struct RegressionFound",
            "struct CouldNotRun",
        ] {
            if text.contains(name) {
                violations.push(format!("{}: {name}", path.display()));
            }
        }
    }
    report(
        "errors that map to exit codes live in xtask/src/error.rs",
        violations,
    );
}

/// The file names ARCHITECTURE.md mentions: `a/b.rs`, and `dir/{x,y}.rs` expanded.
fn named_in_architecture() -> BTreeSet<String> {
    let text = read(Path::new("ARCHITECTURE.md"));
    let mut names = BTreeSet::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ')') {
        let word = raw.trim_matches(|c: char| matches!(c, ',' | ':' | ';' | '.' | '*'));
        let Some(stem) = word.strip_suffix(".rs") else {
            continue;
        };
        match (stem.find('{'), stem.find('}')) {
            (Some(open), Some(close)) if close > open => {
                let (dir, inner) = (&stem[..open], &stem[open + 1..close]);
                for part in inner.split(',') {
                    names.insert(format!("{dir}{}.rs", part.trim()));
                }
            }
            _ => {
                names.insert(format!("{stem}.rs"));
            }
        }
    }
    names
}

#[test]
fn every_module_is_in_the_code_map() {
    let named = named_in_architecture();
    let mut violations = Vec::new();
    for src in ["xtask/src", "bench-core/src"] {
        for path in rust_files(src) {
            let relative = path.strip_prefix(src).unwrap();
            // A crate root or a directory's mod.rs is named by its directory's files.
            if relative.ends_with("lib.rs") || relative.ends_with("mod.rs") {
                continue;
            }
            let relative = relative.to_str().unwrap().to_string();
            let file = Path::new(&relative)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let nested = relative.contains('/');
            let found = if nested {
                named.contains(&relative)
            } else {
                named.contains(&file)
            };
            if !found {
                violations.push(format!("{}: not named in ARCHITECTURE.md", path.display()));
            }
        }
    }
    report(
        "every module is named in ARCHITECTURE.md's code map",
        violations,
    );
}

#[test]
fn long_files_are_explained() {
    let architecture = read(Path::new("ARCHITECTURE.md"));
    let section = architecture
        .split("## Files over 600 lines")
        .nth(1)
        .map(|rest| rest.split("\n## ").next().unwrap_or(rest))
        .unwrap_or("");
    let mut violations = Vec::new();
    for path in source_dirs() {
        let lines = read(&path).lines().count();
        let name = path.file_name().unwrap().to_str().unwrap();
        let relative = path.to_str().unwrap();
        if lines > 600 && !(section.contains(relative) || section.contains(name)) {
            violations.push(format!("{relative}: {lines} lines"));
        }
    }
    report(
        "a file over 600 lines is named, with why, under ARCHITECTURE.md's \"Files over 600 \
         lines\"",
        violations,
    );
}
