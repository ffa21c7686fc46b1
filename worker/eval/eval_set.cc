#include "worker/eval/eval_set.h"

#include "absl/strings/str_cat.h"

namespace impq::eval {
namespace {

constexpr std::string_view kEndOfText = "<|endoftext|>";

std::string_view Strip(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' || c == '\v'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn(line) for each line (without its '\n'; a trailing '\r' is kept).
template <typename Fn>
void ForEachLine(std::string_view text, Fn&& fn) {
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    fn(text.substr(start, end - start), start, end);
    if (end == text.size()) break;
    start = end + 1;
  }
}

bool IsEndOfTextLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line == kEndOfText;
}

bool HasEndOfTextLines(std::string_view text) {
  bool found = false;
  ForEachLine(text, [&](std::string_view line, size_t, size_t) { found |= IsEndOfTextLine(line); });
  return found;
}

}  // namespace

const char* EvalModeName(EvalMode mode) {
  return mode == EvalMode::kDocument ? "document" : "stream";
}

absl::StatusOr<EvalMode> ParseEvalMode(const std::string& name) {
  if (name == "document") return EvalMode::kDocument;
  if (name == "stream") return EvalMode::kStream;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode: unknown evaluation mode '", name, "' (expected document or stream)"));
}

std::vector<std::string_view> SplitDocuments(std::string_view text) {
  std::vector<std::string_view> docs;
  auto add = [&](std::string_view d) {
    d = Strip(d);
    if (!d.empty()) docs.push_back(d);
  };
  if (HasEndOfTextLines(text)) {
    size_t doc_start = 0;
    ForEachLine(text, [&](std::string_view line, size_t start, size_t end) {
      if (IsEndOfTextLine(line)) {
        add(text.substr(doc_start, start - doc_start));
        doc_start = end + 1 > text.size() ? text.size() : end + 1;
      }
    });
    add(text.substr(doc_start));
  } else {
    size_t start = 0;
    for (;;) {
      size_t pos = text.find("\n\n", start);
      if (pos == std::string_view::npos) {
        add(text.substr(start));
        break;
      }
      add(text.substr(start, pos - start));
      start = pos + 2;
    }
  }
  return docs;
}

absl::StatusOr<EvalSet> BuildEvalSet(const model::Tokenizer& tokenizer, std::string_view text,
                                     EvalMode mode, int64_t ctx, int64_t max_ctx,
                                     const std::string& source) {
  if (ctx < 4) {
    return absl::InvalidArgumentError(absl::StrCat("--ctx ", ctx, " is too small (minimum 4)"));
  }
  if (ctx > max_ctx) {
    return absl::InvalidArgumentError(absl::StrCat("--ctx ", ctx,
                                                   " is larger than the model's sequence length ",
                                                   max_ctx));
  }
  EvalSet set;
  set.mode = mode;
  set.ctx = ctx;
  if (mode == EvalMode::kDocument) {
    for (std::string_view doc : SplitDocuments(text)) {
      EvalSequence seq;
      seq.tokens = tokenizer.Encode(doc, /*add_bos=*/true);
      if (static_cast<int64_t>(seq.tokens.size()) > ctx) {
        seq.tokens.resize(static_cast<size_t>(ctx));
        ++set.truncated;
      }
      if (seq.tokens.size() < 2) continue;
      set.sequences.push_back(std::move(seq));
    }
    if (set.sequences.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": no text to evaluate (the file is empty or only separators)"));
    }
  } else {
    std::string stream;
    stream.reserve(text.size());
    ForEachLine(text, [&](std::string_view line, size_t start, size_t end) {
      if (IsEndOfTextLine(line)) return;
      stream.append(text.substr(start, end < text.size() ? end - start + 1 : end - start));
    });
    std::string_view body = Strip(stream);
    if (body.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": no text to evaluate (the file is empty)"));
    }
    std::vector<int> all = tokenizer.Encode(body, /*add_bos=*/true);
    const int64_t windows = static_cast<int64_t>(all.size()) / ctx;
    if (windows == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": the text has ", all.size(), " tokens, fewer than one window of --ctx ", ctx,
          "; use a smaller --ctx or document mode"));
    }
    for (int64_t w = 0; w < windows; ++w) {
      EvalSequence seq;
      seq.tokens.assign(all.begin() + w * ctx, all.begin() + (w + 1) * ctx);
      seq.tokens[0] = tokenizer.bos_id();
      seq.score_begin = ctx / 2;
      set.sequences.push_back(std::move(seq));
    }
  }
  for (const auto& s : set.sequences) {
    set.scored_tokens += s.scored();
    set.processed_tokens += static_cast<int64_t>(s.tokens.size());
  }
  return set;
}

absl::Status ValidateEvalSet(const model::ModelConfig& config, const EvalSet& set,
                             const std::string& what) {
  if (set.sequences.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  for (size_t i = 0; i < set.sequences.size(); ++i) {
    const auto& s = set.sequences[i];
    if (static_cast<int64_t>(s.tokens.size()) > config.seq_len) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": sequence ", i, " has ",
                                                     s.tokens.size(),
                                                     " tokens, more than the model's seq_len ",
                                                     config.seq_len));
    }
    if (s.score_begin < 0 || s.scored() < 1) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": sequence ", i, " scores no token"));
    }
    for (size_t t = 0; t < s.tokens.size(); ++t) {
      if (s.tokens[t] < 0 || s.tokens[t] >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": sequence ", i, " position ", t, " has token id ", s.tokens[t],
            " outside the model's vocabulary of ", config.vocab_size,
            " (tokenizer and model do not match?)"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace impq::eval
