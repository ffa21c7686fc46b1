// impqctl: the user's command line for an impq-coordinator.
//   impqctl [--server H:P] [--token_file F (default $IMPQ_TOKEN_FILE)] <command> [flags]
//   submit  [the job flags of `impq run`: --model M --tokenizer T --calib-text C
//           --heldout-text H --players module --budgets 2.5,3 --widths 2,3,4,8 ...; same names,
//           same defaults: cli/job_flags.h] [--name N] [--request-id ID]
//           [--job_file spec.json (JobSpec as protobuf JSON; flags given override it)] [--watch]
//   status --job ID     watch --job ID     result --job ID [--json: the result document, the
//           very JSON `impq run --json` writes]     cancel --job ID
//   list [--limit N] [--state S] [--page_size N]     health
// Every string the server sends (names, errors, ...) is printed through EscapeControlChars: a
// job name cannot drive the terminal.
#include <grpcpp/grpcpp.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "cli/job_flags.h"
#include "common/file_util.h"
#include "common/token_file.h"
#include "common/flags.h"
#include "common/grpc_tls.h"
#include "common/terminal_text.h"
#include "impq/v1/services.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace {

using impq::v1::ImpqService;

struct Global {
  std::string server = "127.0.0.1:50051";
  std::string token;
};

void Prepare(grpc::ClientContext& ctx, const Global& g, bool deadline = true) {
  if (deadline) ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  if (!g.token.empty()) ctx.AddMetadata("authorization", "Bearer " + g.token);
}

// What the server sent, safe to print (common/terminal_text.h).
std::string Safe(const std::string& server_text) { return impq::EscapeControlChars(server_text); }

int Fail(const grpc::Status& s) {
  std::cerr << "impqctl: " << s.error_code() << " " << Safe(s.error_message()) << "\n";
  return 1;
}

const char* StateName(impq::v1::JobState s) {
  static const std::string* names = [] {
    auto* n = new std::string[8];
    for (int i = 0; i < 8; ++i) {
      std::string x = impq::v1::JobState_Name(static_cast<impq::v1::JobState>(i));
      n[i] = x.size() > 10 ? x.substr(10) : x;
    }
    return n;
  }();
  return names[s >= 0 && s < 8 ? s : 0].c_str();
}

std::string Line(const impq::v1::JobStatus& s) {
  return absl::StrFormat("%-12s %-11s %8d/%-8d units %d/%d %s%s", Safe(s.job_id()),
                         StateName(s.state()), s.evaluations_done(), s.evaluations_total(),
                         s.units_done(), s.units_total(), Safe(s.name()),
                         s.error().empty() ? "" : " error: " + Safe(s.error()));
}

int Watch(ImpqService::Stub& stub, const Global& g, const std::string& id) {
  grpc::ClientContext ctx;
  Prepare(ctx, g, /*deadline=*/false);
  impq::v1::WatchJobRequest req;
  req.set_job_id(id);
  auto reader = stub.WatchJob(&ctx, req);
  impq::v1::JobStatus s;
  const auto t0 = std::chrono::steady_clock::now();
  int64_t first = -1;
  impq::v1::JobState last = impq::v1::JOB_STATE_UNSPECIFIED;
  while (reader->Read(&s)) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (first < 0) first = s.evaluations_done();
    const double rate = secs > 0 ? (s.evaluations_done() - first) / secs : 0;
    const int64_t left = s.evaluations_total() - s.evaluations_done();
    const double frac = s.evaluations_total() > 0
                            ? static_cast<double>(s.evaluations_done()) / s.evaluations_total() : 0;
    const int width = 30, filled = static_cast<int>(frac * width);
    std::fprintf(stderr, "\r%s %-10s [%s%s] %lld/%lld evals  %.1f/s  ETA %s   ",
                 Safe(s.job_id()).c_str(),
                 StateName(s.state()), std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(),
                 static_cast<long long>(s.evaluations_done()),
                 static_cast<long long>(s.evaluations_total()), rate,
                 rate > 0 && left > 0 ? absl::StrFormat("%.0fs", left / rate).c_str() : "-");
    last = s.state();
  }
  std::fprintf(stderr, "\n");
  grpc::Status st = reader->Finish();
  if (!st.ok()) return Fail(st);
  std::cout << Safe(id) << " " << StateName(last) << "\n";
  return last == impq::v1::JOB_STATE_DONE ? 0 : 1;
}

// `list`: every job, a page per call (the server caps a page at 1000 jobs), at most `limit`
// (0: all) with `state` (UNSPECIFIED: all).
int List(ImpqService::Stub& stub, const Global& g, int64_t limit, impq::v1::JobState state,
         int64_t page_size) {
  std::string token;
  int64_t printed = 0;
  do {
    grpc::ClientContext ctx;
    Prepare(ctx, g);
    impq::v1::ListJobsRequest req;
    int64_t want = page_size;
    if (limit > 0) want = std::min(want, limit - printed);
    req.set_page_size(static_cast<int32_t>(std::min<int64_t>(want, 1 << 30)));
    req.set_page_token(token);
    req.set_state(state);
    impq::v1::ListJobsResponse resp;
    if (grpc::Status st = stub.ListJobs(&ctx, req, &resp); !st.ok()) return Fail(st);
    for (const auto& s : resp.jobs()) {
      std::cout << Line(s) << "\n";
      if (limit > 0 && ++printed >= limit) return 0;
    }
    if (!resp.next_page_token().empty() && (resp.next_page_token() == token || resp.jobs_size() == 0)) {
      std::cerr << "impqctl: the server's next_page_token does not advance; stopping\n";
      return 1;
    }
    token = resp.next_page_token();
  } while (!token.empty());
  return 0;
}

int Result(ImpqService::Stub& stub, const Global& g, const std::string& id, bool json) {
  grpc::ClientContext ctx;
  Prepare(ctx, g);
  impq::v1::GetJobRequest req;
  req.set_job_id(id);
  impq::v1::GetJobResponse resp;
  if (grpc::Status s = stub.GetJob(&ctx, req, &resp); !s.ok()) return Fail(s);
  if (!resp.has_result()) {
    std::cerr << "impqctl: job " << id << " has no result (state " << StateName(resp.status().state()) << ")\n";
    return 1;
  }
  const impq::v1::JobResult& r = resp.result();
  if (json) {
    // The one result document (job::JobResultToJson): `impq export` and `impq report`
    // read it as they read `impq run --json`'s.
    std::cout << r.document();
    return 0;
  }
  // With a width set (ModelInfo.width_bytes) v(∅) and v(N) are all-widest and all-narrowest.
  const bool ladder = r.model().width_bytes_size() > 0;
  std::cout << absl::StrFormat("job %s: %d permutations (%s), v(%s) = %.6f, v(%s) = %.6f\n\n",
                               Safe(id), r.permutations_used(), Safe(r.stop_reason()),
                               ladder ? "all-widest" : "all-4", r.loss_all4(),
                               ladder ? "all-narrowest" : "all-2", r.loss_all2());
  // With a width set (JobSpec.widths) φ is per ladder step: steps_per_player rows a player.
  const int names = r.model().player_names_size();
  const int steps_per_player = names > 0 && r.phi_size() > names && r.phi_size() % names == 0
                                   ? r.phi_size() / names : 1;
  std::cout << "| player | phi | SE |\n|---|---:|---:|\n";
  for (int i = 0; i < r.phi_size(); ++i) {
    const int p = i / steps_per_player;
    std::string label = p < names ? Safe(r.model().player_names(p)) : absl::StrCat(p);
    if (steps_per_player > 1) absl::StrAppend(&label, " step ", i % steps_per_player);
    std::cout << absl::StrFormat("| %s | %.6f | %.6f |\n", label, r.phi(i), r.standard_error(i));
  }
  std::cout << "\n| avg bits | bits | bytes | objective | measured loss |\n|---:|---|---:|---:|---:|\n";
  for (const auto& a : r.allocations()) {
    std::string bits;
    for (int b : a.bits()) bits += std::to_string(b);
    std::cout << absl::StrFormat("| %.3f | %s | %d | %.6f | %s |\n", a.average_bits(), bits,
                                 a.memory_bytes(), a.objective(),
                                 a.measured() ? absl::StrFormat("%.6f", a.measured_loss()) : "-");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Global g;
  std::string token_file;
  impq::TlsFiles tls;
  std::vector<std::string> args(argv + 1, argv + argc);
  // Global flags come before the command.
  size_t i = 0;
  for (; i + 1 < args.size() && args[i].rfind("--", 0) == 0; i += 2) {
    if (args[i] == "--server") g.server = args[i + 1];
    else if (args[i] == "--token") g.token = args[i + 1];
    else if (args[i] == "--token_file") token_file = args[i + 1];
    else if (args[i] == "--tls_ca") tls.ca = args[i + 1];
    else if (args[i] == "--tls_cert") tls.cert = args[i + 1];
    else if (args[i] == "--tls_key") tls.key = args[i + 1];
    else if (args[i] == "--tls_server_name") tls.server_name = args[i + 1];
    else break;
  }
  constexpr char kUsage[] =
      "usage: impqctl [--server H:P] [--token_file F (default $IMPQ_TOKEN_FILE)] [--tls_ca F "
      "[--tls_cert F --tls_key F] [--tls_server_name N]] "
      "submit|status|watch|result|cancel|list|health [flags]\n"
      "`impqctl <command> --help` lists a command's flags.\n";
  if (i >= args.size()) {
    std::cerr << kUsage;
    return 2;
  }
  if (args[i] == "--help" || args[i] == "-h" || args[i] == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (!g.token.empty()) {
    std::cerr << impq::ArgvTokenWarning("impqctl", "--token", "--token_file",
                                        impq::kTokenFileEnv);
  }
  if (absl::StatusOr<std::string> t =
          impq::ReadTokenFromFlagOrEnv("--token_file", token_file, impq::kTokenFileEnv);
      !t.ok()) {
    std::cerr << "impqctl: " << t.status().message() << "\n";
    return 2;
  } else if (!t->empty()) {
    g.token = *std::move(t);
  }
  const std::string cmd = args[i];
  const std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel_or = impq::MakeChannel(g.server, tls);
  if (!channel_or.ok()) {
    std::cerr << "impqctl: " << channel_or.status().message() << "\n";
    return 2;
  }
  std::shared_ptr<grpc::Channel> channel = *std::move(channel_or);
  auto stub = ImpqService::NewStub(channel);

  std::string job, job_file, name, request_id, state_name;
  int64_t limit = 0, page_size = 1000;
  bool json = false, watch = false;
  impq::FlagSet f("impqctl " + cmd);
  impq::cli::JobFlags job_flags;  // `impq run`'s flag table
  if (cmd == "submit") {
    f.String("job_file", &job_file, "JobSpec as protobuf JSON");
    f.String("name", &name, "job name");
    f.String("request-id", &request_id,
             "idempotency key: a retried submit with the same id returns the first job");
    job_flags.Register(f);
    f.Bool("watch", &watch, "watch the job after submitting");
  } else if (cmd == "status" || cmd == "watch" || cmd == "result" || cmd == "cancel") {
    f.String("job", &job, "job id", /*required=*/true);
    if (cmd == "result") f.Bool("json", &json, "print the result as JSON");
  } else if (cmd == "list") {
    f.Int("limit", &limit, "print at most N jobs, oldest first (0: all)");
    f.String("state", &state_name,
             "only jobs in this state: queued, estimating, solving, measuring, done, failed, "
             "cancelled");
    f.Int("page_size", &page_size, "jobs per ListJobs call (the coordinator caps it at 1000)");
  } else if (cmd != "health") {
    std::cerr << "impqctl: unknown command '" << cmd << "'\n";
    return 2;
  }
  if (absl::Status s = f.Parse(rest); !s.ok()) {
    std::cerr << s.message() << "\n" << f.Usage();
    return 2;
  }
  if (f.help_requested()) {
    std::cout << f.Usage();
    return 0;
  }

  if (cmd == "submit") {
    impq::v1::SubmitJobRequest req;
    impq::v1::JobSpec& s = *req.mutable_spec();
    if (!job_file.empty()) {
      auto text = impq::ReadFileToString(job_file);
      if (!text.ok()) {
        std::cerr << text.status().message() << "\n";
        return 2;
      }
      if (auto st = google::protobuf::util::JsonStringToMessage(*text, &s); !st.ok()) {
        std::cerr << "impqctl: " << job_file << ": " << st.ToString() << "\n";
        return 2;
      }
    }
    if (f.WasSet("name")) s.set_name(name);
    if (f.WasSet("request-id")) s.set_request_id(request_id);
    if (absl::Status st = job_flags.ApplyTo(f, s); !st.ok()) {
      std::cerr << "impqctl: " << st.message() << "\n";
      return 2;
    }
    if (job_file.empty()) {
      // Unset files take the defaults' names (relative: in the coordinator's data root).
      const impq::v1::JobSpec d = impq::cli::JobFlags::DefaultSpec();
      if (s.model_path().empty()) {
        s.set_model_path(d.model_path());
        if (!f.WasSet("tokenizer")) s.set_tokenizer_path(d.tokenizer_path());
      }
      if (s.calibration_text_path().empty()) s.set_calibration_text_path(d.calibration_text_path());
      if (s.evaluation_text_path().empty()) s.set_evaluation_text_path(d.evaluation_text_path());
    }
    grpc::ClientContext ctx;
    Prepare(ctx, g);
    impq::v1::SubmitJobResponse resp;
    if (grpc::Status st = stub->SubmitJob(&ctx, req, &resp); !st.ok()) return Fail(st);
    std::cout << Safe(resp.job_id()) << "\n";
    return watch ? Watch(*stub, g, resp.job_id()) : 0;
  }
  if (cmd == "status") {
    grpc::ClientContext ctx;
    Prepare(ctx, g);
    impq::v1::GetJobRequest req;
    req.set_job_id(job);
    impq::v1::GetJobResponse resp;
    if (grpc::Status st = stub->GetJob(&ctx, req, &resp); !st.ok()) return Fail(st);
    std::cout << Line(resp.status()) << "\n";
    return 0;
  }
  if (cmd == "watch") return Watch(*stub, g, job);
  if (cmd == "result") return Result(*stub, g, job, json);
  if (cmd == "cancel") {
    grpc::ClientContext ctx;
    Prepare(ctx, g);
    impq::v1::CancelJobRequest req;
    req.set_job_id(job);
    impq::v1::CancelJobResponse resp;
    if (grpc::Status st = stub->CancelJob(&ctx, req, &resp); !st.ok()) return Fail(st);
    std::cout << Line(resp.status()) << "\n";
    return 0;
  }
  if (cmd == "list") {
    impq::v1::JobState state = impq::v1::JOB_STATE_UNSPECIFIED;
    if (!state_name.empty() &&
        !impq::v1::JobState_Parse("JOB_STATE_" + absl::AsciiStrToUpper(state_name), &state)) {
      std::cerr << "impqctl: --state '" << state_name << "' is not a job state\n";
      return 2;
    }
    if (limit < 0 || page_size < 1) {
      std::cerr << "impqctl: --limit must be >= 0 and --page_size >= 1\n";
      return 2;
    }
    return List(*stub, g, limit, state, page_size);
  }
  // health: the standard grpc.health.v1 service.
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  if (grpc::Status st = health->Check(&ctx, req, &resp); !st.ok()) return Fail(st);
  const bool serving = resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  std::cout << (serving ? "SERVING" : "NOT_SERVING") << "\n";
  return serving ? 0 : 1;
}
