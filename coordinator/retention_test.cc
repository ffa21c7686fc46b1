// The retention rule and the ListJobs page token (retention.h).
#include "coordinator/retention.h"

#include "gtest/gtest.h"

namespace impq::coordinator {
namespace {

TEST(RetentionTest, KeepsTheNewestFinishedJobsByFinishTime) {
  // seq 1 finished last, seq 4 first: finish time decides, not submission.
  const std::vector<FinishedJobRef> f = {{1, 500}, {2, 300}, {3, 400}, {4, 100}, {5, 300}};
  RetentionPolicy p;
  p.max_finished_jobs = 2;
  // Newest: 1 (500), 3 (400); then 5 and 2 tie at 300 (5 is newer by seq), then 4.
  EXPECT_EQ(JobsBeyondRetention(f, p, 1000), (std::vector<int64_t>{2, 4, 5}));
  p.max_finished_jobs = 0;
  EXPECT_EQ(JobsBeyondRetention(f, p, 1000).size(), 5u);
  p.max_finished_jobs = -1;  // no count limit
  EXPECT_TRUE(JobsBeyondRetention(f, p, 1000).empty());
  p.max_finished_jobs = 5;
  EXPECT_TRUE(JobsBeyondRetention(f, p, 1000).empty());
}

TEST(RetentionTest, RemovesJobsOlderThanTheAgeLimitWhateverTheCount) {
  const std::vector<FinishedJobRef> f = {{1, 1000}, {2, 5000}, {3, 9000}};
  RetentionPolicy p;
  p.max_finished_jobs = -1;
  p.max_age = absl::Milliseconds(5500);
  EXPECT_EQ(JobsBeyondRetention(f, p, 10000), (std::vector<int64_t>{1}));
  EXPECT_EQ(JobsBeyondRetention(f, p, 10000 + 1000), (std::vector<int64_t>{1, 2}));
  p.max_finished_jobs = 1;  // both limits: the union
  EXPECT_EQ(JobsBeyondRetention(f, p, 10000), (std::vector<int64_t>{1, 2}));
  p.max_age = absl::ZeroDuration();  // no age limit
  p.max_finished_jobs = -1;
  EXPECT_TRUE(JobsBeyondRetention(f, p, int64_t{1} << 50).empty());
}

TEST(PageTokenTest, RoundTripsAndRefusesForgedOrMismatchedTokens) {
  const std::string t = EncodePageToken({12345, 5});
  absl::StatusOr<PageCursor> c = DecodePageToken(t, 5);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->after_seq, 12345);
  EXPECT_EQ(c->state, 5);
  for (const std::string& bad :
       {std::string("garbage!"), std::string("cDE6MTI"), EncodePageToken({-4, 5}).substr(1),
        std::string(200, 'A'), std::string("\x1b[2J")}) {
    absl::StatusOr<PageCursor> d = DecodePageToken(bad, 5);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("page_token"), std::string::npos) << d.status();
  }
  // A token issued for another state filter.
  absl::StatusOr<PageCursor> other = DecodePageToken(t, 0);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.status().message().find("page_token"), std::string::npos);
  EXPECT_NE(other.status().message().find("filter"), std::string::npos);
}

}  // namespace
}  // namespace impq::coordinator
