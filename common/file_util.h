// File helpers: read-only memory maps, whole-file reads, crash-safe writes, and the one way
// impq opens a file it did not write (a model, tokenizer, text or config named by a user or a
// job): OpenRegularFile.
#ifndef IMPQ_COMMON_FILE_UTIL_H_
#define IMPQ_COMMON_FILE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace impq {

// An open, read-only file descriptor of a regular file; closes it on destruction. Movable.
class RegularFile {
 public:
  RegularFile(RegularFile&& other) noexcept;
  RegularFile& operator=(RegularFile&& other) noexcept;
  RegularFile(const RegularFile&) = delete;
  RegularFile& operator=(const RegularFile&) = delete;
  ~RegularFile();

  int fd() const { return fd_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  friend absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path);
  RegularFile(std::string path, int fd, size_t size)
      : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_ = -1;
  size_t size_ = 0;
};

// Opens `path` for reading, never blocking and only when it is a regular file (after symlinks).
// The open itself is O_NONBLOCK | O_NOCTTY, so a FIFO with no writer, a terminal or a device
// cannot wedge the caller in open(); the descriptor is then checked with fstat and refused
// unless S_ISREG, before a byte is read. (O_NONBLOCK is cleared again: reads of a regular file
// never block anyway.) Every reader of untrusted files goes through here — MappedFile::Open,
// ReadFileToString, ReadFileHead — so this is the single place the rule lives.
// Errors name the path: NotFound (no such file), PermissionDenied, InvalidArgument ("not a
// regular file: a FIFO" / "a directory" / "a character device" / ...), Internal otherwise.
absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path);

// Up to `max_bytes` from the start of the regular file at `path` (OpenRegularFile's rules).
absl::StatusOr<std::string> ReadFileHead(const std::string& path, size_t max_bytes);

// A read-only, private memory map of a whole file. Immutable after Open; thread-safe.
class MappedFile {
 public:
  // Maps `path` (OpenRegularFile's rules). Errors: NotFound (no such file), PermissionDenied,
  // InvalidArgument (a directory, FIFO, device or socket), Internal (mmap failed). An empty
  // file maps to an empty span.
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

// Reads a whole regular file (OpenRegularFile's rules). Errors name the path and the reason.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically: a temporary file in the same directory is written,
// fsync'ed and renamed over `path`, so a crash leaves either the old or the new file.
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

// `path` made absolute against the working directory and lexically normalised ("a/../b" -> "b");
// symlinks are not resolved. Empty stays empty; a path the cwd cannot complete is returned as is.
// The one spelling of a path a job records (settings, identity) and the coordinator stores.
std::string AbsolutePath(const std::string& path);

// Resolves `path` and confines it to the data roots: the one rule, used where a job's spec is
// accepted (the coordinator) and again where its files are opened (each worker), so a symlink
// swapped in between is caught by the second check.
//   - A relative `path` is taken relative to the first root.
//   - Lexical check first (after "a/../b" normalisation, no file system access): a path that
//     is not spelled under a root is refused without looking at it, so the answer does not
//     tell whether a file outside the roots exists.
//   - Then realpath(3) (every symlink, ".", ".."): the file must exist, and its real path
//     must lie under the real path of some root.
//   - It must be a regular file or a directory (a FIFO, device or socket is refused without
//     being opened). For a directory (a Hugging Face model folder), each entry in it must
//     resolve under a root too: the readers open the files of a model folder by name.
// Returns the real path re-spelled under the root as configured (root + the part below the
// root's real path): symlinks below the root are gone, the root's own spelling is kept.
// `roots` must be non-empty; each is a directory (absolute, or relative to the working
// directory). Errors start with `field` and quote `path` as given — never the roots, nor the
// path a symlink points to: PermissionDenied (outside the roots, lexically or through a
// symlink), NotFound (no such file), InvalidArgument (not a valid path; not a regular file or
// directory, naming its kind), or the errno's code.
absl::StatusOr<std::string> ResolveInDataRoots(const std::string& field, const std::string& path,
                                               const std::vector<std::string>& roots);

// Status for a failed system call on `path`, mapping errno to a code (ENOENT -> NotFound, ...).
absl::Status ErrnoToStatus(int err, const std::string& what, const std::string& path);

}  // namespace impq

#endif  // IMPQ_COMMON_FILE_UTIL_H_
