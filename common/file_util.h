// File helpers: read-only memory maps, whole-file reads, crash-safe writes.
#ifndef IMPQ_COMMON_FILE_UTIL_H_
#define IMPQ_COMMON_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace impq {

// A read-only, private memory map of a whole file. Immutable after Open; thread-safe.
class MappedFile {
 public:
  // Maps `path`. Errors: NotFound (no such file), PermissionDenied, InvalidArgument (a
  // directory), Internal (mmap failed). An empty file maps to an empty span.
  static absl::StatusOr<std::shared_ptr<const MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  size_t size() const { return size_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Reads a whole file. Errors name the path and the reason.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically: a temporary file in the same directory is written,
// fsync'ed and renamed over `path`, so a crash leaves either the old or the new file.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

// Status for a failed system call on `path`, mapping errno to a code (ENOENT -> NotFound, ...).
absl::Status ErrnoToStatus(int err, const std::string& what, const std::string& path);

}  // namespace impq

#endif  // IMPQ_COMMON_FILE_UTIL_H_
