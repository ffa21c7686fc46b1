// impq run --via-coordinator: the same job through the cluster's coordinator code.
//
// The job is converted to a coordinator JobSpec and run by coordinator::RunEmbedded: an
// in-process coordinator (state machine, work units, leases, solver) and in-process worker
// loops over the in-process WorkerClient — the code path of impq-coordinator + impq-worker,
// without the network. Its Shapley values, standard errors and allocations are bit for bit
// those of the default pipeline (coordinator/embedded_test.cc); the default pipeline adds the
// baselines, the extra estimators and the per-budget choice, which a coordinator job does not
// carry.
#include <cmath>
#include <cstdio>
#include <iostream>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "coordinator/embedded.h"

namespace impq::cli {

int RunViaCoordinator(const engine::JobOptions& o, bool quiet) {
  auto spec = coordinator::SpecFromJobOptions(o);
  if (!spec.ok()) {
    std::cerr << "impq run: " << spec.status().message() << "\n";
    return 2;
  }
  coordinator::EmbeddedOptions eo;
  eo.threads_per_worker = o.threads;
  if (!quiet) {
    eo.progress = [](const v1::JobStatus& s) {
      std::fprintf(stderr, "\r\033[K%s: %lld/%lld evaluations", v1::JobState_Name(s.state()).c_str(),
                   static_cast<long long>(s.evaluations_done()),
                   static_cast<long long>(s.evaluations_total()));
    };
  }
  auto r = coordinator::RunEmbedded(*spec, eo);
  if (!quiet) std::fprintf(stderr, "\n");
  if (!r.ok()) {
    std::cerr << "impq run: " << r.status().message() << "\n";
    return 1;
  }
  const v1::JobResult& res = r->result;
  std::cout << absl::StrFormat(
      "IMPQ through the coordinator on %s: %d players; SPQE %d walks (%s)\n\n",
      res.model().model_config(), res.model().num_players(), res.permutations_used(),
      res.stop_reason());
  std::cout << "| b_avg | budget (bytes) | memory (bytes) | held-out PPL | proven optimal | bits |\n"
               "|---:|---:|---:|---:|---|---|\n";
  for (const v1::Allocation& a : res.allocations()) {
    std::string bits;
    for (int b : a.bits()) bits += static_cast<char>('0' + b);
    std::cout << absl::StrFormat("| %.2f | %d | %d | %s | %s | `%s` |\n", a.average_bits(),
                                 a.budget_bytes(), a.memory_bytes(),
                                 a.measured() ? absl::StrFormat("%.3f", std::exp(a.measured_loss()))
                                              : std::string("—"),
                                 a.proven_optimal() ? "yes" : "no", bits);
  }
  std::cout << "\n| player | φ | SE |\n|---|---:|---:|\n";
  for (int i = 0; i < res.phi_size(); ++i) {
    const std::string name =
        i < res.model().player_names_size() ? res.model().player_names(i) : std::to_string(i);
    std::cout << absl::StrFormat("| %s | %.4f | %.4f |\n", name, res.phi(i),
                                 i < res.standard_error_size() ? res.standard_error(i) : 0.0);
  }
  return 0;
}

}  // namespace impq::cli
