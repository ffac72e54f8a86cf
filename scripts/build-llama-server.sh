#!/usr/bin/env bash
# Builds llama.cpp's `llama-server` and `llama-bench` from the source vendored in the
# llama-cpp-python sdist that scripts/install-test-deps.sh caches (same version, same source
# the template/tokenizer fixtures come from). The build lives outside the clone, keyed by
# version, so it is paid once per machine (~15 min on 2 cores) and CI reuses it.
# Prints the directory holding the two binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

LCP_VERSION=0.3.36
test_cache="${VERITY_TEST_CACHE:-$HOME/.cache/verity-test}"
sdist="$test_cache/llama_cpp_python-$LCP_VERSION.tar.gz"
src="$test_cache/src/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
build="$test_cache/llama.cpp-$LCP_VERSION-build"
bin="$build/bin"

if [ -x "$bin/llama-server" ] && [ -x "$bin/llama-bench" ]; then
  echo "$bin"
  exit 0
fi
[ -s "$sdist" ] || { echo "missing $sdist: run scripts/install-test-deps.sh first" >&2; exit 1; }
if [ ! -f "$src/CMakeLists.txt" ]; then
  mkdir -p "$test_cache/src"
  tar xzf "$sdist" -C "$test_cache/src" "llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
fi
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check cmake ninja
  export PATH="$PWD/.venv/bin:$PATH"
fi
# No network at build or run time: no curl/openssl model downloads, no prebuilt web UI.
cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DGGML_NATIVE=ON >"$build.configure.log" 2>&1 \
  || { tail -30 "$build.configure.log" >&2; exit 1; }
cmake --build "$build" --target llama-server llama-bench -j "$(nproc)" >"$build.build.log" 2>&1 \
  || { tail -30 "$build.build.log" >&2; exit 1; }
echo "$bin"
