// A strict, small XML reader for tests of generated markup (the `impq report` page): it
// accepts exactly well-formed XML 1.0 without DTD subsets — an optional XML declaration,
// comments, processing instructions and one `<!DOCTYPE name ...>` line before one root
// element; elements with unique, quoted attributes; character data with the predefined and
// numeric character references; CDATA sections — and rejects everything else: unclosed or
// mismatched tags, a bare `<` or `&`, an unknown entity, `]]>` in text, `--` in a comment,
// characters XML forbids, invalid UTF-8, content after the root.
//
// Not a general XML library: no namespaces processing (a prefixed name is just a name), no
// external entities, no validation. Thread-compatible.
#ifndef IMPQ_CLI_REPORT_MINI_XML_H_
#define IMPQ_CLI_REPORT_MINI_XML_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace impq::cli::report::testing {

struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attributes;  // references decoded
  // Children in document order: text runs (decoded) interleave with elements; an entry with
  // element == nullptr is text.
  struct Node {
    std::unique_ptr<XmlElement> element;
    std::string text;
  };
  std::vector<Node> children;

  // The attribute's value, or "" when absent.
  std::string Attribute(const std::string& name) const;
  // All text inside this element, descendants included, in document order.
  std::string TextContent() const;
  // Every descendant element (not this one) named `name`, in document order.
  std::vector<const XmlElement*> FindAll(const std::string& name) const;
  // The first descendant (or this element) whose id attribute is `id`; nullptr if none.
  const XmlElement* FindById(const std::string& id) const;
};

// Parses `document`. InvalidArgument with the byte offset, line and the reason on the first
// well-formedness error.
absl::StatusOr<std::unique_ptr<XmlElement>> ParseXml(absl::string_view document);

}  // namespace impq::cli::report::testing

#endif  // IMPQ_CLI_REPORT_MINI_XML_H_
