// Salvage of a damaged store file: `impq-coordinator --recover --store PATH`.
//
// Works on a copy (the damaged file is never written): repairs what keeps SQLite from reading
// the copy at all (a torn 100-byte header is rebuilt for the store's page size; a file cut
// short is padded back to its declared length, so the pages that survive are reachable),
// then scans the jobs and results tables by rowid with SQLite's own reader, skipping over
// damaged b-tree regions (a failed scan restarts further on, at exponentially growing
// distances). Every row that decodes goes into a fresh store; rows that are readable but do
// not decode go to its quarantine tables. The damaged file (and its WAL) is then kept beside
// the store as `<path>.damaged-<unix seconds>` and the fresh store takes its place, under the
// same store id (README: Store recovery).
#ifndef IMPQ_COORDINATOR_STORE_RECOVER_H_
#define IMPQ_COORDINATOR_STORE_RECOVER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace impq::coordinator {

struct StoreRecoveryReport {
  int64_t jobs = 0;                // job rows recovered
  int64_t results = 0;             // result rows recovered (their units are not evaluated again)
  int64_t quarantined = 0;         // rows read but not decodable (kept in quarantine tables)
  int64_t damaged_regions = 0;     // places where a scan failed and was restarted further on
  bool header_rebuilt = false;     // the file header was unreadable and was rebuilt
  bool padded = false;             // the file was shorter than its header says
  std::string damaged_copy;        // where the damaged file now is
};

// Salvages the store at `path` as the file comment says. Errors: NotFound (no file),
// DataLoss when not even the table layout can be read (nothing is changed then).
absl::StatusOr<StoreRecoveryReport> RecoverStore(const std::string& path);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_STORE_RECOVER_H_
