#!/usr/bin/env bash
# The model-file readers and tokenizers (everything that parses untrusted bytes) under
# AddressSanitizer + UndefinedBehaviorSanitizer, including the seeded mutation loops over
# GGUF, safetensors, config.json and llama2.c headers and tokenizer files (FormatFuzzTest):
# every mutated file that loads is also tokenized and run through a short forward pass, so
# what the readers accept is checked to be safe to use, not only to load. Builds only those
# tests, in ./build-asan. Called by test.sh.
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
