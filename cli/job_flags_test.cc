// JobFlags: the flag table's defaults are JobOptions' (the one set of defaults), and flags
// fill exactly the settings given.
#include "cli/job_flags.h"

#include <google/protobuf/util/message_differencer.h>

#include "gtest/gtest.h"
#include "job/spec_options.h"

namespace impq::cli {
namespace {

TEST(JobFlagsTest, DefaultsAreJobOptionsDefaults) {
  // Every setting of the help text's defaults, through the one mapping, equals JobOptions{}
  // with the default files.
  absl::StatusOr<job::JobOptions> o = job::JobOptionsFromSpec(JobFlags::DefaultSpec());
  ASSERT_TRUE(o.ok()) << o.status();
  job::JobOptions d;
  d.model_path = "stories260K.bin";
  d.tokenizer_path = "tok512.bin";
  d.calib_text_path = "tinystories_v2_valid_100.txt";
  d.heldout_text_path = "tinystories_valid_a.txt";
  std::string diff;
  google::protobuf::util::MessageDifferencer md;
  md.ReportDifferencesToString(&diff);
  EXPECT_TRUE(md.Compare(job::SpecFromJobOptions(*o), job::SpecFromJobOptions(d))) << diff;
  // And an empty spec (a client that sets nothing) means the same settings.
  absl::StatusOr<job::JobOptions> empty = job::JobOptionsFromSpec(v1::JobSpec());
  ASSERT_TRUE(empty.ok());
  v1::JobSpec a = job::SpecFromJobOptions(*empty), b = job::SpecFromJobOptions(d);
  for (v1::JobSpec* s : {&a, &b}) {
    s->clear_model_path();
    s->clear_tokenizer_path();
    s->clear_calibration_text_path();
    s->clear_evaluation_text_path();
  }
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(a, b)) << a.DebugString();
}

TEST(JobFlagsTest, OnlyGivenFlagsAreSet) {
  FlagSet flags("test");
  JobFlags jf;
  jf.Register(flags);
  ASSERT_TRUE(flags.Parse({"--model", "m.gguf", "--budgets", "2.5,3", "--widths", "2,3,4",
                           "--search-model", "local", "--antithetic=false"})
                  .ok());
  v1::JobSpec s;
  ASSERT_TRUE(jf.ApplyTo(flags, s).ok());
  EXPECT_EQ(s.model_path(), "m.gguf");
  EXPECT_TRUE(s.tokenizer_path().empty());  // --model alone: the model's own tokenizer
  EXPECT_EQ(s.average_bits_size(), 2);
  EXPECT_EQ(s.widths_size(), 3);
  EXPECT_EQ(s.search_model(), "local");
  EXPECT_TRUE(s.has_antithetic());
  EXPECT_FALSE(s.antithetic());
  EXPECT_FALSE(s.has_choice_z());
  EXPECT_EQ(s.permutations(), 0);  // unset: the default wherever the spec runs
}

TEST(JobFlagsTest, MalformedListNamesTheFlag) {
  FlagSet flags("test");
  JobFlags jf;
  jf.Register(flags);
  ASSERT_TRUE(flags.Parse({"--budgets", "2.5,x"}).ok());
  v1::JobSpec s;
  absl::Status st = jf.ApplyTo(flags, s);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("--budgets"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace impq::cli
