#include "coordinator/retention.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace impq::coordinator {

std::vector<int64_t> JobsBeyondRetention(std::vector<FinishedJobRef> finished,
                                         const RetentionPolicy& policy, int64_t now_ms) {
  // Newest first: by finish time, then by submission (ties in the same millisecond).
  std::sort(finished.begin(), finished.end(), [](const FinishedJobRef& a, const FinishedJobRef& b) {
    return a.finished_ms != b.finished_ms ? a.finished_ms > b.finished_ms : a.seq > b.seq;
  });
  const bool by_age = policy.max_age > absl::ZeroDuration();
  const int64_t cutoff_ms = by_age ? now_ms - absl::ToInt64Milliseconds(policy.max_age) : 0;
  std::vector<int64_t> out;
  for (size_t i = 0; i < finished.size(); ++i) {
    const bool over_count =
        policy.max_finished_jobs >= 0 && static_cast<int64_t>(i) >= policy.max_finished_jobs;
    const bool too_old = by_age && finished[i].finished_ms < cutoff_ms;
    if (over_count || too_old) out.push_back(finished[i].seq);
  }
  std::sort(out.begin(), out.end());
  return out;
}

namespace {
constexpr absl::string_view kTokenVersion = "p1";
}  // namespace

std::string EncodePageToken(const PageCursor& cursor) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(kTokenVersion, ":", cursor.after_seq, ":", cursor.state));
}

absl::StatusOr<PageCursor> DecodePageToken(absl::string_view token, int state) {
  const auto bad = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("page_token: ", why));
  };
  std::string text;
  if (token.size() > 64 || !absl::WebSafeBase64Unescape(token, &text)) {
    return bad("not a token this coordinator issued (use the last response's next_page_token)");
  }
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  PageCursor c;
  if (parts.size() != 3 || parts[0] != kTokenVersion || !absl::SimpleAtoi(parts[1], &c.after_seq) ||
      !absl::SimpleAtoi(parts[2], &c.state) || c.after_seq < 0) {
    return bad("not a token this coordinator issued (use the last response's next_page_token)");
  }
  if (c.state != state) {
    return bad(absl::StrCat("was issued for state filter ", c.state, ", the request asks for ",
                            state, "; keep the filter while paging"));
  }
  return c;
}

}  // namespace impq::coordinator
