#include "common/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/escaping.h"

namespace impq {

std::string AbsolutePath(const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  const std::filesystem::path a = std::filesystem::absolute(path, ec);
  return ec ? path : a.lexically_normal().string();
}

absl::Status ErrnoToStatus(int err, const std::string& what, const std::string& path) {
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT: return absl::NotFoundError(msg);
    case EACCES:
    case EPERM: return absl::PermissionDeniedError(msg);
    case EISDIR:
    case ENOTDIR: return absl::InvalidArgumentError(msg);
    default: return absl::InternalError(msg);
  }
}

namespace {

const char* FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

}  // namespace

RegularFile::RegularFile(RegularFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
}

RegularFile& RegularFile::operator=(RegularFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    size_ = other.size_;
    other.fd_ = -1;
  }
  return *this;
}

RegularFile::~RegularFile() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<RegularFile> OpenRegularFile(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return ErrnoToStatus(errno, "cannot open", path);
  RegularFile file(path, fd, 0);  // closes fd on every return below
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoToStatus(errno, "cannot stat", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file: ", FileKind(st.st_mode)));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return ErrnoToStatus(errno, "cannot clear O_NONBLOCK", path);
  }
  file.size_ = static_cast<size_t>(st.st_size);
  return file;
}

namespace {

// Reads up to `n` bytes at the current offset of `file` into `out` (resized to what was read).
absl::Status ReadUpTo(const RegularFile& file, size_t n, std::string* out) {
  out->assign(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(file.fd(), out->data() + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoToStatus(errno, "read failed", file.path());
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  out->resize(got);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFileHead(const std::string& path, size_t max_bytes) {
  absl::StatusOr<RegularFile> file = OpenRegularFile(path);
  if (!file.ok()) return file.status();
  std::string out;
  if (absl::Status s = ReadUpTo(*file, std::min(max_bytes, file->size()), &out); !s.ok()) {
    return s;
  }
  return out;
}

namespace {

// True when `path` is `dir` or lies below it (both absolute and normalised; no trailing '/'
// except for "/" itself).
bool IsUnder(const std::string& path, const std::string& dir) {
  if (dir == "/") return !path.empty() && path[0] == '/';
  return path.size() >= dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}

std::string LexicalAbsolute(const std::string& path) {
  std::string n = std::filesystem::path(AbsolutePath(path)).lexically_normal().string();
  while (n.size() > 1 && n.back() == '/') n.pop_back();
  return n;
}

// realpath(3) into a std::string; errno is left set on failure.
bool RealPath(const std::string& path, std::string* out) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (r == nullptr) return false;
  *out = r;
  ::free(r);
  return true;
}

struct Root {
  std::string given;  // as configured, absolute and normalised
  std::string real;   // its realpath; empty when it does not resolve
};

// The index of the root whose real path holds `real`, or -1.
int RealRootOf(const std::vector<Root>& roots, const std::string& real) {
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!roots[i].real.empty() && IsUnder(real, roots[i].real)) return static_cast<int>(i);
  }
  return -1;
}

// Quoted for an error message: the user's own path, with control characters escaped (a
// terminal showing the message must not interpret them).
std::string Quoted(const std::string& path) { return absl::CHexEscape(path); }

constexpr int kMaxDirectoryEntries = 10000;

}  // namespace

absl::StatusOr<std::string> ResolveInDataRoots(const std::string& field, const std::string& path,
                                               const std::vector<std::string>& roots) {
  const std::string q = absl::StrCat(field, ": '", Quoted(path), "'");
  if (path.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": is empty"));
  if (path.size() > PATH_MAX || path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is not a valid path"));
  }
  if (roots.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(q, ": no data root is configured to resolve it in"));
  }
  std::vector<Root> rs;
  for (const std::string& r : roots) {
    Root root{LexicalAbsolute(r), ""};
    if (!RealPath(root.given, &root.real)) root.real.clear();
    rs.push_back(std::move(root));
  }
  const std::string lexical = LexicalAbsolute(
      std::filesystem::path(path).is_absolute()
          ? path
          : (std::filesystem::path(rs.front().given) / path).string());
  const bool lexically_inside = std::any_of(
      rs.begin(), rs.end(), [&](const Root& r) { return IsUnder(lexical, r.given); });
  if (!lexically_inside) {
    return absl::PermissionDeniedError(absl::StrCat(q, " is outside the data roots"));
  }
  std::string real;
  if (!RealPath(lexical, &real)) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat(q, ": no such file under the data roots"));
    }
    if (err == ELOOP || err == ENAMETOOLONG || err == ENOTDIR) {
      return absl::InvalidArgumentError(absl::StrCat(q, ": cannot be resolved: ", std::strerror(err)));
    }
    return ErrnoToStatus(err, "cannot be resolved", q);
  }
  const int at = RealRootOf(rs, real);
  if (at < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(q, " resolves outside the data roots (through a symbolic link)"));
  }
  struct stat st;
  if (::stat(real.c_str(), &st) != 0) return ErrnoToStatus(errno, "cannot stat", q);
  if (S_ISDIR(st.st_mode)) {
    // A model folder: the readers open its files by name (config.json, shards, tokenizer).
    DIR* d = ::opendir(real.c_str());
    if (d == nullptr) return ErrnoToStatus(errno, "cannot list", q);
    int n = 0;
    absl::Status bad;
    while (const dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      if (++n > kMaxDirectoryEntries) {
        bad = absl::InvalidArgumentError(absl::StrCat(
            q, ": a directory of more than ", kMaxDirectoryEntries, " entries"));
        break;
      }
      const std::string entry = real + "/" + name;
      struct stat lst;
      if (::lstat(entry.c_str(), &lst) != 0 || !S_ISLNK(lst.st_mode)) continue;
      std::string target;  // a dangling link cannot be opened: nothing to confine
      if (RealPath(entry, &target) && RealRootOf(rs, target) < 0) {
        bad = absl::PermissionDeniedError(
            absl::StrCat(q, ": its entry '", Quoted(name),
                         "' resolves outside the data roots (through a symbolic link)"));
        break;
      }
    }
    ::closedir(d);
    if (!bad.ok()) return bad;
  } else if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(q, " is not a regular file or directory: it is ", FileKind(st.st_mode)));
  }
  const Root& r = rs[at];
  const std::string below = real.substr(r.real == "/" ? 0 : r.real.size());  // "" or "/..."
  if (r.given == "/") return below.empty() ? r.given : below;
  return r.given + below;
}

absl::StatusOr<std::shared_ptr<const MappedFile>> MappedFile::Open(const std::string& path) {
  absl::StatusOr<RegularFile> file = OpenRegularFile(path);
  if (!file.ok()) return file.status();
  const size_t size = file->size();
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file->fd(), 0);
    if (p == MAP_FAILED) return ErrnoToStatus(errno, "cannot mmap", path);
    data = static_cast<const uint8_t*>(p);
  }
  return std::shared_ptr<const MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  absl::StatusOr<RegularFile> file = OpenRegularFile(path);
  if (!file.ok()) return file.status();
  std::string out;
  if (absl::Status s = ReadUpTo(*file, file->size(), &out); !s.ok()) return s;
  if (out.size() != file->size()) {
    return absl::DataLossError(absl::StrCat(path, ": read ", out.size(), " of ", file->size(),
                                            " bytes (the file shrank while being read)"));
  }
  return out;
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents) {
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return ErrnoToStatus(errno, "cannot create temporary file", tmp);
  size_t put = 0;
  while (put < contents.size()) {
    ssize_t w = ::write(fd, contents.data() + put, contents.size() - put);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoToStatus(err, "write failed", tmp);
    }
    put += static_cast<size_t>(w);
  }
  if (::fchmod(fd, 0644) != 0 || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoToStatus(err, "fsync failed", tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoToStatus(err, "rename failed", path);
  }
  return absl::OkStatus();
}

}  // namespace impq
