// The pre-tokenizer split of Llama-3 and Qwen-2/3 byte-level BPE tokenizers, by hand.
//
// Their tokenizer.json split regex is
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//   |\s*[\r\n]+|\s+(?!\S)|\s+
// (Qwen: \p{N} instead of \p{N}{1,3}). Debian's re2 has no lookahead and std::regex no Unicode
// classes, so SplitPretokens walks the alternatives in order at each position, as a
// leftmost-first regex engine does, with each alternative's greedy/backtracking outcome
// worked out in pretokenize.cc.
//
// Approximation: the Unicode classes come from a compact table (UnicodeClassOf), not the full
// Unicode database. ASCII and Latin-1 are exact; whitespace (White_Space) is exact; numbers
// cover the decimal-digit blocks of the major scripts and the common No/Nl ranges
// (superscripts, fractions, Roman numerals, circled numbers); combining marks, punctuation,
// symbol, arrow, box, emoji, private-use blocks are "other"; every remaining code point counts
// as a letter. So spacing marks of Indic scripts (category Mc) and rare symbols outside those
// blocks are treated as letters, where the regex would split at them. Invalid UTF-8 bytes are
// single "other" characters (the regex engine never sees them: HF requires valid UTF-8).
#ifndef IMPQ_WORKER_MODEL_PRETOKENIZE_H_
#define IMPQ_WORKER_MODEL_PRETOKENIZE_H_

#include <cstdint>
#include <string_view>
#include <vector>

namespace impq::model {

enum class UnicodeClass { kLetter, kNumber, kSpace, kOther };
UnicodeClass UnicodeClassOf(uint32_t code_point);

// Splits `text` into consecutive pieces (their concatenation is `text`). `max_digits` is the
// longest run of digits in one piece: 3 for Llama-3, 1 for Qwen-2/3.
std::vector<std::string_view> SplitPretokens(std::string_view text, int max_digits);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_PRETOKENIZE_H_
