//! The `search` tool: BM25 (tantivy) over the user's own documents, offline and
//! deterministic, so search calls replay exactly in trajectories. Indexes are built with
//! `verity index build`; the query is read as words, never as query syntax.

pub mod extract;
pub mod index;

use std::{collections::HashMap, sync::Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tantivy::{
    collector::TopDocs,
    query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery},
    schema::{IndexRecordOption, Value as _},
    snippet::SnippetGenerator,
    IndexReader, ReloadPolicy, TantivyDocument, Term,
};

use crate::{
    error::{FailureKind, ToolFailure},
    tool::{Annotations, CallContext, Tool},
};
use index::{open, schema, IndexError};

/// Default index name.
pub const DEFAULT_INDEX: &str = "default";
/// Most results per call.
pub const MAX_K: usize = 20;
/// Longest query accepted, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;

/// Arguments of the `search` tool.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// What to look for, in plain words (e.g. `itertools groupby consecutive keys`).
    /// Punctuation and operators are treated as text, not query syntax.
    pub query: String,
    /// Number of results, 1 to 20 (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 20))]
    pub k: Option<usize>,
    /// Which index to search (default `default`; see `verity index list`).
    #[serde(default)]
    pub index: Option<String>,
}

/// One hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    /// Rank, from 1.
    pub rank: usize,
    /// Document title.
    pub title: String,
    /// Section path within the document.
    pub heading: String,
    /// Passage id (`path#anchor`) — stable across rebuilds of unchanged files.
    pub id: String,
    /// URL, when the source has one.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub url: String,
    /// The best-matching fragment, matched terms in `**bold**`.
    pub snippet: String,
    /// BM25 score.
    pub score: f32,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SearchOutput {
    /// The query as given.
    pub query: String,
    /// The index searched.
    pub index: String,
    /// Hits, best first; ties broken by id, so the order is stable.
    pub results: Vec<SearchHit>,
}

/// The `search` tool. Keeps one reader per index (cheap searchers per query; it reloads
/// when the index is rebuilt).
#[derive(Default)]
pub struct Search {
    readers: Mutex<HashMap<String, (tantivy::Index, IndexReader)>>,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Search").finish()
    }
}

fn failure(e: IndexError) -> ToolFailure {
    ToolFailure::execution(e.to_string())
}

impl Search {
    fn reader(&self, name: &str) -> Result<(tantivy::Index, IndexReader), ToolFailure> {
        let mut map = match self.readers.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if let Some((i, r)) = map.get(name) {
            return Ok((i.clone(), r.clone()));
        }
        let index = open(name).map_err(failure)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(|e: tantivy::TantivyError| {
                failure(IndexError::Corrupt {
                    name: name.into(),
                    detail: e.to_string(),
                })
            })?;
        map.insert(name.to_owned(), (index.clone(), reader.clone()));
        Ok((index, reader))
    }

    /// Runs a query (synchronous; microseconds to milliseconds). A damaged index is an
    /// error naming it and how to rebuild it: checksums are verified on open, and a panic
    /// inside tantivy (it asserts on some damage checksums cannot see) is caught here and
    /// the index's cached reader dropped.
    pub fn search(&self, p: &SearchParams) -> Result<SearchOutput, ToolFailure> {
        let name = p.index.clone().unwrap_or_else(|| DEFAULT_INDEX.to_owned());
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.search_inner(p))) {
            Ok(r) => r,
            Err(panic) => {
                if let Ok(mut map) = self.readers.lock() {
                    map.remove(&name);
                }
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic in tantivy");
                Err(failure(IndexError::Corrupt {
                    name,
                    detail: format!("reading it failed: {what}"),
                }))
            }
        }
    }

    fn search_inner(&self, p: &SearchParams) -> Result<SearchOutput, ToolFailure> {
        let name = p.index.clone().unwrap_or_else(|| DEFAULT_INDEX.to_owned());
        let k = p.k.unwrap_or(5);
        if !(1..=MAX_K).contains(&k) {
            return Err(ToolFailure::invalid_arguments(format!(
                "k must be between 1 and {MAX_K}, got {k}"
            )));
        }
        let chars = p.query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(ToolFailure::new(
                FailureKind::LimitExceeded,
                format!("query is {chars} characters; the limit is {MAX_QUERY_CHARS}"),
            ));
        }
        let (index, reader) = self.reader(&name)?;
        let (_, f) = schema();
        // Words only: the field's own analyzer (lower-case, stem) turns the text into terms.
        let mut analyzer = index
            .tokenizer_for_field(f.text)
            .map_err(|e| ToolFailure::execution(format!("index '{name}': {e}")))?;
        let mut words = Vec::new();
        let mut stream = analyzer.token_stream(&p.query);
        while let Some(t) = stream.next() {
            if !words.contains(&t.text) {
                words.push(t.text.clone());
            }
        }
        if words.is_empty() {
            return Err(ToolFailure::invalid_arguments(
                "the query has no searchable words; give a few keywords, e.g. \"json dumps indent\"",
            ));
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for w in &words {
            for (field, boost) in [(f.title, 2.0), (f.heading, 1.5), (f.text, 1.0)] {
                let q = TermQuery::new(
                    Term::from_field_text(field, w),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
        }
        let query = BooleanQuery::new(clauses);
        let searcher = reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(k + 16).order_by_score())
            .map_err(|e| ToolFailure::execution(format!("search failed: {e}")))?;
        let mut snippets = SnippetGenerator::create(&searcher, &query, f.text)
            .map_err(|e| ToolFailure::execution(format!("search failed: {e}")))?;
        snippets.set_max_num_chars(240);
        let mut hits = Vec::new();
        for (score, addr) in top {
            let Ok(doc) = searcher.doc::<TantivyDocument>(addr) else {
                continue;
            };
            let get = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let snip = snippets.snippet_from_doc(&doc);
            let mut text = String::new();
            let mut from = 0;
            for r in snip.highlighted() {
                text.push_str(&snip.fragment()[from..r.start]);
                text.push_str("**");
                text.push_str(&snip.fragment()[r.clone()]);
                text.push_str("**");
                from = r.end;
            }
            text.push_str(&snip.fragment()[from..]);
            if text.is_empty() {
                text = get(f.text).chars().take(240).collect();
            }
            hits.push(SearchHit {
                rank: 0,
                title: get(f.title),
                heading: get(f.heading),
                id: get(f.id),
                url: get(f.url),
                snippet: text.split_whitespace().collect::<Vec<_>>().join(" "),
                score,
            });
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits.truncate(k);
        for (i, h) in hits.iter_mut().enumerate() {
            h.rank = i + 1;
        }
        Ok(SearchOutput {
            query: p.query.clone(),
            index: name,
            results: hits,
        })
    }
}

impl Tool for Search {
    type Params = SearchParams;
    type Output = SearchOutput;

    fn name(&self) -> &str {
        "search"
    }

    fn title(&self) -> Option<&str> {
        Some("Local document search")
    }

    fn description(&self) -> &str {
        "Searches the user's local documents (an offline BM25 index) and returns the best \
         passages: title, section, id, a snippet with matched words in **bold**, and a \
         score. Use it to look facts up instead of guessing. Give plain keywords \
         (`json dumps indent`); k is the number of results (default 5, max 20)."
    }

    fn annotations(&self) -> Annotations {
        Annotations::PURE
    }

    async fn call(&self, p: SearchParams, _ctx: CallContext) -> Result<SearchOutput, ToolFailure> {
        self.search(&p)
    }

    fn render(&self, o: &SearchOutput) -> String {
        if o.results.is_empty() {
            return format!("no results for {:?} in index '{}'", o.query, o.index);
        }
        let mut s = String::new();
        for h in &o.results {
            let place = if h.heading.is_empty() {
                &h.title
            } else {
                &h.heading
            };
            s.push_str(&format!(
                "{}. {place} [{}]\n   {}\n",
                h.rank, h.id, h.snippet
            ));
        }
        s.trim_end().to_owned()
    }
}
