//! The `search` tool and `verity index` end to end, on the Python 3.11 documentation
//! (Debian's python3.11-doc, installed by scripts/install-test-deps.sh) and on a small
//! corpus written here for the incremental-rebuild cases.

use std::{path::Path, process::Command};

use serde_json::{json, Value};

use super::common::{python, repo, verity, write_file};

const PYDOCS: &str = "/usr/share/doc/python3.11/html";

fn verity_data(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(verity())
        .args(args)
        .env("VERITY_DATA_DIR", data)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn search(data: &Path, args: Value) -> Value {
    let out = verity_data(
        data,
        &["tools", "call", "search", &args.to_string(), "--json"],
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn pages(v: &Value) -> Vec<String> {
    v["result"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            h["id"]
                .as_str()
                .unwrap_or_default()
                .split('#')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn python_docs_known_answers_in_the_top_3() {
    assert!(
        Path::new(PYDOCS).join("library").is_dir(),
        "{PYDOCS} missing: run scripts/install-test-deps.sh"
    );
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let out = verity_data(data.path(), &["index", "build", PYDOCS]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("files indexed"), "{err}");
    let cases: &[(&str, &[&str])] = &[
        (
            "itertools groupby consecutive keys",
            &["library/itertools.html"],
        ),
        ("json dumps indent", &["library/json.html"]),
        (
            "regular expression named group",
            &["library/re.html", "howto/regex.html"],
        ),
        (
            "dataclass frozen default_factory",
            &["library/dataclasses.html"],
        ),
        (
            "asyncio gather tasks concurrently",
            &["library/asyncio-task.html"],
        ),
        (
            "subprocess run capture_output",
            &["library/subprocess.html"],
        ),
        (
            "collections Counter most_common",
            &["library/collections.html"],
        ),
        ("functools lru_cache maxsize", &["library/functools.html"]),
        (
            "argparse add_argument nargs",
            &["library/argparse.html", "howto/argparse.html"],
        ),
        ("datetime strftime format codes", &["library/datetime.html"]),
        (
            "sqlite3 executemany placeholders",
            &["library/sqlite3.html"],
        ),
    ];
    let mut misses = Vec::new();
    for (q, want) in cases {
        let got = pages(&search(data.path(), json!({"query": q, "k": 3})));
        if !got.iter().any(|p| want.contains(&p.as_str())) {
            misses.push(format!("{q:?}: top 3 = {got:?}, wanted one of {want:?}"));
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));

    // The result shape: highlights, ids with anchors, stable ranks.
    let v = search(data.path(), json!({"query": "itertools groupby", "k": 5}));
    let hits = v["result"]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(hits.len(), 5);
    assert!(
        hits[0]["snippet"]
            .as_str()
            .unwrap_or_default()
            .contains("**groupby**"),
        "{}",
        hits[0]
    );
    assert!(hits[0]["id"].as_str().unwrap_or_default().contains('#'));
    assert_eq!(
        hits.iter()
            .map(|h| h["rank"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        search(data.path(), json!({"query": "itertools groupby", "k": 5}))["result"],
        v["result"],
        "same query, same answer"
    );

    // Query text is words, not query syntax.
    for q in [
        "\"unbalanced",
        "title:json",
        "(groupby",
        "json AND OR NOT",
        "a:b:c (((",
    ] {
        let v = search(data.path(), json!({"query": q}));
        assert_eq!(v["is_error"], false, "{q}: {v}");
    }
    let v = search(data.path(), json!({"query": "   "}));
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("no searchable words"),
        "{v}"
    );
    let v = search(data.path(), json!({"query": "x".repeat(2000)}));
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("the limit is 1000"),
        "{v}"
    );
    let v = search(data.path(), json!({"query": "json", "k": 99}));
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("k must be between 1 and 20"),
        "{v}"
    );
}

#[test]
fn incremental_rebuild_list_rm_and_clear_errors() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_file(
        src.path(),
        "a.md",
        "# Alpha\nThe zebra crossing is striped.\n",
    );
    write_file(src.path(), "b.txt", "Bravo\nA walrus sleeps on the ice.\n");
    write_file(src.path(), "c.jsonl", "{\"id\": \"c1\", \"title\": \"Charlie\", \"text\": \"the quokka smiles\", \"url\": \"https://example.org/c1\"}\n");
    let build = |data: &Path| {
        let out = verity_data(
            data,
            &[
                "index",
                "build",
                src.path().to_str().unwrap_or_default(),
                "--name",
                "small",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = build(data.path());
    assert!(
        first.contains("3 files indexed") && first.contains("0 unchanged"),
        "{first}"
    );
    let v = search(data.path(), json!({"query": "quokka", "index": "small"}));
    assert_eq!(
        v["result"]["results"][0]["url"], "https://example.org/c1",
        "{v}"
    );

    // Touch nothing: nothing is re-read.
    let again = build(data.path());
    assert!(
        again.contains("0 files indexed") && again.contains("3 unchanged"),
        "{again}"
    );

    // Change one, delete one, add one.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_file(src.path(), "a.md", "# Alpha\nThe okapi is shy.\n");
    std::fs::remove_file(src.path().join("b.txt")).unwrap_or_else(|e| panic!("{e}"));
    write_file(src.path(), "d.html", "<html><head><title>Delta</title></head><body><h1>Delta</h1><p>A narwhal tusk.</p></body></html>");
    let third = build(data.path());
    assert!(
        third.contains("2 files indexed")
            && third.contains("1 unchanged")
            && third.contains("1 removed"),
        "{third}"
    );
    assert!(pages(&search(
        data.path(),
        json!({"query": "zebra", "index": "small"})
    ))
    .is_empty());
    assert!(pages(&search(
        data.path(),
        json!({"query": "walrus", "index": "small"})
    ))
    .is_empty());
    assert_eq!(
        pages(&search(
            data.path(),
            json!({"query": "okapi", "index": "small"})
        )),
        ["a.md"]
    );
    assert_eq!(
        pages(&search(
            data.path(),
            json!({"query": "narwhal", "index": "small"})
        )),
        ["d.html"]
    );

    let out = verity_data(data.path(), &["index", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.starts_with("small") && list.contains("3 files"),
        "{list}"
    );

    // Missing index: the error says how to build it.
    let v = search(data.path(), json!({"query": "x", "index": "nope"}));
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("verity index build PATH --name nope"),
        "{v}"
    );
    let v = search(data.path(), json!({"query": "x", "index": "../etc"}));
    assert_eq!(v["is_error"], true);

    // Corrupt index: the error says how to rebuild it.
    std::fs::write(data.path().join("indexes/small/meta.json"), "garbage")
        .unwrap_or_else(|e| panic!("{e}"));
    let v = search(data.path(), json!({"query": "okapi", "index": "small"}));
    assert!(
        v["text"]
            .as_str()
            .unwrap_or_default()
            .contains("verity index rm small"),
        "{v}"
    );
    let out = verity_data(data.path(), &["index", "rm", "small"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&verity_data(data.path(), &["index", "list"]).stdout)
            .contains("no indexes")
    );
}

#[test]
fn search_over_mcp_is_read_only_and_works() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write_file(
        src.path(),
        "notes.md",
        "# Notes\nThe capybara is the largest rodent.\n",
    );
    let out = verity_data(
        data.path(),
        &["index", "build", src.path().to_str().unwrap_or_default()],
    );
    assert!(out.status.success());
    let v = verity();
    let calls = json!([["search", {"query": "largest rodent"}]]).to_string();
    let out = Command::new(python())
        .arg(repo().join("tests/clients/mcp_client.py"))
        .args([
            "--calls",
            &calls,
            "--stdio",
            v.to_str().unwrap_or_default(),
            "serve",
        ])
        .env("VERITY_DATA_DIR", data.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let report: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let tool = report["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|t| t["name"] == "search");
    let tool = tool.unwrap_or_else(|| panic!("search not listed: {report}"));
    assert_eq!(tool["annotations"]["readOnlyHint"], true);
    assert_eq!(tool["annotations"]["openWorldHint"], false);
    let hit = &report["calls"][0]["structured"]["results"][0];
    assert_eq!(hit["id"], "notes.md#notes", "{report}");
    assert!(
        hit["snippet"]
            .as_str()
            .unwrap_or_default()
            .contains("**largest**"),
        "{hit}"
    );
}

/// Byte flips across every file of an index: every search
/// either answers or fails naming the index and how to rebuild it — never a panic (exit
/// 101) or a hang.
#[test]
fn corrupt_index_files_are_errors_that_name_the_index() {
    let data = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let src = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (i, word) in ["zebra", "walrus", "quokka", "ibis", "okapi"]
        .iter()
        .enumerate()
    {
        write_file(
            src.path(),
            &format!("{i}.md"),
            &format!("# Page {i}\nThe {word} is here, with some words around the {word}.\n"),
        );
    }
    let build = || {
        verity_data(
            data.path(),
            &[
                "index",
                "build",
                src.path().to_str().unwrap_or_default(),
                "--name",
                "fz",
            ],
        )
    };
    let out = build();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = data.path().join("indexes").join("fz");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p.ends_with("verity-manifest.json")
                && !p.ends_with(".tantivy-meta.lock")
        })
        .collect();
    assert!(files.len() >= 5, "{files:?}");
    let query = json!({"query": "walrus", "index": "fz"}).to_string();
    let (mut answered, mut refused) = (0, 0);
    for file in &files {
        let pristine = std::fs::read(file).unwrap_or_else(|e| panic!("{e}"));
        if pristine.is_empty() {
            continue;
        }
        // A dozen places per file (before checksums were verified on open, 44 of 641
        // such flips made tantivy panic: exit 101).
        let step = (pristine.len() / 12).max(1);
        for at in (0..pristine.len()).step_by(step) {
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x5a;
            std::fs::write(file, &bytes).unwrap_or_else(|e| panic!("{e}"));
            let out = verity_data(data.path(), &["tools", "call", "search", &query]);
            let err = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => answered += 1,
                Some(1) => {
                    assert!(
                        err.contains("'fz'") && err.contains("verity index build"),
                        "{} byte {at}: {err}",
                        file.display()
                    );
                    refused += 1;
                }
                other => panic!("{} byte {at}: exit {other:?}: {err}", file.display()),
            }
            assert!(
                !err.contains("panicked"),
                "{} byte {at}: {err}",
                file.display()
            );
        }
        std::fs::write(file, &pristine).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(refused > 0, "no flip was detected ({answered} answered)");
    // Updating a damaged index is refused the same way (tantivy would panic in the merge).
    let term = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "term"))
        .unwrap_or_else(|| panic!("no .term file in {files:?}"));
    let pristine = std::fs::read(term).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = pristine.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(term, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let out = build();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("'fz'") && err.contains("verity index rm"),
        "{err}"
    );
    std::fs::write(term, &pristine).unwrap_or_else(|e| panic!("{e}"));
    // Restored: it answers again.
    let v = search(data.path(), json!({"query": "walrus", "index": "fz"}));
    assert_eq!(v["result"]["results"][0]["title"], "Page 1", "{v}");
}
