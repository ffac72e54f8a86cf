"""How real chat templates write tool calls, rendered by Hugging Face's own code.

For each template file given, renders with `transformers`' chat-template renderer (what
models are trained and served with) one user turn with the generation prompt, then the
same conversation with an assistant turn that makes tool calls, and prints one JSON line
per template: the assistant turn's text as the template writes it in history — the layout
a model of that family was trained to emit. Two parallel calls where the template accepts
them, else one. A template that renders neither prints its error.

    .venv/bin/python tests/clients/render_calls.py .test-data/llama.cpp/templates/*.jinja
"""
import json
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

TOOLS = [
    {"type": "function", "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression exactly.",
        "parameters": {"type": "object",
                       "properties": {"expression": {"type": "string"}},
                       "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "search",
        "description": "Search the local documentation index.",
        "parameters": {"type": "object",
                       "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
                       "required": ["query"]}}},
]

# Ids of nine letters and digits: Mistral's templates refuse any other shape.
CALLS = [
    {"id": "call0abcd", "type": "function",
     "function": {"name": "calculator", "arguments": {"expression": "17 * 23"}}},
    {"id": "call1abcd", "type": "function",
     "function": {"name": "search", "arguments": {"query": "tokio runtime", "k": 3}}},
]

USER = {"role": "user", "content": "What is 17 * 23, and what is the tokio runtime?"}


def special_tokens(template):
    """The bos/eos strings a tokenizer of this template's family would pass (Hugging Face
    passes the tokenizer's special tokens to every template)."""
    if "<|im_start|>" in template:
        return {"bos_token": "", "eos_token": "<|im_end|>"}
    if "<|start_header_id|>" in template:
        return {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    return {"bos_token": "<s>", "eos_token": "</s>"}


def render(template, messages, generation_prompt):
    out = render_jinja_template([messages], tools=TOOLS, chat_template=template,
                                add_generation_prompt=generation_prompt,
                                **special_tokens(template))
    return out[0][0] if isinstance(out, tuple) else out[0]


def assistant_turn(template, n):
    prefix = render(template, [USER], True)
    full = render(template, [USER, {"role": "assistant", "content": "", "tool_calls": CALLS[:n]}],
                  False)
    if not full.startswith(prefix):
        # Some templates write the generation prompt differently from the turn header in
        # history; the turn then starts where the two first differ.
        # (QwQ opens its generation prompt with `<think>`, its history turns without): the
        # turn starts at the line where the two first differ.
        i = 0
        while i < min(len(prefix), len(full)) and prefix[i] == full[i]:
            i += 1
        return full[full.rfind("\n", 0, i) + 1:], False
    return full[len(prefix):], True


for path in sys.argv[1:]:
    template = open(path, encoding="utf-8").read()
    name = os.path.basename(path)
    row = {"template": name}
    for n in (2, 1):
        try:
            text, continues = assistant_turn(template, n)
            row.update(calls=n, assistant=text, prefix_continues=continues,
                       expected=[{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                                 for c in CALLS[:n]])
            row.pop("error", None)
            break
        except Exception as e:  # the template refuses this conversation: say why
            row["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(row, ensure_ascii=False))
