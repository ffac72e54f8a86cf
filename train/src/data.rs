//! Reading training rows: `verity export --format trl-sft` JSONL (`input_ids` and
//! `completion_mask` or `assistant_masks`).

use std::{
    io::{BufRead, BufReader},
    path::Path,
};

use serde_json::Value;

use crate::{batch::Example, Result, TrainError};

/// The SFT rows of a JSONL file; errors name the line and the field.
pub fn read_sft(path: &Path) -> Result<Vec<Example>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(&line)
            .map_err(|e| TrainError::Invalid(format!("{at}: not JSON: {e}")))?;
        let ids = ids_field(&row, "input_ids", &at)?;
        let mask_key = ["completion_mask", "assistant_masks"]
            .into_iter()
            .find(|k| row.get(*k).is_some())
            .ok_or_else(|| {
                TrainError::Invalid(format!(
                    "{at}: no completion_mask or assistant_masks (rows of `verity export \
                     --format trl-sft`)"
                ))
            })?;
        let mask: Vec<u8> = ids_field(&row, mask_key, &at)?
            .into_iter()
            .map(|m| u8::from(m != 0))
            .collect();
        let example =
            Example::new(ids, mask).map_err(|e| TrainError::Invalid(format!("{at}: {e}")))?;
        if example.trained() == 0 || example.mask.first() == Some(&1) {
            return Err(TrainError::Invalid(format!(
                "{at}: {mask_key} trains no token after the first"
            )));
        }
        out.push(example);
    }
    if out.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no rows (was the export filtered to nothing by --min-reward?)",
            path.display()
        )));
    }
    Ok(out)
}

fn ids_field(row: &Value, key: &str, at: &str) -> Result<Vec<u32>> {
    let arr = row
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| TrainError::Invalid(format!("{at}: `{key}` is missing or not an array")))?;
    arr.iter()
        .enumerate()
        .map(|(j, v)| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "{at}: `{key}[{j}]` is {v}, expected a non-negative integer"
                    ))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rows_name_their_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sft.jsonl");
        std::fs::write(
            &p,
            "{\"input_ids\":[1,2,3],\"completion_mask\":[0,0,1]}\n\n{\"input_ids\":[1,-2]}\n",
        )
        .unwrap();
        let e = read_sft(&p).unwrap_err().to_string();
        assert!(e.contains("sft.jsonl:3: `input_ids[1]` is -2"), "{e}");
        std::fs::write(&p, "{\"input_ids\":[1,2],\"completion_mask\":[0,1,1]}\n").unwrap();
        let e = read_sft(&p).unwrap_err().to_string();
        assert!(e.contains(":1: 2 ids but 3 mask entries"), "{e}");
        std::fs::write(&p, "{\"input_ids\":[1,2],\"assistant_masks\":[0,1]}\n").unwrap();
        assert_eq!(read_sft(&p).unwrap()[0].trained(), 1);
    }
}
