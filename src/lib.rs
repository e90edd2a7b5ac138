//! souk: a marketplace core in one small binary. See ARCHITECTURE.md for the
//! map of modules and the invariants they keep.

pub mod accounts;
pub mod api;
pub mod app;
pub mod audit;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod escrow;
pub mod heartbeat;
pub mod histogram;
pub mod http;
pub mod ids;
pub mod ledger;
pub mod limits;
pub mod listings;
pub mod logs;
pub mod memo;
pub mod monitor;
pub mod orders;
pub mod store;
pub mod systemd;
pub mod timers;
pub mod util;

/// The layering of ARCHITECTURE.md ("Layers"), held by a scan of the
/// sources: a module may name `crate::X` only for an `X` on its own level or
/// below, or as one of the known exceptions listed there.
#[cfg(test)]
mod layers {
    use std::path::Path;

    /// Each top-level module's level, low to high. The domains are split in
    /// four steps: the ledger; what stands on it; orders; the audit over them.
    const LEVELS: &[(&str, u32)] = &[
        ("error", 10),
        ("util", 10),
        ("clock", 10),
        ("ids", 10),
        ("limits", 10),
        ("heartbeat", 10),
        ("histogram", 10),
        ("memo", 10),
        ("config", 20),
        ("logs", 20),
        ("systemd", 20),
        ("http", 30),
        ("store", 30),
        ("ledger", 40),
        ("accounts", 41),
        ("listings", 41),
        ("escrow", 41),
        ("orders", 42),
        ("audit", 43),
        ("monitor", 50),
        ("cache", 50),
        ("timers", 50),
        ("api", 60),
        ("app", 70),
        ("cli", 70),
    ];

    /// The upward reaches ARCHITECTURE.md names and keeps by design, (from,
    /// to), each with its reason there.
    const EXCEPTIONS: &[(&str, &str)] = &[
        ("accounts", "cache"), // the operator follower clears the caches, in order
        ("config", "api"),     // CORS origins: parsed where they are applied
        ("config", "http"),    // trusted proxies: the same
        ("api", "app"),        // handlers run with the App they belong to
    ];

    fn level(module: &str) -> Option<u32> {
        LEVELS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
    }

    /// `crate::NAME` references in `text`, before its test module.
    fn references(text: &str) -> Vec<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let mut found = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && !found.contains(&name) {
                found.push(name);
            }
        }
        found
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `module: crate::name` for each reference above `module`'s level that
    /// is not in `exceptions`.
    fn upward(exceptions: &[(&str, &str)]) -> Vec<String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut wrong = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            let top = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            if matches!(top.as_str(), "lib" | "main") {
                continue;
            }
            let from = level(&top).unwrap_or_else(|| panic!("module {top} has no level here"));
            let text = std::fs::read_to_string(file).unwrap();
            for name in references(&text) {
                let Some(to) = level(&name) else { continue };
                if to > from && !exceptions.contains(&(top.as_str(), name.as_str())) {
                    wrong.push(format!("{}: crate::{name}", relative.display()));
                }
            }
        }
        wrong
    }

    #[test]
    fn no_module_reaches_above_its_layer_but_the_named_exceptions() {
        let wrong = upward(EXCEPTIONS);
        assert!(wrong.is_empty(), "upward references:\n{}", wrong.join("\n"));
    }

    #[test]
    fn the_scan_sees_upward_references() {
        let text = "use crate::api::respond;\nfn f() { crate::error::Error::NotFound; }\n#[cfg(test)] use crate::app::App;";
        assert_eq!(references(text), ["api", "error"]);
        // Without the exceptions, the known reaches are found.
        let found = upward(&[]);
        assert!(
            found
                .iter()
                .any(|w| w.starts_with("api/") && w.ends_with("crate::app")),
            "{found:?}"
        );
    }
}
