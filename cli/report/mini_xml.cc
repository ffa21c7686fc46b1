#include "cli/report/mini_xml.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace impq::cli::report::testing {
namespace {

bool NameStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool NameChar(char c) { return NameStart(c) || (c >= '0' && c <= '9') || c == '-' || c == '.'; }
bool Space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// XML 1.0 Char production.
bool XmlChar(uint32_t cp) {
  return cp == 0x9 || cp == 0xA || cp == 0xD || (cp >= 0x20 && cp <= 0xD7FF) ||
         (cp >= 0xE000 && cp <= 0xFFFD) || (cp >= 0x10000 && cp <= 0x10FFFF);
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(absl::string_view s) : s_(s) {}

  absl::StatusOr<std::unique_ptr<XmlElement>> Document() {
    RETURN_IF_ERROR(CheckCharacters());
    if (Starts("<?xml")) RETURN_IF_ERROR(ProcessingInstruction());
    RETURN_IF_ERROR(Misc());
    if (Starts("<!DOCTYPE")) {
      RETURN_IF_ERROR(Doctype());
      RETURN_IF_ERROR(Misc());
    }
    if (!Starts("<")) return Error("expected the root element");
    ASSIGN_OR_RETURN(std::unique_ptr<XmlElement> root, Element());
    RETURN_IF_ERROR(Misc());
    if (pos_ != s_.size()) return Error("content after the root element");
    return root;
  }

 private:
  absl::Status Error(const std::string& what) const {
    const auto line = 1 + std::count(s_.begin(), s_.begin() + std::min(pos_, s_.size()), '\n');
    return absl::InvalidArgumentError(
        absl::StrCat("XML error at byte ", pos_, " (line ", line, "): ", what));
  }
  bool Starts(absl::string_view p) const { return s_.substr(pos_).substr(0, p.size()) == p; }
  bool AtEnd() const { return pos_ >= s_.size(); }
  void SkipSpace() {
    while (!AtEnd() && Space(s_[pos_])) ++pos_;
  }

  // Every character is valid UTF-8 and an XML Char.
  absl::Status CheckCharacters() {
    for (size_t i = 0; i < s_.size();) {
      const auto c = static_cast<uint8_t>(s_[i]);
      size_t len = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
      uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
      bool ok = len > 0 && i + len <= s_.size();
      for (size_t k = 1; ok && k < len; ++k) {
        const auto d = static_cast<uint8_t>(s_[i + k]);
        ok = (d & 0xC0) == 0x80;
        cp = (cp << 6) | (d & 0x3F);
      }
      static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
      ok = ok && cp >= kMin[len] && XmlChar(cp);
      if (!ok) {
        pos_ = i;
        return Error("invalid UTF-8 or a character XML does not allow");
      }
      i += len;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Name() {
    if (AtEnd() || !NameStart(s_[pos_])) return Error("expected a name");
    const size_t start = pos_;
    while (!AtEnd() && NameChar(s_[pos_])) ++pos_;
    return std::string(s_.substr(start, pos_ - start));
  }

  // Comments, processing instructions and white space between markup.
  absl::Status Misc() {
    for (;;) {
      SkipSpace();
      if (Starts("<!--")) {
        RETURN_IF_ERROR(Comment());
      } else if (Starts("<?")) {
        RETURN_IF_ERROR(ProcessingInstruction());
      } else {
        return absl::OkStatus();
      }
    }
  }

  absl::Status Comment() {
    pos_ += 4;
    const size_t end = s_.find("--", pos_);
    if (end == absl::string_view::npos) return Error("unterminated comment");
    pos_ = end;
    if (!Starts("-->")) return Error("'--' inside a comment");
    pos_ += 3;
    return absl::OkStatus();
  }

  absl::Status ProcessingInstruction() {
    pos_ += 2;
    ASSIGN_OR_RETURN(std::string target, Name());
    const size_t end = s_.find("?>", pos_);
    if (end == absl::string_view::npos) return Error("unterminated processing instruction");
    pos_ = end + 2;
    return absl::OkStatus();
  }

  absl::Status Doctype() {
    pos_ += 9;
    if (AtEnd() || !Space(s_[pos_])) return Error("expected a space after <!DOCTYPE");
    SkipSpace();
    ASSIGN_OR_RETURN(std::string name, Name());
    while (!AtEnd() && s_[pos_] != '>') {
      if (s_[pos_] == '[') return Error("DTD internal subsets are not supported");
      ++pos_;
    }
    if (AtEnd()) return Error("unterminated <!DOCTYPE");
    ++pos_;
    return absl::OkStatus();
  }

  // A reference after '&': appends its character(s) to `out`.
  absl::Status Reference(std::string& out) {
    ++pos_;  // '&'
    const size_t end = s_.find(';', pos_);
    if (end == absl::string_view::npos || end - pos_ > 12) return Error("bare '&'");
    const absl::string_view ref = s_.substr(pos_, end - pos_);
    if (ref == "amp") {
      out += '&';
    } else if (ref == "lt") {
      out += '<';
    } else if (ref == "gt") {
      out += '>';
    } else if (ref == "quot") {
      out += '"';
    } else if (ref == "apos") {
      out += '\'';
    } else if (ref.size() > 1 && ref[0] == '#') {
      uint32_t cp = 0;
      const bool hex = ref[1] == 'x';
      const absl::string_view digits = ref.substr(hex ? 2 : 1);
      bool ok = !digits.empty();
      for (char c : digits) {
        int d = c >= '0' && c <= '9'          ? c - '0'
                : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                              : -1;
        ok = ok && d >= 0 && cp < 0x110000;
        cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(std::max(d, 0));
      }
      if (!ok || !XmlChar(cp)) return Error(absl::StrCat("bad character reference &", ref, ";"));
      AppendUtf8(cp, out);
    } else {
      return Error(absl::StrCat("unknown entity &", ref, ";"));
    }
    pos_ = end + 1;
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<XmlElement>> Element() {
    ++pos_;  // '<'
    auto e = std::make_unique<XmlElement>();
    ASSIGN_OR_RETURN(e->name, Name());
    for (;;) {
      const size_t before = pos_;
      SkipSpace();
      if (Starts("/>")) {
        pos_ += 2;
        return e;
      }
      if (Starts(">")) {
        ++pos_;
        break;
      }
      if (pos_ == before) return Error(absl::StrCat("expected white space or '>' in <", e->name));
      ASSIGN_OR_RETURN(std::string attr, Name());
      SkipSpace();
      if (!Starts("=")) return Error(absl::StrCat("attribute ", attr, " without '='"));
      ++pos_;
      SkipSpace();
      if (AtEnd() || (s_[pos_] != '"' && s_[pos_] != '\'')) {
        return Error(absl::StrCat("attribute ", attr, ": value not quoted"));
      }
      const char quote = s_[pos_++];
      std::string value;
      while (!AtEnd() && s_[pos_] != quote) {
        if (s_[pos_] == '<') return Error(absl::StrCat("'<' in the value of attribute ", attr));
        if (s_[pos_] == '&') {
          RETURN_IF_ERROR(Reference(value));
        } else {
          value += s_[pos_++];
        }
      }
      if (AtEnd()) return Error(absl::StrCat("unterminated value of attribute ", attr));
      ++pos_;
      if (!e->attributes.emplace(attr, std::move(value)).second) {
        return Error(absl::StrCat("attribute ", attr, " given twice in <", e->name, ">"));
      }
    }
    // Content.
    std::string text;
    auto flush = [&] {
      if (!text.empty()) e->children.push_back({nullptr, std::move(text)});
      text.clear();
    };
    for (;;) {
      if (AtEnd()) return Error(absl::StrCat("<", e->name, "> is never closed"));
      if (Starts("</")) {
        pos_ += 2;
        ASSIGN_OR_RETURN(std::string closing, Name());
        if (closing != e->name) {
          return Error(absl::StrCat("</", closing, "> closes <", e->name, ">"));
        }
        SkipSpace();
        if (!Starts(">")) return Error(absl::StrCat("expected '>' after </", closing));
        ++pos_;
        flush();
        return e;
      }
      if (Starts("<!--")) {
        RETURN_IF_ERROR(Comment());
      } else if (Starts("<![CDATA[")) {
        const size_t end = s_.find("]]>", pos_);
        if (end == absl::string_view::npos) return Error("unterminated CDATA section");
        text.append(s_.data() + pos_ + 9, end - pos_ - 9);
        pos_ = end + 3;
      } else if (Starts("<?")) {
        RETURN_IF_ERROR(ProcessingInstruction());
      } else if (Starts("<")) {
        flush();
        ASSIGN_OR_RETURN(std::unique_ptr<XmlElement> child, Element());
        e->children.push_back({std::move(child), ""});
      } else if (Starts("&")) {
        RETURN_IF_ERROR(Reference(text));
      } else if (Starts("]]>")) {
        return Error("']]>' in character data");
      } else {
        text += s_[pos_++];
      }
    }
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

}  // namespace

std::string XmlElement::Attribute(const std::string& key) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? "" : it->second;
}

std::string XmlElement::TextContent() const {
  std::string out;
  for (const Node& n : children) out += n.element ? n.element->TextContent() : n.text;
  return out;
}

std::vector<const XmlElement*> XmlElement::FindAll(const std::string& tag) const {
  std::vector<const XmlElement*> out;
  for (const Node& n : children) {
    if (!n.element) continue;
    if (n.element->name == tag) out.push_back(n.element.get());
    for (const XmlElement* d : n.element->FindAll(tag)) out.push_back(d);
  }
  return out;
}

const XmlElement* XmlElement::FindById(const std::string& id) const {
  if (Attribute("id") == id) return this;
  for (const Node& n : children) {
    if (!n.element) continue;
    if (const XmlElement* found = n.element->FindById(id)) return found;
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<XmlElement>> ParseXml(absl::string_view document) {
  return Parser(document).Document();
}

}  // namespace impq::cli::report::testing
