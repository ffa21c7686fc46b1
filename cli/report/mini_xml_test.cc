#include "cli/report/mini_xml.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace impq::cli::report::testing {
namespace {

using ::testing::HasSubstr;

TEST(MiniXmlTest, ReadsWellFormedDocuments) {
  auto doc = ParseXml(
      "<?xml version=\"1.0\"?>\n<!DOCTYPE html>\n<!-- c -->\n"
      "<html a='1' b=\"x &amp; &lt;y&gt; &#916;&#x3C6;\"><p id=\"p\">t&quot;<b>u</b>v"
      "<![CDATA[<raw>]]></p><br/></html>\n");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ((*doc)->name, "html");
  EXPECT_EQ((*doc)->Attribute("b"), "x & <y> Δφ");
  const XmlElement* p = (*doc)->FindById("p");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->TextContent(), "t\"uv<raw>");
  EXPECT_EQ((*doc)->FindAll("b").size(), 1u);
  EXPECT_EQ((*doc)->FindAll("br").size(), 1u);
}

TEST(MiniXmlTest, RejectsWhatIsNotWellFormed) {
  const std::pair<const char*, const char*> cases[] = {
      {"<a><b></a>", "</a> closes <b>"},
      {"<a>", "never closed"},
      {"<a>x < y</a>", "expected a name"},
      {"<a>x & y</a>", "bare '&'"},
      {"<a>&nbsp;</a>", "unknown entity &nbsp;"},
      {"<a x=1/>", "not quoted"},
      {"<a x='1' x='2'/>", "given twice"},
      {"<a x='<'/>", "'<' in the value"},
      {"<a/><b/>", "content after the root"},
      {"<a>]]></a>", "']]>'"},
      {"<a><!-- x -- y --></a>", "'--' inside a comment"},
      {"<a>\x01</a>", "character XML does not allow"},
      {"<a>\xC3</a>", "invalid UTF-8"},
      {"<a>&#0;</a>", "bad character reference"},
      {"<a b='1'c='2'/>", "expected white space"},
      {"text", "expected the root element"},
  };
  for (const auto& [text, message] : cases) {
    auto doc = ParseXml(text);
    ASSERT_FALSE(doc.ok()) << text;
    EXPECT_THAT(doc.status().message(), HasSubstr(message)) << text;
  }
}

}  // namespace
}  // namespace impq::cli::report::testing
