"""Loads a `verity export --format verifiers` directory with verifiers' own code: its
`load_outputs` (which skips rows without `example_id`) and its `GenerateOutputsBuilder`
metadata (reward means, pass@k grouped by example). Prints counts as JSON.
Usage: verifiers_load.py RESULTS_DIR ROLLOUTS_PER_EXAMPLE"""
import json
import sys
from pathlib import Path

from verifiers.legacy.types import RolloutTiming, TrajectoryStepTokens
from verifiers.legacy.utils.save_utils import GenerateOutputsBuilder, load_outputs

results, per_example = Path(sys.argv[1]), int(sys.argv[2])
outputs = load_outputs(results)
examples = {o["example_id"] for o in outputs}
for o in outputs:
    RolloutTiming.model_validate(o["timing"])
    for step in o["trajectory"]:
        tokens = step["tokens"]
        if tokens is None:
            continue
        missing = set(TrajectoryStepTokens.__annotations__) - set(tokens) - {"multi_modal_data", "prompt_attribution"}
        assert not missing, missing
        assert len(tokens["completion_ids"]) == len(tokens["completion_mask"]) == len(tokens["completion_logprobs"])
        assert len(tokens["prompt_ids"]) == len(tokens["prompt_mask"])
builder = GenerateOutputsBuilder(
    env_id="verity-export",
    env_args={},
    model="tiny",
    client=object(),
    num_examples=len(examples),
    rollouts_per_example=per_example,
    state_columns=None,
    sampling_args={},
    results_path=results,
)
builder.add_outputs(outputs)
meta = builder.build_metadata()
print(json.dumps({"rows": len(outputs), "examples": len(examples), "avg_reward": meta["avg_reward"], "pass_at_k": meta["pass_at_k"]}))
