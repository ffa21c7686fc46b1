#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/flags.h"
#include "common/rng.h"
#include "common/terminal_text.h"
#include "common/test_fifo.h"
#include "common/thread_pool.h"
#include "gtest/gtest.h"

namespace impq {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/impq_common_test_" + std::to_string(::getpid()) +
         "_" + name;
}

// The terminal attack of issue 20: a name that clears the screen, retitles the window or
// rewrites the previous line must come out inert; printable text, UTF-8 included, unchanged.
TEST(TerminalTextTest, EscapesEveryControlCharacterAndNothingElse) {
  EXPECT_EQ(EscapeControlChars("plain name, caf\xc3\xa9 \xe2\x9c\x93"),
            "plain name, caf\xc3\xa9 \xe2\x9c\x93");
  EXPECT_EQ(EscapeControlChars("\x1b[2J\x1b]0;pwned\x07ok"), "\\x1b[2J\\x1b]0;pwned\\x07ok");
  EXPECT_EQ(EscapeControlChars("a\rb\nc\td\x7f"), "a\\x0db\\x0ac\\x09d\\x7f");
  EXPECT_EQ(EscapeControlChars(std::string("nul\0x", 5)), "nul\\x00x");
  // C1 controls as UTF-8 (U+009B is CSI) and a lone 8-bit CSI byte; a truncated sequence.
  EXPECT_EQ(EscapeControlChars("\xc2\x9b" "31m"), "\\xc2\\x9b31m");
  EXPECT_EQ(EscapeControlChars("\x9b" "31m"), "\\x9b31m");
  EXPECT_EQ(EscapeControlChars("\xe2\x9c"), "\\xe2\\x9c");
  // Backslashes are doubled, so an escaped name and a name spelling "\x1b" differ.
  EXPECT_EQ(EscapeControlChars("a\\x1b"), "a\\\\x1b");
  for (const std::string& hostile : {std::string("\x1b[31m"), std::string("x\xc2\x85"),
                                     std::string("\xff"), std::string(1, '\0')}) {
    const std::string out = EscapeControlChars(hostile);
    EXPECT_FALSE(FindControlChar(out).has_value()) << out;
  }
  EXPECT_EQ(FindControlChar("ok \xc3\xa9"), std::nullopt);
  EXPECT_EQ(FindControlChar("ab\x1b[0m"), 2u);
  EXPECT_EQ(FindControlChar("ab\xc2\x9b"), 2u);
}

TEST(RngTest, SameSeedSameStream) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.NextU64();
    EXPECT_EQ(x, b.NextU64());
    differs |= (x != c.NextU64());
  }
  EXPECT_TRUE(differs);
}

TEST(RngTest, BelowIsInRangeAndRoughlyUniform) {
  Rng rng(7);
  std::vector<int> counts(6, 0);
  for (int i = 0; i < 60000; ++i) {
    uint64_t v = rng.Below(6);
    ASSERT_LT(v, 6u);
    counts[v]++;
  }
  // Each count is Binomial(60000, 1/6): sd = 91; 6 sd bounds never fail by chance in practice.
  for (int c : counts) EXPECT_NEAR(c, 10000, 550);
}

TEST(RngTest, ShuffleIsAPermutationAndDeterministic) {
  std::vector<int> a(50), b(50);
  std::iota(a.begin(), a.end(), 0);
  std::iota(b.begin(), b.end(), 0);
  Rng r1(123), r2(123);
  r1.Shuffle(std::span<int>(a));
  r2.Shuffle(std::span<int>(b));
  EXPECT_EQ(a, b);
  std::set<int> s(a.begin(), a.end());
  EXPECT_EQ(s.size(), 50u);
  std::vector<int> sorted(50);
  std::iota(sorted.begin(), sorted.end(), 0);
  EXPECT_NE(a, sorted);
}

TEST(RngTest, UniformInUnitInterval) {
  Rng rng(1);
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    double u = rng.Uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.02);  // sd of the mean = 0.0029
}

TEST(ThreadPoolTest, EveryIndexExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (size_t n : {0u, 1u, 7u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](size_t i) { hits[i].fetch_add(1); });
      for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << threads << " " << n;
    }
  }
}

TEST(ThreadPoolTest, NestedCallsRunInline) {
  ThreadPool pool(3);
  std::atomic<int> total{0};
  pool.ParallelFor(10, [&](size_t) {
    pool.ParallelFor(10, [&](size_t) { total.fetch_add(1); });
  });
  EXPECT_EQ(total.load(), 100);
}

TEST(ThreadPoolTest, ManyRoundsNoLostWakeups) {
  ThreadPool pool(2);
  long sum = 0;
  for (int round = 0; round < 2000; ++round) {
    std::vector<long> slot(5, 0);
    pool.ParallelFor(5, [&](size_t i) { slot[i] = static_cast<long>(i) + round; });
    sum += std::accumulate(slot.begin(), slot.end(), 0L);
  }
  EXPECT_EQ(sum, 2000L * 10 + 5L * (1999L * 2000 / 2));
}

TEST(FlagsTest, ParsesAllForms) {
  std::string model;
  int64_t ctx = 512;
  double x = 1.5;
  bool json = false;
  FlagSet f("impq eval");
  f.String("model", &model, "model path", true);
  f.Int("ctx", &ctx, "window");
  f.Double("x", &x, "a number");
  f.Bool("json", &json, "json output");
  ASSERT_TRUE(f.Parse({"--model", "m.bin", "--ctx=128", "--json", "--x", "2.5"}).ok());
  EXPECT_EQ(model, "m.bin");
  EXPECT_EQ(ctx, 128);
  EXPECT_EQ(x, 2.5);
  EXPECT_TRUE(json);
  EXPECT_TRUE(f.WasSet("ctx"));
}

TEST(FlagsTest, DashAndUnderscoreAreTheSame) {
  int64_t g = 0, h = 0;
  FlagSet f("impq");
  f.Int("group-size", &g, "g");
  f.Int("data_root", &h, "h");
  ASSERT_TRUE(f.Parse({"--group_size", "32", "--data-root=7"}).ok());
  EXPECT_EQ(g, 32);
  EXPECT_EQ(h, 7);
  EXPECT_TRUE(f.WasSet("group_size"));
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  std::string model;
  int64_t ctx = 0;
  {
    FlagSet f("impq eval");
    f.String("model", &model, "model path", true);
    f.Int("ctx", &ctx, "window");
    absl::Status s = f.Parse({"--ctx", "12x"});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("--ctx"), absl::string_view::npos) << s;
  }
  {
    FlagSet f("impq eval");
    f.String("model", &model, "model path", true);
    absl::Status s = f.Parse({});
    EXPECT_NE(s.message().find("missing required flag --model"), absl::string_view::npos) << s;
  }
  {
    FlagSet f("impq eval");
    f.String("model", &model, "model path");
    EXPECT_NE(f.Parse({"--modle", "x"}).message().find("unknown flag --modle"),
              absl::string_view::npos);
    EXPECT_NE(f.Parse({"--model"}).message().find("needs a value"), absl::string_view::npos);
    EXPECT_NE(f.Parse({"stray"}).message().find("unexpected argument"), absl::string_view::npos);
  }
}

TEST(FlagsTest, ParseMainGivesTheExitCode) {
  auto parse = [](std::vector<std::string> args, int64_t* seeds) {
    FlagSet f("bench");
    f.Int("seeds", seeds, "instances");
    args.insert(args.begin(), "bench");  // argv[0]
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    return f.ParseMain(static_cast<int>(argv.size()), argv.data());
  };
  int64_t seeds = 1;
  EXPECT_EQ(parse({"--seeds", "7"}, &seeds), std::nullopt);  // go on
  EXPECT_EQ(seeds, 7);
  ::testing::internal::CaptureStdout();
  EXPECT_EQ(parse({"--help"}, &seeds), 0);
  EXPECT_NE(::testing::internal::GetCapturedStdout().find("--seeds"), std::string::npos);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(parse({"--seeds", "x"}, &seeds), 2);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("--seeds"), std::string::npos) << err;
  EXPECT_NE(err.find("usage"), std::string::npos) << err;
}

TEST(FileUtilTest, AtomicWriteThenReadAndMap) {
  std::string path = TempPath("atomic.txt");
  ASSERT_TRUE(WriteFileAtomically(path, "hello").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "world!").ok());
  auto s = ReadFileToString(path);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, "world!");
  auto m = MappedFile::Open(path);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->size(), 6u);
  EXPECT_EQ((*m)->bytes()[0], 'w');
  ::unlink(path.c_str());
}

TEST(FileUtilTest, MissingFileIsNotFoundAndNamesThePath) {
  auto m = MappedFile::Open("/nonexistent/dir/model.bin");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(m.status().message().find("/nonexistent/dir/model.bin"), absl::string_view::npos);
  auto d = ReadFileToString("/tmp");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FileUtilTest, OnlyRegularFilesAreOpenedAndNothingBlocks) {
  ScopedFifo fifo(TempPath("fifo"));
  ASSERT_TRUE(fifo.made());
  for (const auto& [path, kind] : {std::pair<std::string, std::string>{fifo.path(), "a FIFO"},
                                   {"/tmp", "a directory"},
                                   {"/dev/null", "a character device"}}) {
    for (const absl::Status& s :
         {OpenRegularFile(path).status(), ReadFileToString(path).status(),
          ReadFileHead(path, 4).status(), MappedFile::Open(path).status()}) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << path << ": " << s;
      EXPECT_NE(s.message().find(path + ": not a regular file: " + kind), absl::string_view::npos)
          << s;
    }
  }
  EXPECT_FALSE(fifo.watchdog_fired()) << "an open() of the FIFO blocked";
  const std::string path = TempPath("head.txt");
  ASSERT_TRUE(WriteFileAtomically(path, "GGUF and more").ok());
  EXPECT_EQ(*ReadFileHead(path, 4), "GGUF");
  EXPECT_EQ(*ReadFileHead(path, 100), "GGUF and more");
  auto f = OpenRegularFile(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->size(), 13u);
  EXPECT_EQ(OpenRegularFile(path + ".missing").status().code(), absl::StatusCode::kNotFound);
  ::unlink(path.c_str());
}

// A data root with a model, a model folder, and the links an attacker would plant in it.
class DataRootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = TempPath("roots");
    ASSERT_EQ(std::system(("rm -rf " + base_ + " && mkdir -p " + base_ + "/root/hf " + base_ +
                           "/outside")
                              .c_str()),
              0);
    root_ = base_ + "/root";
    ASSERT_TRUE(WriteFileAtomically(root_ + "/m.bin", "model").ok());
    ASSERT_TRUE(WriteFileAtomically(root_ + "/hf/config.json", "{}").ok());
    ASSERT_TRUE(WriteFileAtomically(base_ + "/outside/secret", "secret").ok());
    ASSERT_EQ(::symlink("m.bin", (root_ + "/alias.bin").c_str()), 0);            // stays inside
    ASSERT_EQ(::symlink("/etc/passwd", (root_ + "/passwd").c_str()), 0);         // escapes
    ASSERT_EQ(::symlink("../outside", (root_ + "/out").c_str()), 0);             // escapes (dir)
    // A link to the root under another name: a second spelling of the same root.
    ASSERT_EQ(::symlink("root", (base_ + "/root_link").c_str()), 0);
  }
  void TearDown() override { (void)!std::system(("rm -rf " + base_).c_str()); }
  std::string base_, root_;
};

TEST_F(DataRootTest, InsidePathsResolveSpelledUnderTheConfiguredRoot) {
  const std::vector<std::string> roots = {root_};
  EXPECT_EQ(*ResolveInDataRoots("f", root_ + "/m.bin", roots), root_ + "/m.bin");
  EXPECT_EQ(*ResolveInDataRoots("f", "m.bin", roots), root_ + "/m.bin");  // relative: 1st root
  EXPECT_EQ(*ResolveInDataRoots("f", root_ + "/hf/../alias.bin", roots), root_ + "/m.bin");
  EXPECT_EQ(*ResolveInDataRoots("f", root_ + "/hf", roots), root_ + "/hf");
  // The root configured through a link keeps its spelling; the file is the same.
  const std::string linked = base_ + "/root_link";
  EXPECT_EQ(*ResolveInDataRoots("f", linked + "/alias.bin", {linked}), linked + "/m.bin");
}

TEST_F(DataRootTest, EscapesAreRefusedNamingTheFieldAndThePathButNotTheRoot) {
  const std::vector<std::string> roots = {root_};
  struct Case {
    std::string path;
    absl::StatusCode code;
    std::string says;
  } cases[] = {
      {"/etc/passwd", absl::StatusCode::kPermissionDenied, "is outside the data roots"},
      {root_ + "/../outside/secret", absl::StatusCode::kPermissionDenied, "is outside"},
      {"../outside/secret", absl::StatusCode::kPermissionDenied, "is outside"},
      {root_ + "/passwd", absl::StatusCode::kPermissionDenied, "through a symbolic link"},
      {root_ + "/out/secret", absl::StatusCode::kPermissionDenied, "through a symbolic link"},
      {"out/secret", absl::StatusCode::kPermissionDenied, "through a symbolic link"},
      {root_ + "/missing.bin", absl::StatusCode::kNotFound, "no such file"},
      // Outside lexically and missing: the same answer as an existing file outside (no
      // existence oracle beyond the roots).
      {"/etc/no-such-file", absl::StatusCode::kPermissionDenied, "is outside the data roots"},
  };
  for (const Case& k : cases) {
    absl::StatusOr<std::string> r = ResolveInDataRoots("spec.model_path", k.path, roots);
    ASSERT_FALSE(r.ok()) << k.path << " -> " << *r;
    EXPECT_EQ(r.status().code(), k.code) << r.status();
    const std::string msg(r.status().message());
    EXPECT_EQ(msg.rfind("spec.model_path: '" + k.path + "'", 0), 0u) << msg;
    EXPECT_NE(msg.find(k.says), std::string::npos) << msg;
    EXPECT_EQ(msg.find("/etc/passwd", ("spec.model_path: '" + k.path + "'").size()),
              std::string::npos)
        << "the link's target leaked: " << msg;
    if (k.path[0] != '/') EXPECT_EQ(msg.find(root_), std::string::npos) << msg;
  }
}

TEST_F(DataRootTest, AFolderWhoseEntryEscapesIsRefused) {
  ASSERT_EQ(::symlink((base_ + "/outside/secret").c_str(), (root_ + "/hf/tokenizer.json").c_str()),
            0);
  absl::StatusOr<std::string> r = ResolveInDataRoots("spec.model_path", "hf", {root_});
  ASSERT_FALSE(r.ok()) << *r;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("'tokenizer.json' resolves outside"), absl::string_view::npos)
      << r.status();
}

TEST_F(DataRootTest, FifosAndDevicesAreRefusedWithoutOpeningThem) {
  ScopedFifo fifo(root_ + "/fifo.bin");
  ASSERT_TRUE(fifo.made());
  absl::StatusOr<std::string> r = ResolveInDataRoots("spec.model_path", "fifo.bin", {root_});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("it is a FIFO"), absl::string_view::npos) << r.status();
  r = ResolveInDataRoots("spec.model_path", "/dev/null", {"/dev"});
  EXPECT_NE(r.status().message().find("a character device"), absl::string_view::npos) << r.status();
  EXPECT_FALSE(fifo.watchdog_fired()) << "the FIFO was opened";
  // Control characters in a path are escaped in the message.
  r = ResolveInDataRoots("f", "\x1b[31mred", {root_});
  EXPECT_EQ(r.status().message().find('\x1b'), absl::string_view::npos) << r.status();
}

}  // namespace
}  // namespace impq
