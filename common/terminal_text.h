// Text from another party (a job name, a server's error message) made safe for a terminal:
// one definition of a control character, for the coordinator that refuses them in job names
// and for impqctl that escapes whatever it prints.
#ifndef IMPQ_COMMON_TERMINAL_TEXT_H_
#define IMPQ_COMMON_TERMINAL_TEXT_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace impq {

// The byte offset of the first control character in `text`, or nullopt when there is none.
// Control characters: C0 (U+0000..U+001F, escape and newline included), DEL (U+007F), C1
// (U+0080..U+009F, as UTF-8), and any byte that is not part of valid UTF-8 (a terminal in an
// 8-bit mode takes a lone 0x9B as CSI).
std::optional<size_t> FindControlChar(absl::string_view text);

// `text` with every control character byte written as \xHH and every backslash as \\, so
// nothing reaches the terminal raw and the output reads back unambiguously. Printable UTF-8
// passes unchanged.
std::string EscapeControlChars(absl::string_view text);

}  // namespace impq

#endif  // IMPQ_COMMON_TERMINAL_TEXT_H_
