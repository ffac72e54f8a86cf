//! Differential test of the calculator against an independent oracle: Python's
//! `fractions.Fraction`, on seeded random rational expressions, through the binary.

use std::{io::Write, process::Command};

use serde_json::Value;

use super::common::{repo, verity};

/// A small deterministic PRNG (SplitMix64) so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn expr(r: &mut Rng, depth: u32) -> String {
    if depth == 0 || r.below(3) == 0 {
        let n = r.below(2000) as i64 - 1000;
        return match r.below(3) {
            0 => format!("({n})"),
            1 => format!("({}.{:02})", n, r.below(100)),
            _ => format!("({n}/{})", r.below(50) + 1),
        };
    }
    let a = expr(r, depth - 1);
    let b = expr(r, depth - 1);
    match r.below(6) {
        0 => format!("({a} + {b})"),
        1 => format!("({a} - {b})"),
        2 => format!("({a} * {b})"),
        3 => format!("({a} / {b})"),
        4 => format!("({a} % {b})"),
        _ => format!("({a} ^ {})", r.below(7) as i64 - 3),
    }
}

#[test]
fn random_rational_expressions_match_python_fractions() {
    let mut rng = Rng(0x5EED_CA1C);
    let exprs: Vec<String> = (0..300).map(|_| expr(&mut rng, 4)).collect();
    // Python evaluates with Fraction literals; `^` is `**`, `%` is Python's modulo.
    let script = r#"
import json, re, sys
from fractions import Fraction
out = []
for line in sys.stdin:
    e = json.loads(line)
    py = re.sub(r'(\d+\.\d+|\d+)', lambda m: 'Fraction("%s")' % m.group(1), e).replace('^', '**')
    try:
        v = eval(py)
        out.append(str(v))
    except ZeroDivisionError:
        out.append("ZeroDivisionError")
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    {
        let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("stdin"));
        for e in &exprs {
            let _ = writeln!(stdin, "{}", serde_json::to_string(e).unwrap_or_default());
        }
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let oracle: Vec<String> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python oracle: {e} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(oracle.len(), exprs.len());
    let _ = repo();

    let mut mismatches = Vec::new();
    for (e, want) in exprs.iter().zip(&oracle) {
        let args = serde_json::json!({"expression": e}).to_string();
        let o = Command::new(verity())
            .args([
                "tools",
                "call",
                "calculator",
                &args,
                "--json",
                "--policy",
                "trusted",
            ])
            .output()
            .unwrap_or_else(|err| panic!("{err}"));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        let got = if v["is_error"] == true {
            let text = v["text"].as_str().unwrap_or_default();
            if text.contains("division by zero") || text.contains("modulo by zero") {
                "ZeroDivisionError".to_owned()
            } else {
                format!("error: {text}")
            }
        } else {
            v["result"]["exact"].as_str().unwrap_or_default().to_owned()
        };
        if &got != want {
            mismatches.push(format!("{e}\n  python: {want}\n  verity: {got}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
