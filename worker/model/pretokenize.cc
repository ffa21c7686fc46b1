#include "worker/model/pretokenize.h"

#include <algorithm>

namespace impq::model {
namespace {

struct Range {
  uint32_t lo, hi;
};

bool InRanges(uint32_t cp, std::initializer_list<Range> ranges) {
  for (const Range& r : ranges) {
    if (cp >= r.lo && cp <= r.hi) return true;
  }
  return false;
}

// One decoded character: its class, its first byte, its byte length.
struct Char {
  UnicodeClass cls;
  uint32_t cp;
  size_t begin, len;
};

// UTF-8 decoding; an invalid or truncated sequence yields one "other" character per byte.
std::vector<Char> Decode(std::string_view s) {
  std::vector<Char> out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3f);
    }
    // Overlong forms, surrogates and values above U+10FFFF are invalid too.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
               (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))) {
      ok = false;
    }
    if (!ok) {
      out.push_back({UnicodeClass::kOther, b, i, 1});
      ++i;
      continue;
    }
    out.push_back({UnicodeClassOf(cp), cp, i, len});
    i += len;
  }
  return out;
}

bool IsNewline(const Char& c) { return c.cp == '\r' || c.cp == '\n'; }

}  // namespace

UnicodeClass UnicodeClassOf(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return UnicodeClass::kLetter;
    if (cp >= '0' && cp <= '9') return UnicodeClass::kNumber;
    if (cp == ' ' || (cp >= 0x09 && cp <= 0x0d)) return UnicodeClass::kSpace;
    return UnicodeClass::kOther;
  }
  // White_Space, exactly.
  if (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
      cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000) {
    return UnicodeClass::kSpace;
  }
  if (InRanges(cp, {{0xb2, 0xb3}, {0xb9, 0xb9}, {0xbc, 0xbe}, {0x660, 0x669}, {0x6f0, 0x6f9},
                    {0x7c0, 0x7c9}, {0x966, 0x96f}, {0x9e6, 0x9ef}, {0xa66, 0xa6f},
                    {0xae6, 0xaef}, {0xb66, 0xb6f}, {0xbe6, 0xbf2}, {0xc66, 0xc6f},
                    {0xce6, 0xcef}, {0xd66, 0xd6f}, {0xe50, 0xe59}, {0xed0, 0xed9},
                    {0xf20, 0xf33}, {0x1040, 0x1049}, {0x17e0, 0x17e9}, {0x1810, 0x1819},
                    {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089}, {0x2150, 0x2189},
                    {0x2460, 0x249b}, {0x24ea, 0x24ff}, {0x2776, 0x2793}, {0x3007, 0x3007},
                    {0x3021, 0x3029}, {0x3038, 0x303a}, {0x3192, 0x3195}, {0x3220, 0x3229},
                    {0x3248, 0x324f}, {0x3251, 0x325f}, {0x3280, 0x3289}, {0x32b1, 0x32bf},
                    {0xff10, 0xff19}, {0x1d7ce, 0x1d7ff}, {0x1f100, 0x1f10c}})) {
    return UnicodeClass::kNumber;
  }
  if (cp == 0xaa || cp == 0xb5 || cp == 0xba) return UnicodeClass::kLetter;
  if (InRanges(cp, {{0x80, 0xbf}, {0xd7, 0xd7}, {0xf7, 0xf7}, {0x2c2, 0x2c5}, {0x2d2, 0x2df},
                    {0x2e5, 0x2eb}, {0x2ed, 0x2ed}, {0x2ef, 0x36f}, {0x37e, 0x37e},
                    {0x387, 0x387}, {0x483, 0x489}, {0x55a, 0x55f}, {0x589, 0x58a},
                    {0x591, 0x5c7}, {0x600, 0x61f}, {0x64b, 0x65f}, {0x670, 0x670},
                    {0x6d4, 0x6d4}, {0x6d6, 0x6ed}, {0x964, 0x965}, {0x970, 0x970},
                    {0xe3f, 0xe3f}, {0x2000, 0x206f}, {0x20a0, 0x20ff}, {0x2190, 0x245f},
                    {0x249c, 0x24e9}, {0x2500, 0x2775}, {0x2794, 0x2bff}, {0x2e00, 0x2e7f},
                    {0x3000, 0x3004}, {0x3008, 0x3020}, {0x302a, 0x3030}, {0x303d, 0x303f},
                    {0x3099, 0x309c}, {0x30a0, 0x30a0}, {0x30fb, 0x30fb}, {0xe000, 0xf8ff},
                    {0xfe00, 0xfe6f}, {0xff01, 0xff0f}, {0xff1a, 0xff20}, {0xff3b, 0xff40},
                    {0xff5b, 0xff65}, {0xfff0, 0xffff}, {0x1d100, 0x1d1ff},
                    {0x1f000, 0x1faff}, {0xe0000, 0xe01ef}, {0xf0000, 0x10ffff}})) {
    return UnicodeClass::kOther;
  }
  return UnicodeClass::kLetter;
}

std::vector<std::string_view> SplitPretokens(std::string_view text, int max_digits) {
  const std::vector<Char> c = Decode(text);
  const size_t n = c.size();
  auto cls = [&](size_t i) { return c[i].cls; };
  auto lower = [&](size_t i) -> uint32_t {
    const uint32_t cp = c[i].cp;
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  };
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < n) {
    size_t end = i;  // exclusive, in characters
    // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (c[i].cp == '\'' && i + 1 < n) {
      const uint32_t a = lower(i + 1), b = i + 2 < n ? lower(i + 2) : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') end = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        end = i + 3;
    }
    // 2. [^\r\n\p{L}\p{N}]?\p{L}+
    if (end == i) {
      size_t j = i;
      if (cls(j) != UnicodeClass::kLetter && cls(j) != UnicodeClass::kNumber && !IsNewline(c[j]) &&
          j + 1 < n && cls(j + 1) == UnicodeClass::kLetter) {
        ++j;
      }
      if (cls(j) == UnicodeClass::kLetter) {
        while (j < n && cls(j) == UnicodeClass::kLetter) ++j;
        end = j;
      }
    }
    // 3. \p{N}{1,max_digits}
    if (end == i && cls(i) == UnicodeClass::kNumber) {
      size_t j = i;
      while (j < n && j - i < static_cast<size_t>(max_digits) && cls(j) == UnicodeClass::kNumber) ++j;
      end = j;
    }
    // 4. ' '?[^\s\p{L}\p{N}]+[\r\n]*
    if (end == i) {
      size_t j = i;
      if (c[j].cp == ' ' && j + 1 < n && cls(j + 1) == UnicodeClass::kOther) ++j;
      if (cls(j) == UnicodeClass::kOther) {
        while (j < n && cls(j) == UnicodeClass::kOther) ++j;
        while (j < n && IsNewline(c[j])) ++j;
        end = j;
      }
    }
    if (end == i && cls(i) == UnicodeClass::kSpace) {
      size_t run = i;
      while (run < n && cls(run) == UnicodeClass::kSpace) ++run;  // maximal whitespace run
      // 5. \s*[\r\n]+: up to the last newline of the run.
      for (size_t j = run; j > i; --j) {
        if (IsNewline(c[j - 1])) {
          end = j;
          break;
        }
      }
      // 6. \s+(?!\S): the whole run at the end of the text, else all but its last character.
      if (end == i) {
        if (run == n) end = run;
        else if (run - i >= 2) end = run - 1;
      }
      // 7. \s+
      if (end == i) end = run;
    }
    if (end == i) end = i + 1;  // unreachable: every character matches some alternative
    const size_t b = c[i].begin, e = end < n ? c[end].begin : text.size();
    out.push_back(text.substr(b, e - b));
    i = end;
  }
  return out;
}

}  // namespace impq::model
