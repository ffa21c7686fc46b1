// Retention of finished jobs and the ListJobs page cursor: the two pure rules behind the
// coordinator's bounded client API (issue 20), kept apart from the core so that each is
// tested on its own.
#ifndef IMPQ_COORDINATOR_RETENTION_H_
#define IMPQ_COORDINATOR_RETENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace impq::coordinator {

// Which finished (DONE, FAILED, CANCELLED) jobs a coordinator keeps.
struct RetentionPolicy {
  // The newest this many finished jobs are kept (newest by finish time, then submission);
  // older ones are removed. Negative: no count limit.
  int64_t max_finished_jobs = 1000;
  // Finished jobs older than this are removed. Zero (or negative): no age limit.
  absl::Duration max_age = absl::ZeroDuration();
  // The request_ids of removed jobs remembered (the newest), so that a retried SubmitJob with
  // one is refused, naming the job, instead of running the job again. About 100 bytes each.
  int64_t max_removed_requests = 100000;
};

struct FinishedJobRef {
  int64_t seq = 0;          // submission order (unique)
  int64_t finished_ms = 0;  // when it reached its terminal state
};

// The seqs of the jobs in `finished` that `policy` removes at `now_ms`: those finished more
// than max_age ago, and the oldest beyond the newest max_finished_jobs. Ascending by seq.
std::vector<int64_t> JobsBeyondRetention(std::vector<FinishedJobRef> finished,
                                         const RetentionPolicy& policy, int64_t now_ms);

// ListJobs' position: the job list is in submission order (seq), and a page token names the
// last seq returned plus the state filter it was issued for, so paging is stable while jobs
// are added or removed.
struct PageCursor {
  int64_t after_seq = 0;  // list jobs with seq > after_seq
  int state = 0;          // the v1::JobState filter (0 = every state)
};
// Opaque (web-safe base64) text of the cursor.
std::string EncodePageToken(const PageCursor& cursor);
// The cursor of a token EncodePageToken made for the same `state`; InvalidArgument naming
// page_token otherwise (malformed, or issued for another state filter).
absl::StatusOr<PageCursor> DecodePageToken(absl::string_view token, int state);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_RETENTION_H_
