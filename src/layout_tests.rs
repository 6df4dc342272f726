//! The layout's rule, checked on the source: arrows between the crate's top-level modules run one
//! way, down the layers below, with no cycle, and none of the arrows `LAYOUT` in `lib.rs` forbids.

use std::collections::{BTreeMap, BTreeSet};

/// Each top-level module and its layer: a module may import its own layer and those below.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("config", 1),
    ("metrics", 1),
    ("telemetry", 1),
    ("shutdown", 1),
    ("redis_conn", 1),
    ("store", 2),
    ("queue", 2),
    ("ticker", 2),
    ("accounts", 3),
    ("bridge", 3),
    ("explore", 3),
    ("load", 3),
    ("manual", 3),
    ("scheduler", 3),
    ("sim", 3),
    ("status", 3),
    ("sweep", 3),
    ("worker", 4),
    ("admin", 4),
    ("dev", 5),
    ("bench", 5),
];

/// Arrows inside a layer that must not exist either.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    ("store", "queue", "SQL knows nothing of Redis"),
    ("store", "ticker", "SQL knows nothing of the history API"),
    ("ticker", "store", "the history API writes nothing"),
    ("sim", "ticker", "the simulator is an outside system"),
    ("sim", "store", "the simulator is an outside system"),
    ("sim", "queue", "the simulator is an outside system"),
    ("bridge", "store", "the bridge only turns events into jobs"),
    ("admin", "scheduler", "the admin server pushes through the queue"),
];

/// The top-level modules each top-level module names (`crate::x`), from its files.
fn arrows() -> BTreeMap<String, BTreeSet<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap();
            let top =
                rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            if matches!(top.as_str(), "lib" | "bin" | "layout_tests") {
                continue;
            }
            assert!(known.contains(top.as_str()), "module {top} has no layer: add it to LAYERS");
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            let mut named = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `use crate::{a::x, b}`: every name at the group's top level.
                    let mut depth = 0;
                    let mut word = String::new();
                    let mut first = true;
                    for c in group.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => first = true,
                            c if (c.is_alphanumeric() || c == '_') && depth == 0 && first => word.push(c),
                            _ => {
                                if !word.is_empty() {
                                    named.insert(std::mem::take(&mut word));
                                    first = false;
                                }
                            }
                        }
                    }
                    if !word.is_empty() {
                        named.insert(word);
                    }
                } else {
                    named.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
                }
            }
            let entry = out.entry(top.clone()).or_default();
            entry.extend(named.into_iter().filter(|n| *n != top && known.contains(n.as_str())));
        }
    }
    out
}

#[test]
fn arrows_between_top_level_modules_run_down_the_layers_only() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let arrows = arrows();
    let mut wrong = Vec::new();
    for (from, tos) in &arrows {
        for to in tos {
            if layer[to.as_str()] > layer[from.as_str()] {
                wrong.push(format!("{from} (layer {}) -> {to} (layer {})", layer[from.as_str()], layer[to.as_str()]));
            }
            if let Some((.., why)) = FORBIDDEN.iter().find(|(f, t, _)| f == from && t == to) {
                wrong.push(format!("{from} -> {to}: {why}"));
            }
        }
    }
    assert!(wrong.is_empty(), "arrows against the layout:\n{}", wrong.join("\n"));
    assert!(arrows.get("domain").is_none_or(|t| t.is_empty()), "domain imports {:?}", arrows["domain"]);
}

#[test]
fn no_two_top_level_modules_import_each_other_through_any_path() {
    let arrows = arrows();
    for start in arrows.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = arrows[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert_ne!(m, start, "{start} reaches itself through its imports");
            if seen.insert(m) {
                todo.extend(arrows.get(m).into_iter().flatten());
            }
        }
    }
}
