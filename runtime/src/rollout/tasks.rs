//! Task files: one JSON object per line — `{id, prompt | messages, ground_truth, verifier,
//! tools?, functions?, meta?, data_source?}` — read and checked once, with errors that
//! name the file, the line and what was expected.

use std::{
    collections::HashSet,
    io::BufRead,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    model::{Message, Role, ToolDef},
    reward::VerifierSpec,
    trajectory::{canonical, record::TaskRef, TaskInfo},
};

/// What a task line must look like, for error messages.
const EXPECTED: &str = "expected {id, prompt or messages, ground_truth, verifier: {type: math|exact|normalized|regex|json_field|code|tool_call|format, ...}, tools?, functions?, meta?}";

/// A task file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line is not a usable task.
    #[error("{path}: line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// `--task-id` names no task of the file (or the file is empty).
    #[error("{path}: {message}")]
    NotFound {
        /// The file.
        path: PathBuf,
        /// Which task was looked for.
        message: String,
    },
}

/// One task line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique within its file; the group id of its samples.
    pub id: String,
    /// The user's message (or use `messages`).
    #[serde(default)]
    pub prompt: Option<String>,
    /// The conversation the task starts with (system/user/assistant messages).
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// The gold answer.
    #[serde(default)]
    pub ground_truth: Value,
    /// How a run is scored.
    pub verifier: VerifierSpec,
    /// Tools offered (names); all the gate has when absent.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Call-only functions offered to the model (OpenAI `{name, description, parameters}`,
    /// optionally wrapped as `{type: function, function: …}`): a reply calling one ends the
    /// run with the calls as the answer (BFCL-style tasks).
    #[serde(default)]
    functions: Vec<FunctionDef>,
    /// Anything else about the task (recorded).
    #[serde(default)]
    pub meta: Value,
    /// Where the task comes from (verl's `data_source`).
    #[serde(default)]
    pub data_source: Option<String>,
}

/// A call-only function as a task file gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum FunctionDef {
    Wrapped { function: PlainFunction },
    Plain(PlainFunction),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainFunction {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object_schema")]
    parameters: Value,
    /// Accepted because OpenAI function definitions carry it; strictness is the run's.
    #[serde(default, rename = "strict")]
    _strict: Option<bool>,
}

fn empty_object_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

impl FunctionDef {
    fn to_tool_def(&self) -> ToolDef {
        let f = match self {
            FunctionDef::Wrapped { function } => function,
            FunctionDef::Plain(f) => f,
        };
        ToolDef {
            name: f.name.clone(),
            description: f.description.clone(),
            parameters: f.parameters.clone(),
        }
    }
}

/// A task and its line as read (what its `hash` is of, and what a chat records).
#[derive(Debug, Clone)]
pub struct LoadedTask {
    /// The task.
    pub task: Task,
    /// The line as JSON.
    pub raw: Value,
}

impl Task {
    /// The question (the last user message) and the solution plan in `meta.solution`, for
    /// `verity rollout --teacher` ([`crate::model::TeacherModel`]).
    pub fn teacher_plan(&self) -> Result<(String, Vec<crate::model::PlanStep>), String> {
        let prompt = self
            .messages(None)
            .into_iter()
            .rfind(|m| m.role == crate::model::Role::User)
            .map(|m| m.content)
            .ok_or_else(|| format!("task {}: no user message", self.id))?;
        let solution = self.meta.get("solution").ok_or_else(|| {
            format!(
                "task {}: no meta.solution (the plan a teacher writes, e.g. \
                 [{{\"call\": \"2+2\"}}, {{\"answer\": \"{{0}}\"}}])",
                self.id
            )
        })?;
        let plan = crate::model::PlanStep::parse_plan(solution)
            .map_err(|e| format!("task {}: meta.solution: {e}", self.id))?;
        Ok((prompt, plan))
    }

    /// The conversation a run starts with: the system prompt, then the task's messages
    /// (or its prompt as one user message).
    pub fn messages(&self, system: Option<&str>) -> Vec<Message> {
        let mut out = Vec::new();
        if let Some(s) = system {
            out.push(Message::new(Role::System, s));
        }
        match (&self.messages, &self.prompt) {
            (Some(m), _) => out.extend(m.iter().cloned()),
            (None, Some(p)) => out.push(Message::new(Role::User, p.clone())),
            (None, None) => {}
        }
        out
    }

    /// The call-only functions, as the agent offers them.
    pub fn call_only(&self) -> Vec<ToolDef> {
        self.functions
            .iter()
            .map(FunctionDef::to_tool_def)
            .collect()
    }
}

impl LoadedTask {
    /// The task as its samples record it.
    pub fn task_info(&self) -> TaskInfo {
        TaskInfo::Task(Box::new(TaskRef {
            id: self.task.id.clone(),
            hash: canonical::digest(&self.raw),
            data_source: self.task.data_source.clone(),
            ground_truth: self.task.ground_truth.clone(),
            verifier: self.task.verifier.clone(),
            meta: self.task.meta.clone(),
        }))
    }
}

/// Reads a task file: every line a task, ids unique. Blank lines are skipped.
pub fn read_tasks(path: &Path) -> Result<Vec<LoadedTask>, TaskError> {
    let io = |source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    };
    let line_err = |line: usize, message: String| TaskError::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut tasks = Vec::new();
    let mut ids = HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let raw: Value =
            serde_json::from_str(&line).map_err(|e| line_err(n, format!("not JSON: {e}")))?;
        let task: Task = serde_json::from_value(raw.clone())
            .map_err(|e| line_err(n, format!("{e} ({EXPECTED})")))?;
        if task.prompt.is_none() && task.messages.is_none() {
            return Err(line_err(
                n,
                format!("task '{}' has neither prompt nor messages", task.id),
            ));
        }
        if !ids.insert(task.id.clone()) {
            return Err(line_err(n, format!("duplicate task id '{}'", task.id)));
        }
        tasks.push(LoadedTask { task, raw });
    }
    Ok(tasks)
}

/// One task of a file: the one with `id`, or the first.
pub fn load_task(path: &Path, id: Option<&str>) -> Result<LoadedTask, TaskError> {
    let tasks = read_tasks(path)?;
    let not_found = |message: String| TaskError::NotFound {
        path: path.to_path_buf(),
        message,
    };
    match id {
        Some(id) => tasks
            .into_iter()
            .find(|t| t.task.id == id)
            .ok_or_else(|| not_found(format!("no task with id '{id}'"))),
        None => tasks
            .into_iter()
            .next()
            .ok_or_else(|| not_found("no tasks".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn tasks_read_with_prompts_messages_and_call_only_functions() {
        let f = file(concat!(
            r#"{"id": "a", "prompt": "2+2?", "ground_truth": 4, "verifier": {"type": "math"}}"#,
            "\n\n",
            r#"{"id": "b", "messages": [{"role": "user", "content": "hi"}], "verifier": {"type": "tool_call"}, "functions": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}, {"name": "g"}]}"#,
            "\n"
        ));
        let tasks = read_tasks(f.path()).unwrap();
        assert_eq!(tasks.len(), 2);
        let m = tasks[0].task.messages(Some("sys"));
        assert_eq!((m[0].role, m[1].content.as_str()), (Role::System, "2+2?"));
        let names: Vec<String> = tasks[1]
            .task
            .call_only()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["f", "g"]);
        match tasks[0].task_info() {
            TaskInfo::Task(t) => {
                assert_eq!(t.id, "a");
                assert_eq!(t.hash, canonical::digest(&tasks[0].raw));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            load_task(f.path(), Some("b")).unwrap().task.id,
            "b".to_owned()
        );
        assert!(load_task(f.path(), Some("zz"))
            .unwrap_err()
            .to_string()
            .contains("no task with id 'zz'"));
    }

    #[test]
    fn bad_lines_are_named_with_what_was_expected() {
        for (text, want) in [
            ("{\"id\": \"a\"", "line 1: not JSON"),
            (
                "{\"id\": \"a\", \"prompt\": \"x\"}",
                "line 1: missing field `verifier`",
            ),
            (
                "{\"id\": \"a\", \"verifier\": {\"type\": \"math\"}}",
                "neither prompt nor messages",
            ),
            (
                "{\"id\": \"a\", \"prompt\": \"x\", \"verifier\": {\"type\": \"math\"}}\n{\"id\": \"a\", \"prompt\": \"y\", \"verifier\": {\"type\": \"math\"}}",
                "line 2: duplicate task id 'a'",
            ),
            (
                "{\"id\": \"a\", \"prompt\": \"x\", \"verifier\": {\"type\": \"math\"}, \"answer\": 1}",
                "unknown field `answer`",
            ),
        ] {
            let f = file(text);
            let e = read_tasks(f.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
