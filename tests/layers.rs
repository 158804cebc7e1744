//! The layer rule, kept: each top-level module of the library may use only the modules below it
//! (ARCHITECTURE.md, "Rules"). Read from the source: every `crate::NAME` a module's code names
//! (comments and `#[cfg(test)]` modules left out) must be in a layer below its own. Two modules
//! in one layer may not use each other: the sources (`capture`) and the outputs (`sink`) are
//! side by side, and neither may reach the other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first.
const LAYERS: &[&[&str]] = &[
    &["time", "names"],
    &["model", "link"],
    &["flow"],
    &["decode"],
    &["layer"],
    &["mqtt"],
    &["session"],
    &["tracker"],
    // Sources hand frames and streams to an intake (the pipeline implements it); outputs
    // consume events and records. Neither uses the other.
    &["capture", "sink"],
    &["pipeline", "synth", "sessions_query"],
    &["output", "server"],
    &["app", "live", "probe"],
    &["top"], // the terminal view drives an analysis (app) or reads an agent over HTTP
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` modules (from the
/// attribute to the end of the module, by brace depth).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") && lines.peek().is_some_and(|n| n.trim_start().starts_with("mod ")) {
            let mut depth = 0i32;
            let mut opened = false;
            for l in lines.by_ref() {
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                opened |= l.contains('{');
                if opened && depth <= 0 {
                    break;
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" // ").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names (`crate::NAME`).
fn used(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        names.insert(name);
    }
    names
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_string();
        if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue; // the crate root and the binary sit above everything
        }
        let own = layer_of(&module).unwrap_or_else(|| panic!("{module} is in no layer: add it to LAYERS"));
        let text = std::fs::read_to_string(&file).unwrap();
        for name in used(&code(&text)) {
            if name == module {
                continue;
            }
            match layer_of(&name) {
                Some(l) if l < own => {}
                Some(_) => broken.push(format!("{}: {module} uses crate::{name}", rel.display())),
                None => broken.push(format!("{}: crate::{name} is in no layer", rel.display())),
            }
        }
        checked += 1;
    }
    assert!(checked > 50, "only {checked} files read");
    assert!(broken.is_empty(), "arrows that run back up or sideways:\n{}", broken.join("\n"));
}

/// The reader of the rule sees what it must: a use in code counts, one in a comment or a
/// test module does not.
#[test]
fn the_reader_sees_code_and_skips_comments_and_tests() {
    let text = "use crate::flow::Side;\n// crate::app in a comment\nfn f() { crate::time::x(); } // crate::live\n\
                #[cfg(test)]\nmod tests {\n    use crate::sink::Sink;\n    fn g() {\n    }\n}\nfn h() { crate::decode::y(); }\n";
    let names: Vec<String> = used(&code(text)).into_iter().collect();
    assert_eq!(names, ["decode", "flow", "time"]);
}
