// SentencePiece in processes that run protobuf 3.21 and gRPC (worker/model/sentencepiece_shim.h).
//
// Debian's libsentencepiece bundles protobuf-lite 3.14; linked next to libprotobuf it used to
// crash the process before main() or fail protobuf's version check on a tokenizer.model. This
// binary links gRPC, protobuf and impq_model, and checks that
//  - an HF directory's tokenizer.model tokenizes real text exactly as in a process without
//    protobuf (spm_encode_reference, spawned here), and gives the known ids of a sentence;
//  - libsentencepiece's symbols stay out of the global scope and protobuf keeps working;
//  - a missing or broken module is an error naming the file;
//  - an impq-worker process serves a job on the HF directory, with the embedded run's result.
#include <dlfcn.h>
#include <link.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "common/file_util.h"
#include "coordinator/embedded.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/service/service_test_util.h"
#include "worker/eval/eval_set.h"
#include "worker/model/loader.h"
#include "worker/model/sentencepiece_shim.h"
#include "worker/model/sentencepiece_tokenizer.h"

namespace impq::service_test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int CollectNames(dl_phdr_info* info, size_t, void* out) {
  if (info->dlpi_name != nullptr) {
    static_cast<std::string*>(out)->append(info->dlpi_name).append("\n");
  }
  return 0;
}

std::string LoadedObjects() {
  std::string names;
  dl_iterate_phdr(CollectNames, &names);
  return names;
}

// Exercises this process's libprotobuf: a message round trip.
void ExpectProtobufWorks() {
  v1::JobSpec spec = SharedModelSpec("protobuf", 3, 2, 64, 4, 7);
  v1::JobSpec back;
  ASSERT_TRUE(back.ParseFromString(spec.SerializeAsString()));
  EXPECT_EQ(back.SerializeAsString(), spec.SerializeAsString());
  EXPECT_EQ(back.model_path(), SharedDataPath("stories260K.bin"));
}

std::string HfDir() { return SharedDataPath("stories260K-hf"); }

TEST(SentencePieceIsolationTest, ThisProcessRunsProtobufAndGrpcButDoesNotLinkSentencePiece) {
  // gRPC and protobuf in use before any tokenizer.
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  ASSERT_NE(channel, nullptr);
  ExpectProtobufWorks();
  const std::string objects = LoadedObjects();
  EXPECT_THAT(objects, HasSubstr("libprotobuf.so"));
  EXPECT_THAT(objects, HasSubstr("libgrpc++"));
  EXPECT_THAT(objects, Not(HasSubstr("libsentencepiece"))) << "linked at load time";
}

TEST(SentencePieceIsolationTest, HfDirectoryTokenizesAsInAProcessWithoutProtobuf) {
  auto channel = grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials());
  ExpectProtobufWorks();
  absl::StatusOr<model::LoadedModel> loaded = model::LoadModelAndTokenizer(HfDir());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->tokenizer_path, HfDir() + "/tokenizer.model");
  const model::Tokenizer& tok = *loaded->tokenizer;
  ASSERT_NE(dynamic_cast<const model::SentencePieceTokenizer*>(&tok), nullptr);
  EXPECT_EQ(tok.vocab_size(), 512);
  // Known ids (the same pieces as run.c's tok512.bin; tokenizer_test's "Once upon a time").
  EXPECT_EQ(tok.Encode("Once upon a time, there was a little girl.", true),
            (std::vector<int>{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 426}));
  EXPECT_EQ(tok.Decode(tok.Encode("Once upon a time", true)), "Once upon a time");

  // Every document of the shared text, against the reference process.
  const std::string text_path = SharedDataPath("tinystories_v2_valid_100.txt");
  const std::string out = FreshDir("spm_reference") + "/ids.txt";
  const pid_t ref =
      Spawn({IMPQ_SPM_REFERENCE_BINARY, HfDir() + "/tokenizer.model", text_path}, out);
  int status = 0;
  waitpid(ref, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "see " << out;
  absl::StatusOr<std::string> expected = ReadFileToString(out);
  ASSERT_TRUE(expected.ok()) << expected.status();
  absl::StatusOr<std::string> text = ReadFileToString(text_path);
  ASSERT_TRUE(text.ok()) << text.status();
  std::string mine = "protobuf: absent\n";
  int64_t tokens = 0;
  const std::vector<std::string_view> docs = eval::SplitDocuments(*text);
  for (std::string_view doc : docs) {
    const std::vector<int> ids = tok.Encode(doc, true);
    tokens += static_cast<int64_t>(ids.size());
    for (int id : ids) mine += std::to_string(id) + " ";
    mine += "\n";
  }
  ASSERT_EQ(docs.size(), 100u);
  EXPECT_GT(tokens, 35000);
  EXPECT_EQ(mine, *expected) << "the reference process's ids are in " << out;

  // libsentencepiece stayed private to the module; protobuf is still this process's own.
  EXPECT_THAT(LoadedObjects(), HasSubstr("libsentencepiece"));
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "_ZN13sentencepiece22SentencePieceProcessorC1Ev"), nullptr);
  void* verify = dlsym(RTLD_DEFAULT, "_ZN6google8protobuf8internal13VerifyVersionEiiPKc");
  Dl_info info{};
  ASSERT_NE(verify, nullptr);
  ASSERT_NE(dladdr(verify, &info), 0);
  EXPECT_THAT(info.dli_fname, HasSubstr("libprotobuf.so"));
  ExpectProtobufWorks();
}

TEST(SentencePieceIsolationTest, MissingOrBrokenModuleIsAnErrorNamingTheFile) {
  const std::string missing = "/nonexistent/dir/libimpq_sentencepiece.so";
  ASSERT_EQ(setenv(model::kSentencePieceModuleEnv, missing.c_str(), 1), 0);
  EXPECT_EQ(model::SentencePieceModuleCandidates(), std::vector<std::string>{missing});
  absl::StatusOr<std::unique_ptr<model::SentencePieceTokenizer>> tok =
      model::SentencePieceTokenizer::Load(HfDir() + "/tokenizer.model");
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tok.status().message(), HasSubstr(missing));
  EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.model"));
  EXPECT_THAT(tok.status().message(), HasSubstr(model::kSentencePieceModuleEnv));
  ASSERT_EQ(unsetenv(model::kSentencePieceModuleEnv), 0);

  // Without the override: next to the executable, ../lib/impq, then the build tree's module.
  const std::vector<std::string> candidates = model::SentencePieceModuleCandidates();
  ASSERT_GE(candidates.size(), 3u);
  EXPECT_THAT(candidates[0], HasSubstr("/libimpq_sentencepiece.so"));
  EXPECT_THAT(candidates[1], HasSubstr("/../lib/impq/libimpq_sentencepiece.so"));

  // A file that is not a shared object.
  const std::string not_module = SharedDataPath("README.md");
  absl::StatusOr<const ImpqSpmApi*> bad = model::LoadSentencePieceModule(not_module);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(), HasSubstr(not_module));
  EXPECT_THAT(bad.status().message(), HasSubstr("dlopen"));
  // A shared object without the entry point.
  Dl_info info{};
  ASSERT_NE(dladdr(reinterpret_cast<void*>(&grpc::InsecureChannelCredentials), &info), 0);
  absl::StatusOr<const ImpqSpmApi*> foreign = model::LoadSentencePieceModule(info.dli_fname);
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(foreign.status().message(), HasSubstr("impq_spm_get_api"));

  // The real module still loads afterwards.
  auto good = model::SentencePieceTokenizer::Load(HfDir() + "/tokenizer.model");
  EXPECT_TRUE(good.ok()) << good.status();
}

// What the collision used to block: an impq-worker process serving a job whose model is an HF
// directory with a tokenizer.model. Its result equals the embedded run's (this process).
TEST(SentencePieceIsolationTest, WorkerProcessServesAnHfDirectoryJob) {
  v1::JobSpec spec = SharedModelSpec("hf", 6, 4, 128, 4, 11);
  spec.set_model_path(HfDir());
  spec.clear_tokenizer_path();
  absl::StatusOr<coordinator::EmbeddedResult> embedded =
      coordinator::RunEmbedded(spec, coordinator::EmbeddedOptions());
  ASSERT_TRUE(embedded.ok()) << embedded.status();

  const std::string dir = FreshDir("hf_worker");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(
      grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  Auth(ctx);
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  v1::SubmitJobResponse resp;
  grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  const pid_t worker = StartWorker(dir, c.target(), "hf");
  const v1::GetJobResponse job = WaitTerminal(*stub, resp.job_id(), 60);
  Stop(worker, SIGTERM);
  stub.reset();
  Stop(c.pid, SIGTERM);
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE)
      << job.status().error() << "; see " << dir << "/hf.log";
  EXPECT_EQ(Comparable(job.result()), Comparable(embedded->result));
  EXPECT_EQ(job.result().model().num_players(), 5);
}

}  // namespace
}  // namespace impq::service_test
