#include "common/terminal_text.h"

#include "absl/strings/str_format.h"

namespace impq {
namespace {

// The length of the printable character at text[i] (1..4), or 0 when the byte at i starts a
// control character or invalid UTF-8.
size_t PrintableLength(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char b = byte(i);
  if (b < 0x80) return b < 0x20 || b == 0x7f ? 0 : 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xbf;  // the second byte's range (RFC 3629 table)
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2;
    if (b == 0xc2) lo = 0xa0;  // U+0080..U+009F: C1 controls
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    if (b == 0xe0) lo = 0xa0;  // overlong
    if (b == 0xed) hi = 0x9f;  // surrogates
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    if (b == 0xf0) lo = 0x90;  // overlong
    if (b == 0xf4) hi = 0x8f;  // beyond U+10FFFF
  } else {
    return 0;
  }
  if (i + n > text.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xbf) return 0;
  }
  return n;
}

}  // namespace

std::optional<size_t> FindControlChar(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = PrintableLength(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::string EscapeControlChars(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t n = PrintableLength(text, i);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(text[i]));
      ++i;
    } else if (text[i] == '\\') {
      out += "\\\\";
      ++i;
    } else {
      out.append(text.data() + i, n);
      i += n;
    }
  }
  return out;
}

}  // namespace impq
