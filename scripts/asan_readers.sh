#!/usr/bin/env bash
# The model-file readers and tokenizers (everything that parses untrusted bytes) under
# AddressSanitizer + UndefinedBehaviorSanitizer, including the seeded mutation loop over
# GGUF and safetensors headers. Builds only those tests, in ./build-asan. Called by test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  >/dev/null
ninja -C build-asan model_test model_formats_test bpe_tokenizer_test
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
# Skipped here: the whole-corpus perplexity test and the O(n²) run.c transcription (they check
# numbers, not memory safety, and take minutes under the sanitizers).
build-asan/worker/model/model_test --gtest_filter=-Llama2cTokenizerTest.MatchesRunCEncoderOnRealText
build-asan/worker/model/model_formats_test --gtest_filter=-SharedStories260KTest.AllFourFormsGiveTheReferencePerplexity
build-asan/worker/model/bpe_tokenizer_test
