//! `verity verify --replay`: what a record claims, done again. Deterministic tools are
//! re-executed with the recorded arguments and limits and must give the same `io_digest`;
//! rewards are recomputed with the recorded verifier; group statistics are recomputed from
//! their members' rewards. Each model call's token ids are decoded with the model's own
//! tokenizer (when its file is here and its digest is the recorded one) and must contain the
//! recorded text: a record re-sealed with another answer fails unless its ids were forged
//! to match too.

use std::{collections::HashMap, io::BufRead, path::Path};

use sha2::Digest as _;

use serde::Serialize;
use serde_json::json;
use verity_tools::{CallContext, ToolRegistry};

use super::{
    canonical, group,
    record::{GroupRecord, TrajRecord},
    Record,
};
use crate::{
    model::callformat::CallFormat,
    reward::{self, Attempt},
};

/// Tools whose output is a function of their input (and recorded seed/limits).
const DETERMINISTIC: &[&str] = &["calculator", "code", "search"];

/// What a replay found.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReplayReport {
    /// Deterministic tool calls re-executed.
    pub calls: usize,
    /// Of them, with the recorded `io_digest`.
    pub calls_ok: usize,
    /// Rewards recomputed.
    pub rewards: usize,
    /// Of them, equal to the recorded one.
    pub rewards_ok: usize,
    /// Model calls whose token ids were decoded and compared with their text.
    pub turns: usize,
    /// Of them, whose ids decode to the recorded text.
    pub turns_ok: usize,
    /// Models whose tokenizer was not found here (or differs from the recorded one): their
    /// calls' ids were not checked against their text.
    pub tokenizers_missing: Vec<String>,
    /// Group records recomputed.
    pub groups: usize,
    /// Of them, identical.
    pub groups_ok: usize,
    /// Every mismatch: `line N: what`.
    pub problems: Vec<String>,
}

/// Replays every record of `path` (whose chain the caller has verified). An unreadable
/// line is a problem of the report, not an error: the rest is still replayed.
pub async fn replay(path: &Path) -> std::io::Result<ReplayReport> {
    let registry = ToolRegistry::with_builtins();
    let mut report = ReplayReport::default();
    let mut tokenizers = Tokenizers::default();
    let mut rewards_by_digest: HashMap<String, f64> = HashMap::new();
    let file = std::fs::File::open(path)?;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("line {}", n + 1);
        match Record::from_json_line(&line) {
            Ok(Record::Traj(r)) => {
                replay_tokens(&mut tokenizers, &r, &at, &mut report);
                replay_traj(&registry, &r, &at, &mut report).await;
                if let (Some(reward), Some(i)) = (&r.reward, &r.integrity) {
                    rewards_by_digest.insert(i.digest.clone(), reward.total);
                }
            }
            Ok(Record::Group(g)) => replay_group(&g, &rewards_by_digest, &at, &mut report),
            Err(e) => report
                .problems
                .push(format!("{at}: not a verity.traj/1 record: {e}")),
        }
    }
    Ok(report)
}

/// Tokenizers by model, loaded once (`None`: not available here).
#[derive(Default)]
struct Tokenizers(HashMap<String, Option<tokenizers::Tokenizer>>);

impl Tokenizers {
    /// The model's tokenizer: `tokenizer.json` in its local folder (the record's `model`,
    /// or the path in `verity-tiny (PATH)`), used only if its digest is the recorded one.
    fn get(&mut self, r: &TrajRecord) -> Option<&tokenizers::Tokenizer> {
        let p = &r.policy;
        self.0
            .entry(p.model.clone())
            .or_insert_with(|| {
                let want = p.digests.get("tokenizer")?;
                let dir = p
                    .model
                    .rsplit_once(" (")
                    .and_then(|(_, rest)| rest.strip_suffix(')'))
                    .unwrap_or(&p.model);
                let file = Path::new(dir).join("tokenizer.json");
                let bytes = std::fs::read(&file).ok()?;
                let got = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
                if &got != want {
                    return None;
                }
                tokenizers::Tokenizer::from_bytes(&bytes).ok()
            })
            .as_ref()
    }
}

/// Letters and digits only: what a text and its decoded ids must share whatever the
/// parser stripped (tool-call markup, reasoning) and however spaces were rendered.
fn skeleton(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// Whether a turn's recorded text is what its decoded ids say. The text is the reply
/// without its calls: usually a prefix of the decode, but where a call (read or not) sits
/// between prose, the text is the prose on both sides joined. So the decode is also split
/// the way the runtime split it — with the family's layout its call markers show — and
/// the text must lie within what that leaves.
fn text_matches_ids(text: &str, decoded: &str) -> bool {
    let want = skeleton(text);
    skeleton(decoded).contains(&want)
        || CallFormat::from_markers(decoded)
            .is_some_and(|f| skeleton(&f.parse(decoded).content).contains(&want))
}

fn replay_tokens(tokenizers: &mut Tokenizers, r: &TrajRecord, at: &str, report: &mut ReplayReport) {
    let with_ids: Vec<_> = r
        .turns
        .iter()
        .filter(|t| t.gen_ids.is_some() && !t.text.trim().is_empty())
        .collect();
    if with_ids.is_empty() {
        return;
    }
    let Some(tok) = tokenizers.get(r) else {
        if !report.tokenizers_missing.contains(&r.policy.model) {
            report.tokenizers_missing.push(r.policy.model.clone());
        }
        return;
    };
    for t in with_ids {
        let Some(ids) = &t.gen_ids else { continue };
        report.turns += 1;
        match tok.decode(ids, false) {
            Ok(decoded) if text_matches_ids(&t.text, &decoded) => report.turns_ok += 1,
            Ok(decoded) => report.problems.push(format!(
                "{at}: turn {}: the recorded text {:?} is not what its {} token ids decode to ({:?})",
                t.index,
                t.text.chars().take(60).collect::<String>(),
                ids.len(),
                decoded.chars().take(60).collect::<String>()
            )),
            Err(e) => report.problems.push(format!(
                "{at}: turn {}: its token ids do not decode with the model's tokenizer: {e}",
                t.index
            )),
        }
    }
}

async fn replay_traj(registry: &ToolRegistry, r: &TrajRecord, at: &str, report: &mut ReplayReport) {
    for call in &r.tool_calls {
        let name = call.tool();
        if !call.status.ran() || !DETERMINISTIC.contains(&name) {
            continue;
        }
        report.calls += 1;
        let ctx = CallContext {
            limits: call.limits,
            ..CallContext::default()
        };
        let outcome = registry.call(name, call.arguments.clone(), ctx).await;
        let io = json!({
            "tool": name,
            "arguments": call.arguments,
            "text": outcome.text,
            "structured": outcome.structured,
            "failure": outcome.failure,
        });
        if canonical::digest(&io) == call.io_digest {
            report.calls_ok += 1;
        } else {
            report.problems.push(format!(
                "{at}: tool call \"{}\" ({name}) gave a different result on replay: {}",
                call.id,
                outcome.text.chars().take(120).collect::<String>()
            ));
        }
    }
    let (Some(reward), Some(task)) = (&r.reward, r.task.task()) else {
        return;
    };
    report.rewards += 1;
    // Every call the model made, as the rollout scored them: from the conversation
    // (call-only functions are never run, so they are not among the executed `tool_calls`),
    // after the messages the run was given (a task's earlier exchanges).
    let calls = r
        .messages
        .iter()
        .skip(r.prompt_messages.unwrap_or(0))
        .flat_map(|m| m.tool_calls.iter().map(|c| c.to_tool_call()))
        .collect();
    let attempt = Attempt {
        answer: r.outcome.answer.clone(),
        calls,
        truncated: r.outcome.truncated,
    };
    let again = reward::score(&task.verifier, &task.ground_truth, &attempt).await;
    let recorded_version = reward.components.first().map(|c| c.version);
    match recorded_version {
        Some(v) if v != again.version => report.problems.push(format!(
            "{at}: recorded with {} verifier v{v}, this build has v{}",
            again.name, again.version
        )),
        _ if (again.score - reward.total).abs() < 1e-12 => report.rewards_ok += 1,
        _ => report.problems.push(format!(
            "{at}: reward recomputes to {} (recorded {})",
            again.score, reward.total
        )),
    }
}

fn replay_group(
    g: &GroupRecord,
    rewards_by_digest: &HashMap<String, f64>,
    at: &str,
    report: &mut ReplayReport,
) {
    report.groups += 1;
    let stats = &g.stats;
    let rewards: Option<Vec<f64>> = stats
        .members
        .iter()
        .map(|d| rewards_by_digest.get(d).copied())
        .collect();
    let Some(rewards) = rewards else {
        report.problems.push(format!(
            "{at}: a member of the group is not in the file (merge the shards first)"
        ));
        return;
    };
    let again = group::stats(&rewards, stats.advantages.grpo_norm);
    let merkle = stats.merkle_root.as_deref() == Some(group::merkle_root(&stats.members).as_str());
    // Within a few ulps: serde_json's default float parser may read a written f64 back
    // one ulp off (0.9999990000010001, a verl advantage of a group of one, is such a value).
    let a = &again.advantages;
    let b = &stats.advantages;
    if again.rewards == stats.rewards
        && same(&[again.mean], &[stats.mean])
        && same(&[again.std_population], &[stats.std_population])
        && again.zero_variance == stats.zero_variance
        && same(&a.grpo, &b.grpo)
        && same(&a.dr_grpo, &b.dr_grpo)
        && same(&a.rloo, &b.rloo)
        && a.grpo_eps == b.grpo_eps
        && a.grpo_norm == b.grpo_norm
        && merkle
    {
        report.groups_ok += 1;
    } else {
        report.problems.push(format!(
            "{at}: group statistics do not recompute (task \"{}\")",
            g.task.id
        ));
    }
}

/// Equal within 4 ulps-ish (relative 1e-14).
fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (x - y).abs() <= 1e-14 * x.abs().max(y.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        reward::VerifierSpec,
        trajectory::{
            chain::ChainWriter,
            record::{example_record, GroupTask, Reward, TaskRef},
            TaskInfo, SCHEMA,
        },
    };

    #[test]
    fn text_with_a_call_between_its_prose_matches_its_ids() {
        // A sampled reply of an untrained model: prose, a call that is not JSON, prose.
        // The runtime records the prose on both sides joined (the call as a parse failure).
        let decoded =
            "R\u{fffd}5<tool_call>\u{fffd}t,N</tool_response>G&</tool_call><|reserved_13|>\u{fffd}";
        assert!(text_matches_ids(
            "R\u{fffd}5<|reserved_13|>\u{fffd}",
            decoded
        ));
        // Prose before a call, reasoning before the prose: a part of the decode as it was.
        assert!(text_matches_ids(
            "The sum is",
            "<think>add</think>The sum is<tool_call>\n{\"name\": \"calculator\"}\n</tool_call>"
        ));
        // Another answer than the ids hold fails, with or without calls in them.
        assert!(!text_matches_ids("R5 reserved14", decoded));
        assert!(!text_matches_ids("The answer is 5", "The answer is 6"));
        // Prose a call's body holds is not prose of the reply.
        assert!(!text_matches_ids("Rt5", decoded));
    }

    #[tokio::test]
    async fn replay_redoes_calls_rewards_and_groups_and_names_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.jsonl");
        let mut w = ChainWriter::open(&path).unwrap();
        // The example: one calculator call (an empty expression, an error — replayed too).
        let mut r = example_record();
        r.integrity = None;
        r.task = TaskInfo::Task(Box::new(TaskRef {
            id: "t".into(),
            hash: "sha256:0".into(),
            data_source: None,
            ground_truth: json!(4),
            verifier: VerifierSpec::MATH,
            meta: serde_json::Value::Null,
        }));
        r.reward = Some(Reward {
            total: 0.0,
            components: Vec::new(),
        });
        let d1 = w.append_record(&mut Record::Traj(r.clone())).unwrap();
        // The same run claiming reward 1 and a different calculator result.
        r.reward = Some(Reward {
            total: 1.0,
            components: Vec::new(),
        });
        r.tool_calls[0].io_digest = "sha256:forged".into();
        let d2 = w.append_record(&mut Record::Traj(r)).unwrap();
        let mut stats = group::stats(&[0.0, 1.0], group::GrpoNorm::Verl);
        stats.merkle_root = Some(group::merkle_root(&[d1.clone(), d2.clone()]));
        stats.members = vec![d1.clone(), d2.clone()];
        let good = GroupRecord {
            schema: SCHEMA.into(),
            task: GroupTask { id: "t".into() },
            group_id: "t".into(),
            verifier: VerifierSpec::MATH,
            stats,
            integrity: None,
        };
        let mut bad = good.clone();
        bad.stats.mean = 0.75;
        w.append_record(&mut Record::Group(good)).unwrap();
        w.append_record(&mut Record::Group(bad)).unwrap();

        let report = replay(&path).await.unwrap();
        assert_eq!((report.calls, report.calls_ok), (2, 1), "{report:?}");
        assert_eq!((report.rewards, report.rewards_ok), (2, 1), "{report:?}");
        assert_eq!((report.groups, report.groups_ok), (2, 1), "{report:?}");
        let problems = report.problems.join("\n");
        assert!(problems.contains("line 2: tool call"), "{problems}");
        assert!(
            problems.contains("line 2: reward recomputes to 0 (recorded 1)"),
            "{problems}"
        );
        assert!(
            problems.contains("line 4: group statistics do not recompute"),
            "{problems}"
        );
    }
}
