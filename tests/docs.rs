//! The documentation kept honest: every `unmark` command line in README.md and docs/ is
//! parsed by the real binary's CLI (with `--help` appended, so nothing runs but every
//! subcommand, flag and value the line names is checked), every endpoint named exists in the
//! running server's OpenAPI document (with the method, where one is named before it), and
//! every relative link and anchor resolves.
//!
//! Synopsis lines are read the usual way: `[...]` is optional (checked as present),
//! `[A | B]` checks each alternative, `a|b` takes its first, `...` is dropped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every Markdown file under docs/, and the Python client's README.
fn documents() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read docs")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![
        root().join("README.md"),
        root().join("clients/python/README.md"),
    ];
    walk(&root().join("docs"), &mut out);
    out
}

/// A document's lines, each marked as inside a fenced code block (with its language) or not.
fn lines(text: &str) -> Vec<(Option<String>, &str)> {
    let mut fence: Option<String> = None;
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(info.trim().to_owned()),
            };
            continue;
        }
        out.push((fence.clone(), line));
    }
    out
}

/// Shell-like words: whitespace splits, quotes group (and are removed).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

/// The part of a shell line before a comment, a pipe, a list operator or `&`; a `|` inside
/// a synopsis's brackets separates alternatives, not commands.
fn first_command(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut end = line.len();
    for (i, &(at, c)) in chars.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '[' => depth += 1,
            None if c == ']' => depth = depth.saturating_sub(1),
            None => {
                let prev_space = i == 0 || chars[i - 1].1.is_whitespace();
                let next = chars.get(i + 1).map_or(' ', |&(_, n)| n);
                let stop = (c == '#' && prev_space)
                    || (c == '|' && depth == 0 && prev_space && next.is_whitespace())
                    || (c == ';')
                    || (c == '&' && (next == '&' || next.is_whitespace()) && prev_space)
                    || (c == '>' && prev_space);
                if stop {
                    end = at;
                    break;
                }
            }
        }
    }
    &line[..end]
}

/// The argument lists a synopsis stands for (see the module's doc).
fn variants(tokens: &[String]) -> Vec<Vec<String>> {
    // Split the tokens into plain words and bracket groups of alternatives.
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.starts_with('[') && !t.starts_with("[{") {
            // Collect the group up to its closing bracket, at depth 0.
            let mut depth = 0i32;
            let mut group: Vec<String> = Vec::new();
            loop {
                let tok = &tokens[i];
                depth += tok.matches('[').count() as i32 - tok.matches(']').count() as i32;
                group.push(tok.clone());
                if depth <= 0 || i + 1 == tokens.len() {
                    break;
                }
                i += 1;
            }
            let first = group[0].strip_prefix('[').unwrap_or(&group[0]).to_owned();
            let last_index = group.len() - 1;
            group[0] = first;
            let last = group[last_index].clone();
            group[last_index] = last.strip_suffix(']').unwrap_or(&last).to_owned();
            let alternatives: Vec<Vec<String>> = group
                .split(|t| t == "|")
                .map(|alt| alt.iter().filter(|t| !t.is_empty()).cloned().collect())
                .collect();
            let inner: Vec<Vec<String>> = alternatives.iter().flat_map(|a| variants(a)).collect();
            out = out
                .iter()
                .flat_map(|prefix| {
                    inner.iter().map(move |alt| {
                        let mut v = prefix.clone();
                        v.extend(alt.iter().cloned());
                        v
                    })
                })
                .collect();
        } else if t != "..." && t != "|" {
            let word = t.split('|').next().unwrap_or(t).trim_end_matches("...");
            for v in &mut out {
                v.push(word.to_owned());
            }
        }
        i += 1;
    }
    out
}

/// The unmark command lines of a document: fenced shell lines (joined across `\`) and
/// inline code spans that start with `unmark ` or `scripts/run.sh `.
fn command_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for (fence, line) in lines(text) {
        match fence.as_deref() {
            Some("" | "sh" | "bash" | "console" | "shell") => {
                let line = line.trim();
                let line = line.strip_prefix("$ ").unwrap_or(line);
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head);
                    pending.push(' ');
                    continue;
                }
                pending.push_str(line);
                out.push(std::mem::take(&mut pending));
            }
            Some(_) => {}
            None => {
                for (i, span) in line.split('`').enumerate() {
                    if i % 2 == 1
                        && (span.starts_with("unmark ") || span.starts_with("scripts/run.sh "))
                    {
                        out.push(span.to_owned());
                    }
                }
            }
        }
    }
    out.into_iter()
        .filter_map(|line| {
            let command = first_command(&line);
            let mut w = words(command);
            // Leading variable assignments (`UNMARK_X=1 unmark ...`).
            while w.first().is_some_and(|t| {
                t.split_once('=').is_some_and(|(k, _)| {
                    !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
            }) {
                w.remove(0);
            }
            match w.first().map(String::as_str) {
                Some("unmark" | "scripts/run.sh") => Some(w[1..].join("\u{1}")),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn every_unmark_command_line_in_the_docs_parses() {
    let mut checked = BTreeSet::new();
    let mut failures = Vec::new();
    let mut count = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("read doc");
        for joined in command_lines(&text) {
            let tokens: Vec<String> = joined.split('\u{1}').map(str::to_owned).collect();
            for args in variants(&tokens) {
                if !checked.insert(args.clone()) {
                    continue;
                }
                count += 1;
                // `scripts/run.sh` with no argument (or only `serve`) runs `unmark serve`.
                let args = if args.is_empty() {
                    vec!["serve".to_owned()]
                } else {
                    args
                };
                let out = unmark()
                    .args(&args)
                    .arg("--help")
                    .output()
                    .expect("run unmark");
                if !out.status.success() {
                    failures.push(format!(
                        "{}: unmark {}: {}",
                        doc.strip_prefix(root()).unwrap_or(&doc).display(),
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .next()
                            .unwrap_or("")
                    ));
                }
            }
        }
    }
    assert!(
        count >= 30,
        "only {count} command lines found: is the scan broken?"
    );
    assert!(
        failures.is_empty(),
        "{} of {count} command lines fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Endpoints named in a text: `(METHOD, path)`, the method when one stands right before it.
fn endpoints(text: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "/_-.{}[]<>".contains(c);
    for start in text.match_indices("/api/").map(|(i, _)| i).chain(
        text.match_indices("/metrics").map(|(i, _)| i).filter(|&i| {
            !text[i + 8..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '/')
        }),
    ) {
        // A path begins at the slash: not inside a word or a file path (`iopaint/api.py`).
        let before = text[..start].chars().next_back().unwrap_or(' ');
        if before.is_ascii_alphabetic() || before == '_' || before == '-' || before == '.' {
            continue;
        }
        let path: String = text[start..]
            .chars()
            .take_while(|&c| is_path_char(c))
            .collect();
        let path = path.trim_end_matches(['.', ',', ':']).to_owned();
        let method = text[..start]
            .trim_end_matches([' ', '`'])
            .rsplit(|c: char| !c.is_ascii_alphabetic())
            .next()
            .filter(|w| ["GET", "POST", "DELETE", "PUT", "PATCH"].contains(w))
            .map(str::to_owned);
        out.push((method, path));
    }
    out
}

/// A documented path's forms: `[/{version}]` optional.
fn path_forms(path: &str) -> Vec<String> {
    match (path.find('['), path.find(']')) {
        (Some(a), Some(b)) if a < b => {
            let (head, rest) = (&path[..a], &path[b + 1..]);
            let inner = &path[a + 1..b];
            let mut out = path_forms(&format!("{head}{rest}"));
            out.extend(path_forms(&format!("{head}{inner}{rest}")));
            out
        }
        _ => vec![path.to_owned()],
    }
}

fn matches_template(path: &str, template: &str) -> bool {
    let a: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let b: Vec<&str> = template.split('/').collect();
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || (y.starts_with('{') && !x.is_empty()))
}

#[tokio::test]
async fn every_endpoint_in_the_docs_is_in_the_openapi_document() {
    let server = Server::start(&[]);
    let doc = server.openapi().await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut failures = Vec::new();
    let mut count = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("read doc");
        for (method, path) in endpoints(&text) {
            // `/api/v1/...` names the prefix, not an endpoint.
            if path.ends_with('/') || (path.ends_with("...") && path.matches('/').count() <= 3) {
                continue;
            }
            let path = path.trim_end_matches("...").to_owned();
            for form in path_forms(&path) {
                count += 1;
                let found = paths.iter().find(|(t, _)| matches_template(&form, t));
                let ok = match (found, &method) {
                    (None, _) => false,
                    (Some((_, ops)), Some(m)) => ops.get(m.to_lowercase()).is_some(),
                    (Some(_), None) => true,
                };
                if !ok {
                    failures.push(format!(
                        "{}: {} {form}",
                        file.strip_prefix(root()).unwrap_or(&file).display(),
                        method.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }
    assert!(
        count >= 20,
        "only {count} endpoints found: is the scan broken?"
    );
    assert!(
        failures.is_empty(),
        "not in the OpenAPI document:\n{}",
        failures.join("\n")
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (fence, line) in lines(text) {
        if fence.is_none() && line.starts_with('#') {
            let base = slug(line.trim_start_matches('#'));
            let mut name = base.clone();
            let mut n = 0;
            while seen.contains(&name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            seen.insert(name);
        }
    }
    seen
}

/// Markdown link targets outside code: `[text](target)` and `![alt](target)`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (fence, line) in lines(text) {
        if fence.is_some() {
            continue;
        }
        // Inline code is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            let target = tail[..end].split_whitespace().next().unwrap_or("");
            out.push(target.to_owned());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut failures = Vec::new();
    let mut count = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("read doc");
        let dir = doc.parent().expect("dir");
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            count += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                doc.clone()
            } else {
                dir.join(file)
            };
            let name = doc
                .strip_prefix(root())
                .unwrap_or(&doc)
                .display()
                .to_string();
            if !path.exists() {
                failures.push(format!("{name}: {target} (no such file)"));
                continue;
            }
            if let Some(anchor) = anchor
                && path.extension().is_some_and(|e| e == "md")
            {
                let linked = std::fs::read_to_string(&path).expect("read linked");
                if !anchors(&linked).contains(anchor) {
                    failures.push(format!("{name}: {target} (no such heading)"));
                }
            }
        }
    }
    assert!(
        count >= 20,
        "only {count} relative links found: is the scan broken?"
    );
    assert!(
        failures.is_empty(),
        "broken links:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_readme_stays_short() {
    let lines = std::fs::read_to_string(root().join("README.md"))
        .expect("README")
        .lines()
        .count();
    assert!(
        lines <= 260,
        "README.md has {lines} lines; move detail into docs/"
    );
}

#[test]
fn the_scanners_read_synopses_as_documented() {
    let line = "unmark remove-watermark IN [--mask MASK | --mask-dir MASKS] -o OUT [--engine restore|telea] ...";
    let tokens = words(first_command(line));
    let got = variants(&tokens[1..]);
    let want: Vec<Vec<String>> = [
        "remove-watermark IN --mask MASK -o OUT --engine restore",
        "remove-watermark IN --mask-dir MASKS -o OUT --engine restore",
    ]
    .iter()
    .map(|s| s.split(' ').map(str::to_owned).collect())
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        first_command("unmark serve --nats URL &   # the gateway"),
        "unmark serve --nats URL "
    );
    assert_eq!(
        words("curl -F 'post=[{\"plugin\": \"x\"}]' a"),
        ["curl", "-F", "post=[{\"plugin\": \"x\"}]", "a"]
    );
    let found = endpoints(
        "`GET` and `DELETE /api/v1/plugins/{name}[/{version}]`, and localhost:8080/api/v1/jobs/3f1c.../events; see iopaint/api.py and /metrics.",
    );
    assert_eq!(
        found,
        [
            (
                Some("DELETE".to_owned()),
                "/api/v1/plugins/{name}[/{version}]".to_owned()
            ),
            (None, "/api/v1/jobs/3f1c.../events".to_owned()),
            (None, "/metrics".to_owned()),
        ]
    );
    assert_eq!(
        path_forms("/api/v1/plugins/{name}[/{version}]"),
        ["/api/v1/plugins/{name}", "/api/v1/plugins/{name}/{version}"]
    );
    assert!(matches_template(
        "/api/v1/jobs/3f1c.../events",
        "/api/v1/jobs/{id}/events"
    ));
    assert!(!matches_template(
        "/api/v1/jobs/x/evnts",
        "/api/v1/jobs/{id}/events"
    ));
    assert_eq!(slug("Two commands: run, test"), "two-commands-run-test");
}
