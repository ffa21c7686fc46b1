// Issue 20's bounds on the client API, against real impq-coordinator and impqctl processes on
// 127.0.0.1: 2,000 concurrent WatchJob streams without a thread each (and the stream bound),
// `impqctl list` paging through every job, retention of finished jobs across a restart, and
// control characters kept off the terminal (refused in job names by the coordinator, escaped
// by impqctl whatever a server sends).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/test_paths.h"
#include "coordinator/test_sqlite.h"
#include "gtest/gtest.h"
#include "impq/v1/services.grpc.pb.h"
#include "tests/service/service_test_util.h"

namespace impq {
namespace {

using service_test::Auth;
using service_test::CoordinatorProcess;
using service_test::FreshDir;
using service_test::GetJob;
using service_test::kToken;
using service_test::SharedModelSpec;
using service_test::StartCoordinator;
using service_test::Stop;
using service_test::Submit;

std::unique_ptr<v1::ImpqService::Stub> Client(const CoordinatorProcess& c) {
  return v1::ImpqService::NewStub(
      grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
}

// A job that stays unfinished while no worker runs (these tests start none).
v1::JobSpec IdleJob(const std::string& name) { return SharedModelSpec(name, 2, 2, 32, 4, 1); }

grpc::Status Cancel(v1::ImpqService::Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  Auth(ctx);
  v1::CancelJobRequest req;
  req.set_job_id(id);
  v1::CancelJobResponse resp;
  return stub.CancelJob(&ctx, req, &resp);
}

// The process's thread count (/proc/<pid>/status "Threads:"); -1 when unreadable.
int Threads(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    int n = 0;
    if (absl::StartsWith(line, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n)) {
      return n;
    }
  }
  return -1;
}

// What the client side of all the watch streams saw.
struct WatchBoard {
  absl::Mutex mu;
  int started = 0;   // streams with at least one status
  int finished = 0;  // streams done (OnDone)
  std::map<grpc::StatusCode, int> codes;
  std::map<v1::JobState, int> last_states;  // of the finished streams
};

// One WatchJob stream on the callback client API (the test process needs no thread per stream
// either).
class WatchClient : public grpc::ClientReadReactor<v1::JobStatus> {
 public:
  WatchClient(v1::ImpqService::Stub& stub, const std::string& job_id, WatchBoard* board)
      : board_(board) {
    ctx_.AddMetadata("authorization", std::string("Bearer ") + kToken);
    req_.set_job_id(job_id);
    stub.async()->WatchJob(&ctx_, &req_, this);
    StartRead(&msg_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended: OnDone follows
    {
      absl::MutexLock lock(&board_->mu);
      if (messages_++ == 0) ++board_->started;
      last_ = msg_.state();
    }
    StartRead(&msg_);
  }
  void OnDone(const grpc::Status& s) override {
    absl::MutexLock lock(&board_->mu);
    ++board_->codes[s.error_code()];
    ++board_->last_states[last_];
    ++board_->finished;
  }

 private:
  WatchBoard* const board_;
  grpc::ClientContext ctx_;
  v1::WatchJobRequest req_;
  v1::JobStatus msg_;
  int messages_ = 0;                                     // guarded by board_->mu
  v1::JobState last_ = v1::JOB_STATE_UNSPECIFIED;  // guarded by board_->mu
};

// A blocking WatchJob: the statuses read and the final status.
grpc::Status WatchOnce(v1::ImpqService::Stub& stub, const std::string& id,
                       std::vector<v1::JobStatus>* seen) {
  grpc::ClientContext ctx;
  Auth(ctx);
  v1::WatchJobRequest req;
  req.set_job_id(id);
  auto reader = stub.WatchJob(&ctx, req);
  v1::JobStatus s;
  while (reader->Read(&s)) seen->push_back(s);
  return reader->Finish();
}

// The 2,000 streams (2,015 threads with a thread per stream): the coordinator's
// thread count stays bounded, the bound on streams is enforced, and every stream gets the
// terminal state when the job is cancelled.
TEST(ServiceBoundsTest, TwoThousandWatchStreamsWithoutAThreadEach) {
  constexpr int kStreams = 2000;
  const std::string dir = FreshDir("bounds_watch");
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0",
                                          {"--max_watch_streams", std::to_string(kStreams)});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = Client(c);
  const std::string id = Submit(*stub, IdleJob("watched"));
  ASSERT_FALSE(id.empty());
  const int threads_before = Threads(c.pid);
  WatchBoard board;
  std::vector<std::unique_ptr<WatchClient>> streams;
  for (int i = 0; i < kStreams; ++i) streams.push_back(std::make_unique<WatchClient>(*stub, id, &board));
  {
    absl::MutexLock lock(&board.mu);
    // Bounded only against a hang: every stream has its first status.
    board.mu.AwaitWithTimeout(absl::Condition(
                                  +[](WatchBoard* b) { return b->started + b->finished >= kStreams; },
                                  &board),
                              absl::Seconds(120));
    ASSERT_EQ(board.started, kStreams) << "finished early: " << board.finished;
  }
  const int threads_open = Threads(c.pid);
  std::cout << "coordinator threads: " << threads_before << " before the streams, "
            << threads_open << " with " << kStreams << " streams open\n";
  EXPECT_GT(threads_open, 0);
  EXPECT_LT(threads_open, 100) << "before the streams: " << threads_before;
  // The bound: one stream more is refused, naming the flag.
  {
    std::vector<v1::JobStatus> seen;
    grpc::Status st = WatchOnce(*stub, id, &seen);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
    EXPECT_NE(st.error_message().find("max_watch_streams"), std::string::npos) << st.error_message();
    EXPECT_TRUE(seen.empty());
  }
  // The job ends: every stream gets the terminal state, then OK.
  ASSERT_TRUE(Cancel(*stub, id).ok());
  {
    absl::MutexLock lock(&board.mu);
    board.mu.AwaitWithTimeout(
        absl::Condition(+[](WatchBoard* b) { return b->finished >= kStreams; }, &board),
        absl::Seconds(120));
    EXPECT_EQ(board.finished, kStreams);
    EXPECT_EQ(board.codes[grpc::StatusCode::OK], kStreams);
    EXPECT_EQ(board.last_states[v1::JOB_STATE_CANCELLED], kStreams);
  }
  streams.clear();
  // The streams' slots are free again: a new watch of the finished job gets its terminal
  // status at once, and an unknown job is NOT_FOUND.
  std::vector<v1::JobStatus> seen;
  grpc::Status st;
  for (int i = 0; i < 200; ++i) {  // the server releases a slot once the stream is done
    seen.clear();
    st = WatchOnce(*stub, id, &seen);
    if (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) break;
    usleep(20 * 1000);
  }
  EXPECT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].state(), v1::JOB_STATE_CANCELLED);
  seen.clear();
  EXPECT_EQ(WatchOnce(*stub, "job-777777", &seen).error_code(), grpc::StatusCode::NOT_FOUND);
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

// A watch open when the coordinator stops ends with UNAVAILABLE (no stream holds the
// shutdown), after the current status.
TEST(ServiceBoundsTest, ShutdownEndsOpenWatchStreams) {
  const std::string dir = FreshDir("bounds_watch_stop");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0);
  auto stub = Client(c);
  const std::string id = Submit(*stub, IdleJob("stopped"));
  WatchBoard board;
  auto stream = std::make_unique<WatchClient>(*stub, id, &board);
  {
    absl::MutexLock lock(&board.mu);
    board.mu.AwaitWithTimeout(
        absl::Condition(+[](WatchBoard* b) { return b->started + b->finished >= 1; }, &board),
        absl::Seconds(30));
    ASSERT_EQ(board.started, 1);
  }
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  absl::MutexLock lock(&board.mu);
  board.mu.AwaitWithTimeout(
      absl::Condition(+[](WatchBoard* b) { return b->finished >= 1; }, &board), absl::Seconds(30));
  EXPECT_EQ(board.codes[grpc::StatusCode::UNAVAILABLE], 1);
}

// Runs `impqctl <args>` against `target` with the token from a file; its stdout and stderr.
std::string Impqctl(const std::string& target, const std::string& token_file,
                    const std::string& args, int* exit_code) {
  std::string cmd = std::string(IMPQCTL_BINARY) + " --server " + target;
  if (!token_file.empty()) cmd += " --token_file " + token_file;
  cmd += " " + args + " 2>&1";
  FILE* out = popen(cmd.c_str(), "r");
  std::string text;
  char buf[4096];
  size_t n;
  while (out != nullptr && (n = fread(buf, 1, sizeof(buf), out)) > 0) text.append(buf, n);
  const int status = out != nullptr ? pclose(out) : -1;
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return text;
}

// The ids of `impqctl list` output lines, in order.
std::vector<std::string> ListedIds(const std::string& text) {
  std::vector<std::string> ids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ids.emplace_back(line.substr(0, line.find(' ')));
  }
  return ids;
}

// `impqctl list` broke past ~20,000 jobs (one response over 4 MiB). Here 5,000 jobs (five full
// pages; the 20,000 are coordinator_test's CoordinatorBoundsTest, in-process: 20,000 durable
// submissions through a process take over a minute on these machines): `impqctl list` pages
// through all of them, each once, in submission order; --limit and --state narrow it;
// ListJobs clamps an oversized page and refuses a forged token.
TEST(ServiceBoundsTest, ImpqctlListPagesThroughEveryJob) {
  constexpr int kJobs = 5000;
  const std::string dir = FreshDir("bounds_list");
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", {"--max_running_jobs", "1"});
  ASSERT_GT(c.grpc_port, 0);
  auto stub = Client(c);
  std::vector<std::string> ids(kJobs);
  {
    std::vector<std::thread> clients;  // 4 submitting clients, as fast as the store commits
    for (int t = 0; t < 4; ++t) {
      clients.emplace_back([&, t] {
        for (int i = t; i < kJobs; i += 4) {
          // 200-byte names (the most a name may have): the largest statuses.
          ids[i] = Submit(*stub, IdleJob(absl::StrCat("j", i, std::string(200, 'x')).substr(0, 200)));
        }
      });
    }
    for (auto& t : clients) t.join();
  }
  std::sort(ids.begin(), ids.end());  // "job-%06d": submission order
  ASSERT_TRUE(Cancel(*stub, ids[7]).ok());
  ASSERT_TRUE(Cancel(*stub, ids[1100]).ok());
  const std::string token = dir + "/token";
  int rc = 0;
  std::string out = Impqctl(c.target(), token, "list --page_size 500", &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(ListedIds(out), ids);
  out = Impqctl(c.target(), token, "list", &rc);  // pages of 1000
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ListedIds(out), ids);
  out = Impqctl(c.target(), token, "list --limit 7", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ListedIds(out), std::vector<std::string>(ids.begin(), ids.begin() + 7));
  out = Impqctl(c.target(), token, "list --state cancelled --page_size 1", &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ListedIds(out), (std::vector<std::string>{ids[7], ids[1100]}));
  out = Impqctl(c.target(), token, "list --state bogus", &rc);
  EXPECT_EQ(rc, 2);
  // The wire: an oversized page is clamped; a forged token is refused naming the field.
  {
    grpc::ClientContext ctx;
    Auth(ctx);
    v1::ListJobsRequest req;
    req.set_page_size(100000);
    v1::ListJobsResponse resp;
    ASSERT_TRUE(stub->ListJobs(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.jobs_size(), 1000);
    EXPECT_FALSE(resp.next_page_token().empty());
    EXPECT_LT(resp.ByteSizeLong(), size_t{4} << 20);
  }
  {
    grpc::ClientContext ctx;
    Auth(ctx);
    v1::ListJobsRequest req;
    req.set_page_token("forged");
    v1::ListJobsResponse resp;
    grpc::Status st = stub->ListJobs(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("page_token"), std::string::npos) << st.error_message();
  }
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}


// --retain_finished_jobs: the oldest finished jobs leave the coordinator and its store file,
// stay gone after a restart, and their ids say why; a name with control characters is refused.
TEST(ServiceBoundsTest, RetentionOfFinishedJobsAcrossARestart) {
  const std::string dir = FreshDir("bounds_retention");
  const std::vector<std::string> flags = {"--retain_finished_jobs", "2", "--max_running_jobs", "1"};
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", flags);
  ASSERT_GT(c.grpc_port, 0);
  auto stub = Client(c);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Submit(*stub, IdleJob(absl::StrCat("r", i))));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(Cancel(*stub, ids[i]).ok());  // in submission order
  // The background thread applies the policy: poll until the two oldest are gone.
  v1::GetJobResponse resp;
  grpc::Status st;
  for (int i = 0; i < 500; ++i) {
    resp.Clear();
    st = GetJob(*stub, ids[1], &resp);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) break;
    usleep(20 * 1000);
  }
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("retention"), std::string::npos) << st.error_message();
  resp.Clear();
  EXPECT_EQ(GetJob(*stub, ids[0], &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  for (int i : {2, 3, 4}) {
    resp.Clear();
    EXPECT_TRUE(GetJob(*stub, ids[i], &resp).ok()) << ids[i];
  }
  // A name that would drive the terminal of whoever lists the jobs.
  {
    grpc::ClientContext ctx;
    Auth(ctx);
    v1::SubmitJobRequest req;
    *req.mutable_spec() = IdleJob("evil\x1b]0;owned\x07\x1b[2J");
    v1::SubmitJobResponse sresp;
    grpc::Status bad = stub->SubmitJob(&ctx, req, &sresp);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(bad.error_message().find("spec.name"), std::string::npos) << bad.error_message();
  }
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  const std::string db = dir + "/c.db";
  EXPECT_EQ(coordinator::StoreRows(db, "SELECT count(*) FROM jobs"), 3);
  EXPECT_EQ(coordinator::StoreRows(db, "SELECT count(*) FROM jobs WHERE id IN ('" + ids[0] + "', '" + ids[1] + "')"), 0);
  // Restarted: the same three jobs; the removed ids stay removed, and are not handed out again.
  CoordinatorProcess again = StartCoordinator(dir, "127.0.0.1:0", flags);
  ASSERT_GT(again.grpc_port, 0);
  stub = Client(again);
  resp.Clear();
  st = GetJob(*stub, ids[0], &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(st.error_message().find("retention"), std::string::npos) << st.error_message();
  resp.Clear();
  EXPECT_TRUE(GetJob(*stub, ids[3], &resp).ok());
  EXPECT_GT(Submit(*stub, IdleJob("after")), ids[4]);
  stub.reset();
  EXPECT_EQ(Stop(again.pid, SIGTERM), 0);
}

// A server that answers with control characters in every string impqctl prints.
class HostileService final : public v1::ImpqService::Service {
 public:
  static constexpr const char* kName = "evil\x1b]0;owned\x07\x1b[2J\r\n\xc2\x9b" "31mred";
  static constexpr const char* kError = "boom\x1b[1A\x1b[K";
  grpc::Status ListJobs(grpc::ServerContext*, const v1::ListJobsRequest*,
                        v1::ListJobsResponse* resp) override {
    Fill(resp->add_jobs());
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext*, const v1::GetJobRequest*,
                      v1::GetJobResponse* resp) override {
    Fill(resp->mutable_status());
    return grpc::Status::OK;
  }
  grpc::Status CancelJob(grpc::ServerContext*, const v1::CancelJobRequest*,
                         v1::CancelJobResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, std::string("no such job ") + kError);
  }

 private:
  static void Fill(v1::JobStatus* s) {
    s->set_job_id("job-\x1b[31m1");
    s->set_state(v1::JOB_STATE_FAILED);
    s->set_name(kName);
    s->set_error(kError);
  }
};

// Whatever the server sends, impqctl's output holds no control character: escaped, readable.
TEST(ServiceBoundsTest, ImpqctlEscapesControlCharactersFromTheServer) {
  HostileService service;
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  ASSERT_GT(port, 0);
  const std::string target = "127.0.0.1:" + std::to_string(port);
  for (const std::string& args :
       std::vector<std::string>{"list", "status --job job-1", "cancel --job job-1"}) {
    int rc = 0;
    const std::string out = Impqctl(target, "", args, &rc);
    SCOPED_TRACE(args + ": " + out);
    for (char ch : out) {
      const auto u = static_cast<unsigned char>(ch);
      EXPECT_FALSE((u < 0x20 && ch != '\n') || u == 0x7f) << "raw byte " << static_cast<int>(u);
    }
    EXPECT_EQ(out.find("\xc2\x9b"), std::string::npos);
    if (args == "cancel --job job-1") {
      EXPECT_EQ(rc, 1);
      EXPECT_NE(out.find("no such job boom\\x1b[1A\\x1b[K"), std::string::npos);  // readable
    } else {
      EXPECT_EQ(rc, 0);
      EXPECT_NE(out.find("evil\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x0a\\xc2\\x9b31mred"),
                std::string::npos);
    }
  }
  server->Shutdown();
}

}  // namespace
}  // namespace impq
