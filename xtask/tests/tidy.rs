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

/// The text before a file's `#[cfg(test)] mod` (its tests, last by convention): what
/// ships. A `#[cfg(test)]` on a single item does not end it.
fn shipped(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod ").map_or(text, |i| &text[..i])
}

/// The file with whitespace removed: `use super::{\n bench::X }` reads `usesuper::{bench::X}`.
fn squeezed(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether squeezed code names module `name` as a path segment after `prefix`, directly
/// (`super::bench::`) or inside a use tree (`super::{args,bench::X}`).
fn names_module(code: &str, prefix: &str, name: &str) -> bool {
    code.match_indices(prefix).any(|(at, _)| {
        let rest = &code[at + prefix.len()..];
        if let Some(tree) = rest.strip_prefix('{') {
            let tree = &tree[..tree.find(';').unwrap_or(tree.len())];
            tree.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .any(|seg| seg == name || seg.starts_with(&format!("{name}::")))
        } else {
            rest.starts_with(&format!("{name}::")) || rest.starts_with(&format!("{name};"))
        }
    })
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
        let text = read(&path);
        for word in ["Command::new", "xshell::", "use duct"] {
            if shipped(&text).contains(word) {
                violations.push(format!("{}: {word}", path.display()));
            }
        }
    }
    report(
        "only xtask/src/process.rs creates std::process::Commands",
        violations,
    );
}

#[test]
fn connections_to_servers_are_opened_where_they_can_speak_tls() {
    // bench-core/src/transport.rs opens the generator's connections (plain or TLS), and
    // bench-core/src/client.rs the control plane's through the `redis` crate (given the
    // same TLS material by transport.rs); the selfbench floor client is plain TCP by design
    // (the kernel's cost, nothing more); the generator's runtime makes the socket that
    // transport.rs's `Wire` speaks TLS over.
    let tcp = [
        Path::new("bench-core/src/transport.rs"),
        Path::new("bench-core/src/loadgen/floor.rs"),
        Path::new("bench-core/src/loadgen/runtime/socket.rs"),
    ];
    let redis = [
        Path::new("bench-core/src/client.rs"),
        Path::new("bench-core/src/transport.rs"),
    ];
    let files: Vec<PathBuf> = rust_files("xtask/src")
        .into_iter()
        .chain(rust_files("bench-core/src"))
        .collect();
    let mut violations: Vec<String> = files
        .iter()
        .filter(|p| !tcp.contains(&p.as_path()))
        .filter(|p| shipped(&read(p)).contains("TcpStream::connect"))
        .map(|p| format!("{}: TcpStream::connect", p.display()))
        .collect();
    violations.extend(
        files
            .iter()
            .filter(|p| !redis.contains(&p.as_path()))
            .filter(|p| shipped(&read(p)).contains("redis::"))
            .map(|p| format!("{}: the redis crate", p.display())),
    );
    report(
        "connections open through bench_core::transport (Stream, Wire) or bench_core::client \
         (the redis crate), which speak TLS when asked",
        violations,
    );
}

#[test]
fn servers_start_through_a_host() {
    let violations = rust_files("xtask/src")
        .into_iter()
        .filter(|p| p != Path::new("xtask/src/host/local.rs"))
        // The agent is this machine's side of another host: it starts them there.
        .filter(|p| p != Path::new("xtask/src/host/agent.rs"))
        .filter(|p| squeezed(shipped(&read(p))).contains("instances::start("))
        .map(|p| format!("{}: instances::start", p.display()))
        .collect();
    report(
        "servers start through a Host (a topology, or Host::start_servers), not instances::start",
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
    let subcommands: Vec<String> = rust_files("xtask/src/cli")
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_string())
        .filter(|n| n != "mod")
        .collect();
    for path in rust_files("xtask/src") {
        let relative = path.strip_prefix("xtask/src").unwrap();
        let code = squeezed(shipped(&read(&path)));
        if relative.starts_with("cli") {
            if relative == Path::new("cli/mod.rs") {
                continue;
            }
            // A subcommand (and the shared flags) may use the shared flags, never a sibling.
            let me = relative.file_stem().unwrap().to_str().unwrap();
            for sibling in subcommands.iter().filter(|s| *s != me && *s != "args") {
                if names_module(&code, "super::", sibling)
                    || names_module(&code, "crate::cli::", sibling)
                {
                    violations.push(format!("{}: reaches into cli/{sibling}.rs", path.display()));
                }
            }
            if me == "args" && names_module(&code, "super::", "args") {
                violations.push(format!("{}: names itself through super", path.display()));
            }
        } else if relative != Path::new("main.rs") && relative != Path::new("lib.rs") {
            let below = names_module(&code, "crate::", "cli")
                || names_module(&code, "super::", "cli")
                || code.contains("xtask::cli");
            if below {
                violations.push(format!("{}: below the CLI, imports it", path.display()));
            }
        }
    }
    report(
        "nothing below the CLI imports it; no subcommand imports another",
        violations,
    );
}

/// xtask's layers, top down: a module may use the ones below its own layer, never one
/// beside or above it (ARCHITECTURE.md draws the same table).
const LAYERS: [&[&str]; 15] = [
    &["cli"],
    &["runner", "bench", "compare", "capacity"],
    &["plan", "views", "publish"],
    &["queue"],
    &["events"],
    &["flamegraph", "selfbench"],
    &["counts"],
    &["suites"],
    &["case"],
    &["topology"],
    // A host is given builds to run (and builds one from its source where ours cannot run).
    &["host"],
    &["valkey", "valkey_benchmark"],
    &["instances", "rundir"],
    &["process", "project", "tls", "untrusted"],
    &["error"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The crate modules squeezed code names through `crate::`, directly or in use trees.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(tree) = rest.strip_prefix('{') {
            let tree = &tree[..tree.find(';').unwrap_or(tree.len())];
            // Only the tree's top level names crate modules: `{a,b::{c,d}}` names a and b.
            let mut depth = 0;
            let mut word = String::new();
            let mut top = true;
            for c in tree.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 && (c.is_alphanumeric() || c == '_') && top {
                    word.push(c);
                } else if depth == 0 && c == ',' {
                    found.insert(std::mem::take(&mut word));
                    top = true;
                } else if !word.is_empty() {
                    found.insert(std::mem::take(&mut word));
                    top = false;
                }
            }
            if !word.is_empty() {
                found.insert(word);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found.remove("");
    found
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let mut violations = Vec::new();
    for path in rust_files("xtask/src") {
        let relative = path.strip_prefix("xtask/src").unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs");
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(mine) = layer_of(module) else {
            violations.push(format!(
                "{}: module `{module}` is in no layer of tidy.rs's LAYERS",
                path.display()
            ));
            continue;
        };
        for used in crate_modules(&squeezed(shipped(&read(&path)))) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(theirs) if theirs > mine => {}
                Some(_) => violations.push(format!(
                    "{}: `{module}` uses `{used}`, which is not below it",
                    path.display()
                )),
                None => violations.push(format!(
                    "{}: uses `crate::{used}`, which is in no layer",
                    path.display()
                )),
            }
        }
    }
    report(
        "each xtask module uses only the layers below its own (LAYERS)",
        violations,
    );
}

#[test]
fn the_layer_check_reads_use_trees() {
    let code = squeezed(
        "use crate::{host, run::{CaseContext, preload::Preload}};\nlet x = crate::rundir::timestamp();",
    );
    let got: Vec<String> = crate_modules(&code).into_iter().collect();
    assert_eq!(got, ["host", "run", "rundir"]);
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

/// The text of ARCHITECTURE.md's code map section for `heading` (`### bench-core`, ...).
fn code_map_section(heading: &str) -> String {
    let text = read(Path::new("ARCHITECTURE.md"));
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("ARCHITECTURE.md has no {heading:?} section"));
    let rest = &text[start + heading.len()..];
    let end = rest
        .find("\n### ")
        .or_else(|| rest.find("\n## "))
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The file names a text mentions: `a/b.rs`, and `dir/{x,y}.rs` expanded.
fn named_in(text: &str) -> BTreeSet<String> {
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
    let mut violations = Vec::new();
    for (src, heading) in [
        ("xtask/src", "### xtask"),
        ("bench-core/src", "### bench-core"),
    ] {
        // Each crate's files are looked for in its own section only.
        let named = named_in(&code_map_section(heading));
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
        let relative = path.to_str().unwrap();
        if lines > 600 && !section.contains(&format!("`{relative}`")) {
            violations.push(format!("{relative}: {lines} lines"));
        }
    }
    report(
        "a file over 600 lines is named by its workspace path, with why, under ARCHITECTURE.md's \
         \"Files over 600 lines\"",
        violations,
    );
}

/// The user documents: the front door, the manual, the code map, the contributing guide.
fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CONTRIBUTING.md",
        "results/README.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for entry in fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path.strip_prefix(root()).unwrap().to_path_buf());
        }
    }
    docs.sort();
    docs
}

/// A heading's anchor as GitHub makes it: lowercase, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_documents_resolves() {
    let mut violations = Vec::new();
    let mut anchored = 0;
    for doc in documents() {
        let text = read(&doc);
        for line in prose(&text) {
            for (at, _) in line.match_indices("](") {
                let rest = &line[at + 2..];
                let Some(end) = rest.find(')') else { continue };
                let target = &rest[..end];
                if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                    continue;
                }
                let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    doc.clone()
                } else {
                    doc.parent().unwrap().join(path)
                };
                let resolved = root().join(&file);
                if !resolved.exists() {
                    violations.push(format!(
                        "{}: {target} (no {})",
                        doc.display(),
                        file.display()
                    ));
                    continue;
                }
                if !fragment.is_empty() && resolved.is_file() {
                    let anchors: BTreeSet<String> = prose(&fs::read_to_string(&resolved).unwrap())
                        .into_iter()
                        .filter(|l| l.starts_with('#'))
                        .map(anchor)
                        .collect();
                    anchored += 1;
                    if !anchors.contains(fragment) {
                        violations.push(format!("{}: {target} (no such heading)", doc.display()));
                    }
                }
            }
        }
    }
    assert!(anchored >= 10, "only {anchored} links to headings found");
    report(
        "every relative link in README.md, docs/, ARCHITECTURE.md resolves",
        violations,
    );
}

#[test]
fn the_readme_names_every_command_and_exit_code() {
    let readme = read(Path::new("README.md"));
    let main = read(Path::new("xtask/src/main.rs"));
    let mut violations = Vec::new();
    // `Command::Bench(cmd) => ...`: the subcommands main dispatches.
    for line in main.lines() {
        let Some(rest) = line.trim().strip_prefix("Command::") else {
            continue;
        };
        let variant: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
        if variant.is_empty() {
            continue;
        }
        let command = format!("`cargo xtask {}`", variant.to_lowercase());
        if !readme.contains(&command) {
            violations.push(format!("README.md does not name {command}"));
        }
    }
    for code in ["0", "1", "2", "3", "130", "141"] {
        if !readme
            .lines()
            .any(|l| l.starts_with(&format!("| {code} |")))
        {
            violations.push(format!("README.md's exit codes lack {code}"));
        }
    }
    report("README.md names every command and exit code", violations);
}
