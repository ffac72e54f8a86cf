"""Checks a generated family checkpoint with Hugging Face's own code.

    tokenizer_check.py vectors DIR VOCAB.gguf [SHIFT]  # llama.cpp's .inp/.out vectors
                                                       # (ids >= 3 shifted by SHIFT)
    tokenizer_check.py prompt DIR               # apply_chat_template ids for one conversation
    tokenizer_check.py decode DIR               # the text of the ids on stdin (specials kept)

`vectors` encodes every test string of VOCAB.gguf.inp with the checkpoint's tokenizer.json
(the `tokenizers` library, no special tokens added) and prints a JSON report of the
mismatches against VOCAB.gguf.out (llama.cpp's expected ids). `prompt` prints the ids
`transformers.AutoTokenizer.apply_chat_template(messages, tools=..., add_generation_prompt=
True, tokenize=True)` gives for the conversation on stdin ({"messages", "tools"}).
"""
import json
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def vectors(model_dir, vocab, shift=0):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    inputs = open(vocab + ".inp", encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
    outputs = open(vocab + ".out", encoding="utf-8").read().split("\n")
    if inputs and inputs[-1].endswith("\n__ggml_vocab_test__"):
        inputs[-1] = inputs[-1][: -len("\n__ggml_vocab_test__")]
    bad = []
    for i, text in enumerate(inputs):
        want = [int(x) for x in outputs[i].split()] if i < len(outputs) else None
        # A vocabulary laid out with `shift` control tokens after <unk> <s> </s> (Mistral v3).
        if want is not None and shift:
            want = [x + shift if x >= 3 else x for x in want]
        got = tok.encode(text, add_special_tokens=False).ids
        if got != want:
            bad.append({"index": i, "text": text, "want": want, "got": got})
    print(json.dumps({"cases": len(inputs), "mismatches": bad}, ensure_ascii=False))


def prompt(model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    conv = json.load(sys.stdin)
    ids = tok.apply_chat_template(conv["messages"], tools=conv.get("tools"),
                                  add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    text = tok.apply_chat_template(conv["messages"], tools=conv.get("tools"),
                                   add_generation_prompt=True, tokenize=False)
    print(json.dumps({"ids": list(ids), "text": text}, ensure_ascii=False))


def decode(model_dir):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = json.load(sys.stdin)
    print(json.dumps({"text": tok.decode(ids, skip_special_tokens=False)}, ensure_ascii=False))


if __name__ == "__main__":
    if sys.argv[1] == "vectors":
        vectors(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif sys.argv[1] == "decode":
        decode(sys.argv[2])
    else:
        prompt(sys.argv[2])
