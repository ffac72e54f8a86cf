//! Policy decision latency: Verity's engine vs `cedar-policy` (the best-known Rust policy
//! engine) on equivalent policy sets of 10, 100 and 1,000 rules, same requests, one run.
//!
//! Rule i targets tool `tool{i}`; even rules allow when a numeric path condition
//! (`args.limits.timeout_ms <= …`) holds and a string condition on `args.query` matches;
//! odd rules deny when `args.query` contains a marker. Verity expresses the string test
//! as a regex, Cedar as `like` (it has no regex). Both are loaded/compiled once; requests
//! are built before timing; only `decide` / `is_authorized` is timed.
//!
//!     cargo run --release -p verity-bench --bin policy-decide

use std::{str::FromStr, time::Instant};

use anyhow::Result;
use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request as CedarRequest};
use serde_json::{json, Value};
use verity_bench::{fmt, summarize};
use verity_policies::{Caller, CallerKind, Policy, Request};

fn verity_policy(n: usize) -> String {
    let mut s = String::from("default = \"deny\"\n");
    for i in 0..n {
        if i % 2 == 0 {
            s.push_str(&format!(
                "[[rule]]\nid = \"r{i}\"\ntool = \"tool{i}\"\ndecision = \"allow\"\nwhen = {{ \"args.limits.timeout_ms\" = {{ le = {} }}, \"args.query\" = {{ regex = \"report-{i}-\" }} }}\n",
                i * 10 + 5000
            ));
        } else {
            s.push_str(&format!(
                "[[rule]]\nid = \"r{i}\"\ntool = \"tool{i}\"\ndecision = \"deny\"\nwhen = {{ \"args.query\" = {{ regex = \"secret-{i}\" }} }}\n"
            ));
        }
    }
    s
}

fn cedar_policy(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        if i % 2 == 0 {
            s.push_str(&format!(
                "@id(\"r{i}\") permit(principal, action == Action::\"call\", resource == Tool::\"tool{i}\") when {{ context.args.limits.timeout_ms <= {} && context.args.query like \"*report-{i}-*\" }};\n",
                i * 10 + 5000
            ));
        } else {
            s.push_str(&format!(
                "@id(\"r{i}\") forbid(principal, action == Action::\"call\", resource == Tool::\"tool{i}\") when {{ context.args.query like \"*secret-{i}*\" }};\n"
            ));
        }
    }
    s
}

struct Req {
    tool: String,
    args: Value,
}

fn requests(n_rules: usize, count: usize) -> Vec<Req> {
    let mut x: u64 = 0x1234_5678;
    (0..count)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (x >> 33) as usize % n_rules;
            let t = (x >> 20) % 20_000;
            let query = match x % 3 {
                0 => format!("quarterly report-{i}-2026 summary"),
                1 => format!("contains secret-{i} token"),
                _ => "plain text with nothing special".to_owned(),
            };
            Req {
                tool: format!("tool{i}"),
                args: json!({"query": query, "limits": {"timeout_ms": t}}),
            }
        })
        .collect()
}

fn main() -> Result<()> {
    let count = 20_000;
    println!("| rules | engine | p50 | p99 | mean | agree |");
    println!("|---:|---|---:|---:|---:|---|");
    let mut ratios = Vec::new();
    for n in [10, 100, 1000] {
        let reqs = requests(n, count);
        let policy = Policy::from_toml_str(&verity_policy(n), "bench.toml")?;
        let caller = Caller::new(CallerKind::McpClient, "bench");

        let cedar = PolicySet::from_str(&cedar_policy(n))?;
        let authorizer = Authorizer::new();
        let entities = Entities::empty();
        let principal = EntityUid::from_str("Client::\"bench\"")?;
        let action = EntityUid::from_str("Action::\"call\"")?;
        let cedar_reqs: Vec<CedarRequest> = reqs
            .iter()
            .map(|r| {
                let resource = EntityUid::from_str(&format!("Tool::\"{}\"", r.tool))?;
                let ctx = Context::from_json_value(json!({"args": r.args}), None)?;
                Ok(CedarRequest::new(
                    principal.clone(),
                    action.clone(),
                    resource,
                    ctx,
                    None,
                )?)
            })
            .collect::<Result<_>>()?;

        // Warm up both, and check they agree on every request.
        let mut agree = 0;
        for (r, c) in reqs.iter().zip(&cedar_reqs) {
            let v = policy
                .decide(&Request::new(&caller, &r.tool, &r.args))
                .verdict;
            let ce = authorizer.is_authorized(c, &cedar, &entities).decision();
            let v_allow = v == verity_policies::Verdict::Allow;
            let c_allow = ce == cedar_policy::Decision::Allow;
            agree += usize::from(v_allow == c_allow);
        }

        let mut v_lat = Vec::with_capacity(count);
        for r in &reqs {
            let t = Instant::now();
            let d = policy.decide(&Request::new(&caller, &r.tool, &r.args));
            v_lat.push(t.elapsed());
            std::hint::black_box(d);
        }
        let mut c_lat = Vec::with_capacity(count);
        for c in &cedar_reqs {
            let t = Instant::now();
            let d = authorizer.is_authorized(c, &cedar, &entities);
            c_lat.push(t.elapsed());
            std::hint::black_box(d);
        }
        let v = summarize(&mut v_lat);
        let c = summarize(&mut c_lat);
        let agree = format!("{agree}/{count}");
        println!(
            "| {n} | verity | {} | {} | {} | {agree} |",
            fmt(v.p50),
            fmt(v.p99),
            fmt(v.mean)
        );
        println!(
            "| {n} | cedar-policy 4 | {} | {} | {} | |",
            fmt(c.p50),
            fmt(c.p99),
            fmt(c.mean)
        );
        ratios.push((
            n,
            c.p50.as_secs_f64() / v.p50.as_secs_f64(),
            c.p99.as_secs_f64() / v.p99.as_secs_f64(),
        ));
    }
    println!();
    for (n, p50, p99) in ratios {
        println!("{n} rules: cedar/verity latency ratio p50 {p50:.1}×, p99 {p99:.1}× (>1 means Verity is faster)");
    }
    Ok(())
}
