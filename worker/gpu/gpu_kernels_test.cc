// Tests of the CUDA plugin's kernels and of everything around them that runs without a GPU.
//
// CPU tests (run everywhere):
//   - bf16 helpers: edge values and an independent rounding rule;
//   - GpuRuntime: loading, the API table check, status mapping, and the real plugin's argument
//     validation and "no device" answers (on a machine without a GPU the plugin still loads);
//   - the kernels' host-compilable logic executed on the CPU: the RTN warp algorithm
//     (rtn_math.h) against quant::RtnQuantizer bit for bit, the packing byte function, and the
//     very cuBLAS call descriptors of gemm_plan.h run through a scalar column-major GEMM
//     together with an emulation of the in-place softmax, against the attention reference;
//   - the references of gpu_reference.h against the CPU engine (forward::LlamaForward) on small
//     random Llama / Qwen-3 / Gemma-2 models: bit for bit where they share code, within a
//     derived f32 bound for attention.
// GPU tests (GTEST_SKIP with TestRuntime's reason without a device): every kernel_* entry point
// against its reference: packed codes, scales and zeros bit for bit, floats within tolerances
// derived next to each test.
//
// Notation: u = 2^-24 (f32 unit roundoff), γ_n = n·u / (1 - n·u) (Higham: a float sum of n
// products errs by at most γ_n·Σ|a_i b_i|). cuBLAS's tensor-core accumulation is not
// guaranteed to round to nearest; we allow truncation, i.e. u' = 2^-23 in its γ'.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "common/scoped_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/gpu/testdata/fake_plugin_path.h"
#include "worker/forward/kernels.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/matmul.h"
#include "worker/forward/rope.h"
#include "worker/forward/weight_set.h"
#include "worker/gpu/cuda/gemm_plan.h"
#include "worker/gpu/cuda/rtn_math.h"
#include "worker/gpu/gpu_api.h"
#include "worker/gpu/gpu_reference.h"
#include "worker/gpu/gpu_runtime.h"
#include "worker/model/model.h"
#include "worker/quant/block_format.h"
#include "worker/quant/packed_tensor.h"
#include "worker/quant/rtn.h"

namespace impq::gpu {
namespace {

using ::testing::HasSubstr;

constexpr double kU = 0x1p-24;   // f32 unit roundoff
constexpr double kUtc = 0x1p-23; // allowance for a truncating tensor-core accumulator

double Gamma(double n, double u) { return n * u / (1.0 - n * u); }

uint32_t Bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}
float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Spacing of bf16 numbers at |x| (x finite): 2^(e - 7) in the binade [2^e, 2^(e+1)),
// 2^-133 among subnormals.
double Bf16Ulp(double x) {
  x = std::fabs(x);
  if (x < 0x1p-126) return 0x1p-133;
  int e = 0;
  std::frexp(x, &e);  // x = f * 2^e, f in [0.5, 1): binade exponent e - 1
  return std::ldexp(1.0, e - 1 - 7);
}
// Same for f32 (2^(e - 23), 2^-149 among subnormals).
double F32Ulp(double x) {
  x = std::fabs(x);
  if (x < 0x1p-126) return 0x1p-149;
  int e = 0;
  std::frexp(x, &e);
  return std::ldexp(1.0, e - 1 - 23);
}

std::vector<float> RandomNormal(int64_t n, uint64_t seed, double std_dev = 1.0) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(std_dev * rng.Normal());
  return v;
}

std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBf16Bits(v[i]);
  return out;
}
std::vector<float> FromBf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16BitsToF32(v[i]);
  return out;
}

// ======================================================================= bf16 (CPU)

// An independent statement of round-to-nearest-even to bf16, on values (in double, where
// every float and both neighbours are exact): the two bf16 neighbours of x, the nearer wins,
// a tie goes to the even mantissa; past the largest finite bf16, the "next" neighbour is
// 2^128 and rounding to it means inf (IEEE overflow).
uint16_t Bf16ByValue(float x) {
  const uint32_t u = Bits(x);
  const uint32_t sign = u & 0x80000000u;
  const uint32_t mag = u & 0x7fffffffu;
  const uint32_t lo = mag & 0xffff0000u;  // truncation toward zero
  const double xv = std::fabs(static_cast<double>(x));
  const double lo_v = static_cast<double>(FromBits(lo));
  const uint32_t hi = lo + 0x10000u;  // next bf16 up in magnitude (0x7f800000 = inf)
  const double hi_v = hi >= 0x7f800000u ? 0x1p128 : static_cast<double>(FromBits(hi));
  uint32_t pick;
  if (xv - lo_v < hi_v - xv) {
    pick = lo;
  } else if (xv - lo_v > hi_v - xv) {
    pick = hi;
  } else {
    pick = ((lo >> 16) & 1u) == 0 ? lo : hi;
  }
  return static_cast<uint16_t>((sign | pick) >> 16);
}

TEST(Bf16Test, EdgeValues) {
  EXPECT_EQ(F32ToBf16Bits(0.0f), 0x0000);
  EXPECT_EQ(F32ToBf16Bits(-0.0f), 0x8000);
  EXPECT_EQ(F32ToBf16Bits(1.0f), 0x3f80);
  EXPECT_EQ(F32ToBf16Bits(-2.0f), 0xc000);
  EXPECT_EQ(F32ToBf16Bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(F32ToBf16Bits(-std::numeric_limits<float>::infinity()), 0xff80);
  // Largest float rounds up past the largest bf16 (0x7f7f = 3.3895e38): inf.
  EXPECT_EQ(F32ToBf16Bits(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(F32ToBf16Bits(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x7f7f0000u)), 0x7f7f);  // largest bf16 itself
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x7f7f7fffu)), 0x7f7f);  // just below the halfway point
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x7f7f8000u)), 0x7f80);  // tie, odd mantissa: up = inf
  // Ties to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x3f808000u)), 0x3f80);  // even below: down
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x3f818000u)), 0x3f82);  // odd below: up
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x3f808001u)), 0x3f81);  // above halfway: up
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x3f807fffu)), 0x3f80);  // below halfway: down
  // Subnormals are rounded, not flushed.
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x00000001u)), 0x0000);  // 2^-149 -> 0
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x00008000u)), 0x0000);  // tie, even: 0
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x00018000u)), 0x0002);  // tie, odd: up
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x00008001u)), 0x0001);  // smallest bf16 subnormal
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x007fffffu)), 0x0080);  // rounds up to FLT_MIN
  EXPECT_EQ(F32ToBf16Bits(FromBits(0x807fffffu)), 0x8080);
  // NaN (quiet, signalling, negative, any payload) -> canonical 0x7fff, as CUDA.
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffc00000u, 0xff800001u, 0x7fffffffu,
                       0x7f80ffffu}) {
    EXPECT_EQ(F32ToBf16Bits(FromBits(nan)), 0x7fff) << std::hex << nan;
  }
  EXPECT_TRUE(std::isnan(RoundBf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(RoundBf16(1.0f + 0x1p-9f), 1.0f);
  EXPECT_EQ(Bf16BitsToF32(0x3f80), 1.0f);
  EXPECT_EQ(Bf16BitsToF32(0x0001), 0x1p-133f);
}

TEST(Bf16Test, MatchesRoundingByValueOnEveryBinadeTieAndRandomPatterns) {
  // Every bf16 pattern with low halves at and around the rounding boundaries, and random
  // bit patterns (NaNs excluded: their rule is fixed above).
  const uint32_t lows[] = {0x0000, 0x0001, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff};
  int64_t checked = 0;
  for (uint32_t hi = 0; hi < 0x10000u; ++hi) {
    for (uint32_t low : lows) {
      const uint32_t u = hi << 16 | low;
      if ((u & 0x7fffffffu) > 0x7f800000u) continue;
      ASSERT_EQ(F32ToBf16Bits(FromBits(u)), Bf16ByValue(FromBits(u))) << std::hex << u;
      ++checked;
    }
  }
  Rng rng(17);
  for (int i = 0; i < 1000000; ++i) {
    const uint32_t u = static_cast<uint32_t>(rng.NextU64());
    if ((u & 0x7fffffffu) > 0x7f800000u) continue;
    ASSERT_EQ(F32ToBf16Bits(FromBits(u)), Bf16ByValue(FromBits(u))) << std::hex << u;
    ++checked;
  }
  EXPECT_GT(checked, 1400000);
}

TEST(Bf16Test, WideningIsExactAndRoundTrips) {
  for (uint32_t b = 0; b < 0x10000u; ++b) {
    const float f = Bf16BitsToF32(static_cast<uint16_t>(b));
    ASSERT_EQ(Bits(f), b << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(F32ToBf16Bits(f), b) << std::hex << b;
    }
  }
}

// ======================================================================= GpuRuntime (CPU)

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

TEST(GpuRuntimeTest, LoadsTheBuiltPluginOrNamesEveryPathTried) {
  const std::vector<std::string> paths = GpuRuntime::CandidatePaths();
  ASSERT_FALSE(paths.empty());
  bool any = false;
  for (const std::string& p : paths) any = any || FileExists(p);
  absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
  if (any) {
    // A built plugin must load, also on a machine without a GPU or driver.
    ASSERT_TRUE(rt.ok()) << rt.status();
    EXPECT_EQ((*rt)->api().version, IMPQ_GPU_API_VERSION);
    EXPECT_TRUE(GpuRuntime::ValidateApi(&(*rt)->api(), (*rt)->plugin_path()).ok());
    EXPECT_GE((*rt)->device_count(), 0);
    if ((*rt)->device_count() == 0) {
      EXPECT_FALSE((*rt)->no_device_reason().empty());
      EXPECT_EQ((*rt)->DeviceInfo(0).status().code(), absl::StatusCode::kInvalidArgument);
    } else {
      EXPECT_TRUE((*rt)->no_device_reason().empty());
    }
  } else {
    ASSERT_FALSE(rt.ok());
    EXPECT_EQ(rt.status().code(), absl::StatusCode::kUnavailable);
    for (const std::string& p : paths) EXPECT_THAT(rt.status().message(), HasSubstr(p));
  }
}

TEST(GpuRuntimeTest, MissingPluginFromEnvironmentIsUnavailableNamingThePath) {
  const std::string path = "/nonexistent/dir/libimpq_cuda_missing.so";
  ScopedEnv env("IMPQ_CUDA_PLUGIN", path);
  ASSERT_EQ(GpuRuntime::CandidatePaths(), std::vector<std::string>{path});
  absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(rt.status().message(), HasSubstr(path));
  EXPECT_THAT(rt.status().message(), HasSubstr("No such file"));
}

TEST(GpuRuntimeTest, NonLibraryFileIsUnavailableWithTheLoaderError) {
  const std::string path = ::testing::TempDir() + "/not_a_plugin.so";
  {
    std::ofstream f(path);
    f << "this is not an ELF file\n";
  }
  ScopedEnv env("IMPQ_CUDA_PLUGIN", path);
  absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(rt.status().message(), HasSubstr(path));
  std::remove(path.c_str());
}

TEST(GpuRuntimeTest, LibraryWithoutTheEntryPointIsUnavailable) {
  // libm is a real shared library without impq_gpu_get_api.
  ScopedEnv env("IMPQ_CUDA_PLUGIN", "libm.so.6");
  absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
  ASSERT_FALSE(rt.ok());
  EXPECT_EQ(rt.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(rt.status().message(), HasSubstr("has no symbol impq_gpu_get_api"));
}

TEST(GpuRuntimeTest, ValidateApiChecksVersionAndEveryEntryPoint) {
  EXPECT_EQ(GpuRuntime::ValidateApi(nullptr, "p.so").code(), absl::StatusCode::kUnavailable);
  // A complete table (entries only need to be non-null for the check).
  auto dummy_count = [](int*, ImpqGpuError*) { return 0; };
  ImpqGpuApi api{};
  api.version = IMPQ_GPU_API_VERSION;
  api.device_count = dummy_count;
  // Fill every other pointer with a non-null value of its own type via memcpy of a sentinel.
  {
    std::vector<unsigned char> raw(sizeof(api));
    std::memcpy(raw.data(), &api, sizeof(api));
    const size_t first = offsetof(ImpqGpuApi, device_count);
    void* fake = reinterpret_cast<void*>(0x1);
    for (size_t off = first; off + sizeof(void*) <= sizeof(api); off += sizeof(void*)) {
      std::memcpy(raw.data() + off, &fake, sizeof(void*));
    }
    std::memcpy(&api, raw.data(), sizeof(api));
  }
  EXPECT_TRUE(GpuRuntime::ValidateApi(&api, "p.so").ok());
  ImpqGpuApi wrong = api;
  wrong.version = IMPQ_GPU_API_VERSION + 1;
  const absl::Status s = GpuRuntime::ValidateApi(&wrong, "p.so");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("API version"));
  EXPECT_THAT(s.message(), HasSubstr("p.so"));
  ImpqGpuApi missing = api;
  missing.kernel_nll = nullptr;
  const absl::Status m = GpuRuntime::ValidateApi(&missing, "p.so");
  EXPECT_EQ(m.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(m.message(), HasSubstr("kernel_nll"));
  // Version 2's entry point is required from version 2 on ...
  ImpqGpuApi no_widths = api;
  no_widths.model_set_linear_rtn_widths = nullptr;
  const absl::Status w = GpuRuntime::ValidateApi(&no_widths, "p.so");
  EXPECT_EQ(w.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(w.message(), HasSubstr("model_set_linear_rtn_widths"));
  // ... and not read in a version-1 table, which is accepted (an older plugin).
  ImpqGpuApi v1 = no_widths;
  v1.version = 1;
  EXPECT_TRUE(GpuRuntime::ValidateApi(&v1, "p.so").ok());
  ImpqGpuApi v0 = api;
  v0.version = IMPQ_GPU_API_MIN_VERSION - 1;
  EXPECT_EQ(GpuRuntime::ValidateApi(&v0, "p.so").code(), absl::StatusCode::kFailedPrecondition);
  // The version-1 table is the prefix before the version-2 entry.
  EXPECT_EQ(impq_gpu_api_bytes(1), offsetof(ImpqGpuApi, model_set_linear_rtn_widths));
  EXPECT_EQ(impq_gpu_api_bytes(IMPQ_GPU_API_VERSION), sizeof(ImpqGpuApi));
  EXPECT_EQ(impq_gpu_api_bytes(IMPQ_GPU_API_VERSION + 1), 0u);
}

TEST(GpuRuntimeTest, WidthsByPluginVersion) {
  for (int bits : {2, 4}) {
    EXPECT_TRUE(GpuRuntime::SupportsBits(1, bits));
    EXPECT_TRUE(GpuRuntime::SupportsBits(2, bits));
  }
  for (int bits : {3, 8}) {
    EXPECT_FALSE(GpuRuntime::SupportsBits(1, bits));
    EXPECT_TRUE(GpuRuntime::SupportsBits(2, bits));
  }
  for (int bits : {0, 1, 5, 16, 32}) EXPECT_FALSE(GpuRuntime::SupportsBits(2, bits)) << bits;
  // The variant of each width: version 1's numbers unchanged, 3 and 8 after them, distinct.
  EXPECT_EQ(impq_gpu_variant_of_bits(2), IMPQ_GPU_VARIANT_2BIT);
  EXPECT_EQ(impq_gpu_variant_of_bits(4), IMPQ_GPU_VARIANT_4BIT);
  EXPECT_EQ(impq_gpu_variant_of_bits(3), IMPQ_GPU_VARIANT_3BIT);
  EXPECT_EQ(impq_gpu_variant_of_bits(8), IMPQ_GPU_VARIANT_8BIT);
  EXPECT_EQ(impq_gpu_variant_of_bits(16), -1);
  EXPECT_EQ(IMPQ_GPU_VARIANT_2BIT, 0);
  EXPECT_EQ(IMPQ_GPU_VARIANT_4BIT, 1);
  EXPECT_EQ(IMPQ_GPU_VARIANT_FULL, 2);

  const std::vector<int> binary = {2, 4}, ladder = {2, 3, 4, 8};
  EXPECT_TRUE(GpuRuntime::CheckWidths(1, "old.so", binary).ok());
  EXPECT_TRUE(GpuRuntime::CheckWidths(2, "new.so", ladder).ok());
  const absl::Status old = GpuRuntime::CheckWidths(1, "old.so", ladder);
  EXPECT_EQ(old.code(), absl::StatusCode::kFailedPrecondition);
  for (const char* part : {"old.so", "API version 1", "[2, 3, 4, 8]", "API version 2 for [3, 8]",
                           "rebuild libimpq_cuda.so"}) {
    EXPECT_THAT(old.message(), HasSubstr(part));
  }
  const absl::Status odd = GpuRuntime::CheckWidths(2, "new.so", std::vector<int>{2, 5});
  EXPECT_EQ(odd.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(odd.message(), HasSubstr("[5]"));
}

TEST(GpuRuntimeTest, OlderPluginLoadsWithOnlyItsVersionsEntryPoints) {
  const std::string path = FakePluginV1Path();
  if (path.empty() || !FileExists(path)) GTEST_SKIP() << "fake version-1 plugin not built";
  ScopedEnv env("IMPQ_CUDA_PLUGIN", path);
  absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
  ASSERT_TRUE(rt.ok()) << rt.status();
  EXPECT_EQ((*rt)->api_version(), 1);
  EXPECT_EQ((*rt)->api().version, 1);
  EXPECT_EQ((*rt)->device_count(), 1);
  EXPECT_TRUE((*rt)->SupportsBits(4));
  EXPECT_FALSE((*rt)->SupportsBits(3));
  EXPECT_FALSE((*rt)->SupportsBits(8));
  // The plugin's table holds a sentinel there; the host copied only version 1's part.
  EXPECT_EQ((*rt)->api().model_set_linear_rtn_widths, nullptr);
  absl::StatusOr<ImpqGpuDeviceInfo> info = (*rt)->DeviceInfo(0);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_STREQ(info->name, "fake version-1 plugin");
}

TEST(GpuRuntimeTest, ToStatusMapsEveryCode) {
  ImpqGpuError err{};
  std::snprintf(err.message, sizeof(err.message), "cudaMalloc failed");
  EXPECT_TRUE(GpuRuntime::ToStatus(IMPQ_GPU_OK, err, "x").ok());
  const std::pair<int, absl::StatusCode> cases[] = {
      {IMPQ_GPU_EINVAL, absl::StatusCode::kInvalidArgument},
      {IMPQ_GPU_ENOMEM, absl::StatusCode::kResourceExhausted},
      {IMPQ_GPU_EDEVICE, absl::StatusCode::kInternal},
      {IMPQ_GPU_ENODEVICE, absl::StatusCode::kUnavailable},
      {99, absl::StatusCode::kInternal}};
  for (const auto& [rc, code] : cases) {
    const absl::Status s = GpuRuntime::ToStatus(rc, err, "kernel_gemm");
    EXPECT_EQ(s.code(), code) << rc;
    EXPECT_EQ(std::string(s.message()).rfind("kernel_gemm: cudaMalloc failed", 0), 0u) << s;
  }
  EXPECT_THAT(GpuRuntime::ToStatus(99, err, "w").message(), HasSubstr("99"));
  // An unterminated message is cut at the buffer's end, not read past it.
  ImpqGpuError full;
  std::memset(full.message, 'a', sizeof(full.message));
  EXPECT_EQ(GpuRuntime::ToStatus(IMPQ_GPU_EINVAL, full, "w").message().size(),
            3 + sizeof(full.message));
}

TEST(GpuRuntimeTest, TestRuntimeAndProbeAgree) {
  std::string why;
  GpuRuntime* rt = TestRuntime(&why);
  absl::StatusOr<ImpqGpuDeviceInfo> probe = ProbeGpu();
  if (rt == nullptr) {
    EXPECT_FALSE(why.empty());
    EXPECT_FALSE(probe.ok());
    EXPECT_TRUE(probe.status().code() == absl::StatusCode::kUnavailable ||
                probe.status().code() == absl::StatusCode::kFailedPrecondition)
        << probe.status();
    EXPECT_THAT(why, HasSubstr(std::string(probe.status().message())));
  } else {
    EXPECT_GT(rt->device_count(), 0);
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_GT(std::strlen(probe->name), 0u);
    EXPECT_GE(probe->cc_major, 8);
    EXPECT_GT(probe->total_bytes, 0);
    EXPECT_GE(probe->total_bytes, probe->free_bytes);
    EXPECT_GT(probe->sm_count, 0);
  }
}

// The real plugin on this machine: argument validation runs before any device is touched, so
// it is tested with or without a GPU; valid calls answer ENODEVICE without one.
class PluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
    if (!rt.ok()) GTEST_SKIP() << "CUDA plugin not loaded: " << rt.status();
    rt_ = std::move(*rt);
  }
  const ImpqGpuApi& api() const { return rt_->api(); }
  // The code a valid call must return: OK with a device, ENODEVICE without.
  int ValidCallCode() const { return rt_->device_count() > 0 ? IMPQ_GPU_OK : IMPQ_GPU_ENODEVICE; }

  std::unique_ptr<GpuRuntime> rt_;
};

TEST_F(PluginTest, RejectsBadArgumentsNamingThem) {
  ImpqGpuError err{};
  std::vector<uint8_t> codes = {0, 1, 2, 3, 0, 1, 2, 3}, packed(8);
  EXPECT_EQ(api().kernel_pack(0, 5, 1, 8, codes.data(), packed.data(), &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("bits = 5 (expected 2, 3, 4 or 8)"));
  codes[5] = 4;
  EXPECT_EQ(api().kernel_pack(0, 2, 2, 4, codes.data(), packed.data(), &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("row 1 column 1 is 4"));
  EXPECT_EQ(api().kernel_unpack(0, 4, 0, 4, packed.data(), codes.data(), &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("rows = 0"));

  std::vector<float> w = {1.0f, 2.0f, std::nanf(""), 4.0f};
  std::vector<float> s(2), z(2);
  EXPECT_EQ(api().kernel_rtn_quantize(0, 4, 2, 2, 2, w.data(), packed.data(), s.data(),
                                      z.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("row 1 column 0"));
  EXPECT_EQ(api().kernel_rtn_quantize(0, 4, 2, 2, 0, w.data(), packed.data(), s.data(),
                                      z.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("group = 0"));

  std::vector<float> table(3 * 4, 1.0f), out(8);
  std::vector<int32_t> tokens = {0, 3};
  EXPECT_EQ(api().kernel_embed(0, table.data(), 3, 4, tokens.data(), 2, 1.0f, out.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("tokens[1] = 3 is outside [0, 3)"));

  std::vector<float> logits(2 * 5, 0.0f), nll(2);
  std::vector<int32_t> targets = {-1, 0};
  EXPECT_EQ(api().kernel_nll(0, logits.data(), 2, 5, targets.data(), 0.0f, nll.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("targets[0] = -1"));
  targets[0] = 1;
  EXPECT_EQ(api().kernel_nll(0, logits.data(), 2, 5, targets.data(), -1.0f, nll.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("softcap"));

  std::vector<uint16_t> q(3 * 2 * 4), kv(2 * 2 * 4), att(2 * 3 * 4);
  EXPECT_EQ(api().kernel_attention(0, q.data(), kv.data(), kv.data(), 2, 3, 2, 4, 1.0f, 0.0f, 0,
                                   att.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("Hkv = 2"));
  EXPECT_EQ(api().kernel_rope(0, table.data(), 1, 1, 3, nullptr, 1e-5f, table.data(),
                              table.data(), IMPQ_GPU_ROPE_HALF, att.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("head_dim = 3"));
  EXPECT_EQ(api().kernel_glu(0, table.data(), table.data(), 4, 7, att.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("activation = 7"));
  EXPECT_EQ(api().kernel_gemm(0, q.data(), 2, 4, nullptr, 3, 0.0f, out.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(std::string(err.message), HasSubstr("w is null"));
  double tflops = 0;
  EXPECT_EQ(api().bench_gemm_tflops(0, 16, 16, 16, 0, &tflops, &err), IMPQ_GPU_EINVAL);
  EXPECT_EQ(api().device_count(nullptr, &err), IMPQ_GPU_EINVAL);
}

TEST_F(PluginTest, ValidCallsRunOrReportNoDevice) {
  ImpqGpuError err{};
  int count = -1;
  ASSERT_EQ(api().device_count(&count, &err), IMPQ_GPU_OK);
  EXPECT_EQ(count, rt_->device_count());
  std::vector<uint16_t> x(2 * 4, 0x3f80), w(3 * 4, 0x3f80);
  std::vector<float> y(2 * 3, -1.0f);
  const int rc = api().kernel_gemm(0, x.data(), 2, 4, w.data(), 3, 0.0f, y.data(), &err);
  EXPECT_EQ(rc, ValidCallCode()) << err.message;
  if (rc == IMPQ_GPU_OK) {
    for (float v : y) EXPECT_EQ(v, 4.0f);  // 1*1 summed over 4 columns, exactly
  } else {
    EXPECT_THAT(std::string(err.message), HasSubstr("cudaGetDeviceCount"));
    const absl::Status s = GpuRuntime::ToStatus(rc, err, "kernel_gemm");
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  }
  ImpqGpuDeviceInfo info{};
  EXPECT_EQ(api().device_info(0, &info, &err), ValidCallCode()) << err.message;
  // An ordinal past the last device.
  const int bad = api().device_info(count + 5, &info, &err);
  EXPECT_EQ(bad, count > 0 ? IMPQ_GPU_EINVAL : IMPQ_GPU_ENODEVICE);
  double tflops = 0;
  EXPECT_EQ(api().bench_gemm_tflops(0, 64, 64, 64, 3, &tflops, &err), ValidCallCode())
      << err.message;
}

// ======================================================== kernel logic executed on the CPU

// A row-major [rows, cols] weight matrix with the cases RTN must get right, group by group:
// zero groups, constant groups of either sign, ranges too small for a normal f32 scale,
// +0/-0 minima in either order (the stored zero point's sign), a min or max attained twice.
std::vector<float> RtnCornerWeights(int64_t rows, int64_t cols, int64_t group, uint64_t seed) {
  std::vector<float> w = RandomNormal(rows * cols, seed, 0.02);
  const int64_t groups = impq_groups_per_row(cols, group);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * group, n = std::min(cols, c0 + group) - c0;
      float* p = w.data() + r * cols + c0;
      switch ((r * groups + g) % 9) {
        case 0:
          for (int64_t i = 0; i < n; ++i) p[i] = 0.0f;
          break;
        case 1:
          for (int64_t i = 0; i < n; ++i) p[i] = 0.75f;
          break;
        case 2:
          for (int64_t i = 0; i < n; ++i) p[i] = -1.5e-3f;
          break;
        case 3:  // range so small that the f32 scale is below FLT_MIN: constant path,
                 // stored with a subnormal scale (lo = 1e-38 > 0) or its negative twin
          for (int64_t i = 0; i < n; ++i) p[i] = (i % 2) ? 2e-38f : 1e-38f;
          if (r % 2 == 1) {
            for (int64_t i = 0; i < n; ++i) p[i] = -p[i];
          }
          break;
        case 4:  // +0 first, -0 later, non-negative group: zero point -0
          for (int64_t i = 0; i < n; ++i) p[i] = std::fabs(p[i]);
          p[0] = 0.0f;
          if (n > 2) p[n - 1] = -0.0f;
          break;
        case 5:  // -0 first, +0 later
          for (int64_t i = 0; i < n; ++i) p[i] = std::fabs(p[i]);
          p[0] = -0.0f;
          if (n > 2) p[n / 2] = 0.0f;
          break;
        case 6:  // min and max attained twice
          if (n > 3) {
            p[1] = p[n - 1] = -0.05f;
            p[0] = p[2] = 0.05f;
          }
          break;
        default:
          break;
      }
    }
  }
  return w;
}

struct RtnCase {
  int bits;
  int64_t rows, cols, group;
};

const RtnCase kRtnCases[] = {
    {4, 9, 64, 16},    // groups divide the row
    {2, 9, 64, 16},
    {4, 7, 37, 16},    // ragged last group (5 columns), odd byte count
    {2, 7, 37, 16},
    {2, 5, 30, 3},     // groups straddle bytes (3 * 2 bits)
    {4, 5, 31, 3},
    {2, 3, 10, 1},     // one column per group
    {4, 1, 1, 64},     // a single weight
    {2, 2, 131, 64},   // three groups, the last of 3 columns
    {4, 4, 300, 128},
    {3, 7, 37, 16},    // 3 bits: codes straddle bytes, ragged last group
    {3, 5, 64, 8},     // 8 codes = 3 bytes per group
    {3, 2, 131, 64},
    {8, 7, 37, 16},
    {8, 3, 10, 1},
};

TEST(RtnKernelLogicTest, WarpAlgorithmMatchesRtnQuantizerBitForBit) {
  // Emulates RtnParamsKernel (32 lanes scanning i = lane, lane + 32, ...; butterfly merges
  // with xor offsets 16..1, every lane merging with its partner's value from before the
  // step) and RtnCodesKernel (one RtnPackedByte per output byte), using rtn_math.h itself.
  quant::RtnQuantizer rtn;
  for (const RtnCase& tc : kRtnCases) {
    SCOPED_TRACE(testing::Message() << tc.bits << " bits " << tc.rows << "x" << tc.cols << " G"
                                    << tc.group);
    const std::vector<float> w = RtnCornerWeights(tc.rows, tc.cols, tc.group, 5);
    quant::QuantConfig cfg;
    cfg.bits = tc.bits;
    cfg.group_size = static_cast<int>(tc.group);
    absl::StatusOr<quant::PackedTensor> cpu = rtn.Quantize(w.data(), tc.rows, tc.cols, cfg, nullptr);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    const int max_code = impq_block_format(tc.bits).max_code;
    const int64_t groups = impq_groups_per_row(tc.cols, tc.group);
    std::vector<float> scales(static_cast<size_t>(tc.rows * groups));
    std::vector<float> zeros(scales.size());
    for (int64_t task = 0; task < tc.rows * groups; ++task) {
      const int64_t r = task / groups, g = task % groups, c0 = g * tc.group;
      const int64_t n = std::min(tc.group, tc.cols - c0);
      RtnMinMax lane[32];
      for (int l = 0; l < 32; ++l) {
        lane[l] = RtnMinMaxEmpty();
        for (int64_t i = l; i < n; i += 32) RtnMinMaxAdd(&lane[l], w[r * tc.cols + c0 + i], i);
      }
      for (int o = 16; o > 0; o >>= 1) {
        RtnMinMax before[32];
        std::copy(lane, lane + 32, before);
        for (int l = 0; l < 32; ++l) RtnMinMaxMerge(&lane[l], before[l ^ o]);
      }
      for (int l = 1; l < 32; ++l) {  // every lane holds the same answer
        ASSERT_EQ(Bits(lane[l].lo), Bits(lane[0].lo));
        ASSERT_EQ(Bits(lane[l].hi), Bits(lane[0].hi));
      }
      RtnGroupParams(lane[0].lo, lane[0].hi, max_code, &scales[task], &zeros[task]);
    }
    ASSERT_EQ(scales.size(), cpu->scales.size());
    for (size_t i = 0; i < scales.size(); ++i) {
      ASSERT_EQ(Bits(scales[i]), Bits(cpu->scales[i])) << "scale " << i;
      ASSERT_EQ(Bits(zeros[i]), Bits(cpu->zeros[i])) << "zero " << i << ": " << zeros[i]
                                                      << " vs " << cpu->zeros[i];
    }
    const int64_t rb = impq_code_bytes(tc.bits, tc.cols);
    for (int64_t idx = 0; idx < tc.rows * rb; ++idx) {
      const int64_t r = idx / rb, b = idx % rb;
      ASSERT_EQ(RtnPackedByte(w.data() + r * tc.cols, tc.cols, tc.group, scales.data() + r * groups,
                              zeros.data() + r * groups, tc.bits, max_code, b),
                cpu->codes[idx])
          << "byte " << idx;
    }
    // The reference entry point is RtnQuantizer itself.
    std::vector<uint8_t> packed(static_cast<size_t>(tc.rows * rb));
    std::vector<float> s2(scales.size()), z2(scales.size());
    ASSERT_TRUE(RtnQuantizeRef(tc.bits, tc.rows, tc.cols, tc.group, w.data(), packed.data(),
                               s2.data(), z2.data())
                    .ok());
    EXPECT_EQ(packed, cpu->codes);
    EXPECT_EQ(0, std::memcmp(s2.data(), cpu->scales.data(), s2.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(z2.data(), cpu->zeros.data(), z2.size() * sizeof(float)));
  }
}

TEST(RtnKernelLogicTest, SignOfAZeroMinimumReachesTheZeroPoint) {
  // Guards the first-occurrence rule: the two orders of +0/-0 store different zero-point
  // bits on the CPU, and the kernel's merge (lanes 0 and 2 hold the zeros) reproduces both.
  quant::RtnQuantizer rtn;
  quant::QuantConfig cfg;
  cfg.bits = 4;
  cfg.group_size = 4;
  const float a[] = {0.0f, 0.5f, -0.0f, 1.0f}, b[] = {-0.0f, 0.5f, 0.0f, 1.0f};
  for (const float* w : {a, b}) {
    absl::StatusOr<quant::PackedTensor> p = rtn.Quantize(w, 1, 4, cfg, nullptr);
    ASSERT_TRUE(p.ok()) << p.status();
    RtnMinMax lanes[4];
    for (int l = 0; l < 4; ++l) {
      lanes[l] = RtnMinMaxEmpty();
      RtnMinMaxAdd(&lanes[l], w[l], l);
    }
    RtnMinMax m = lanes[3];  // merge in an order unlike the scan
    RtnMinMaxMerge(&m, lanes[2]);
    RtnMinMaxMerge(&m, lanes[0]);
    RtnMinMaxMerge(&m, lanes[1]);
    float scale = 0, zero = 0;
    RtnGroupParams(m.lo, m.hi, 15, &scale, &zero);
    EXPECT_EQ(Bits(scale), Bits(p->scales[0]));
    EXPECT_EQ(Bits(zero), Bits(p->zeros[0]));
  }
  absl::StatusOr<quant::PackedTensor> pa = rtn.Quantize(a, 1, 4, cfg, nullptr);
  absl::StatusOr<quant::PackedTensor> pb = rtn.Quantize(b, 1, 4, cfg, nullptr);
  ASSERT_TRUE(pa.ok() && pb.ok());
  EXPECT_NE(Bits(pa->zeros[0]), Bits(pb->zeros[0]));
}

TEST(RtnReferenceTest, RejectsWhatRtnQuantizerRejects) {
  const float w[] = {1.0f, std::numeric_limits<float>::infinity()};
  uint8_t packed[1];
  float s[1], z[1];
  EXPECT_EQ(RtnQuantizeRef(4, 1, 2, 2, w, packed, s, z).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RtnQuantizeRef(5, 1, 2, 2, w, packed, s, z).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PackKernelLogicTest, PackedByteAndReferencesMatchPackedTensor) {
  Rng rng(8);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t cols : {1, 2, 3, 4, 5, 7, 8, 33, 130}) {
      const int64_t rows = 3, group = 5;
      std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
      for (uint8_t& c : codes) c = static_cast<uint8_t>(rng.Below(1u << bits));
      const int64_t rb = impq_code_bytes(bits, cols);
      std::vector<uint8_t> packed(static_cast<size_t>(rows * rb));
      PackRef(bits, rows, cols, codes.data(), packed.data());
      for (int64_t idx = 0; idx < rows * rb; ++idx) {
        ASSERT_EQ(PackedByte(codes.data() + (idx / rb) * cols, cols, bits, idx % rb), packed[idx]);
      }
      const int64_t groups = impq_groups_per_row(cols, group);
      std::vector<float> scales(static_cast<size_t>(rows * groups)), zeros(scales.size());
      for (size_t i = 0; i < scales.size(); ++i) {
        scales[i] = static_cast<float>(0.01 + rng.Uniform());
        zeros[i] = static_cast<float>(rng.Below(1u << bits));
      }
      absl::StatusOr<quant::PackedTensor> p =
          quant::Pack(codes, rows, cols, bits, group, scales, zeros);
      ASSERT_TRUE(p.ok()) << p.status();
      EXPECT_EQ(packed, p->codes) << bits << " bits, cols " << cols;
      std::vector<uint8_t> back(codes.size());
      UnpackRef(bits, rows, cols, packed.data(), back.data());
      EXPECT_EQ(back, codes);
      std::vector<float> deq(codes.size());
      std::vector<uint16_t> deq16(codes.size());
      DequantizeRef(bits, rows, cols, group, packed.data(), scales.data(), zeros.data(),
                    deq.data(), deq16.data());
      const std::vector<float> cpu = quant::Dequantize(*p);
      ASSERT_EQ(0, std::memcmp(deq.data(), cpu.data(), cpu.size() * sizeof(float)));
      for (size_t i = 0; i < deq.size(); ++i) ASSERT_EQ(deq16[i], F32ToBf16Bits(cpu[i]));
    }
  }
}

// Executes a GemmCall (gemm_plan.h) with the column-major semantics written there; operands
// are element arrays (bf16 operands already widened), sums in double, one f32 rounding.
template <typename GetA, typename GetB, typename GetC, typename SetC>
void ExecuteGemmCall(const GemmCall& c, GetA a, GetB b, GetC get_c, SetC set_c) {
  for (int64_t bt = 0; bt < c.batch; ++bt) {
    const int64_t oa = c.offset_a + bt * c.stride_a, ob = c.offset_b + bt * c.stride_b;
    const int64_t oc = c.offset_c + bt * c.stride_c;
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) {
        double s = 0;
        for (int64_t l = 0; l < c.k; ++l) {
          const double av = a(oa + (c.trans_a ? l + i * c.lda : i + l * c.lda));
          const double bv = b(ob + (c.trans_b ? j + l * c.ldb : l + j * c.ldb));
          s += av * bv;
        }
        double v = static_cast<double>(c.alpha) * s;
        if (c.beta != 0.0f) v += static_cast<double>(c.beta) * get_c(oc + i + j * c.ldc);
        set_c(oc + i + j * c.ldc, static_cast<float>(v));
      }
    }
  }
}

TEST(GemmPlanTest, LinearPlanIsRowMajorXTimesWTransposed) {
  for (const auto& [rows, in, out] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                                      {3, 17, 5}, {16, 64, 48}, {7, 33, 129}}) {
    for (float beta : {0.0f, 1.0f, -0.5f}) {
      const std::vector<float> x = FromBf16(ToBf16(RandomNormal(rows * in, 1)));
      const std::vector<float> w = FromBf16(ToBf16(RandomNormal(out * in, 2)));
      std::vector<float> y = RandomNormal(rows * out, 3), y_ref = y;
      ExecuteGemmCall(
          PlanLinear(rows, in, out, beta), [&](int64_t i) { return w.at(i); },
          [&](int64_t i) { return x.at(i); }, [&](int64_t i) { return y.at(i); },
          [&](int64_t i, float v) { y.at(i) = v; });
      GemmRefF32(x.data(), rows, in, w.data(), out, beta, y_ref.data());
      ASSERT_EQ(0, std::memcmp(y.data(), y_ref.data(), y.size() * sizeof(float)))
          << rows << "x" << in << "x" << out << " beta " << beta;
    }
  }
}

// RunAttention's cuBLAS composite on the CPU: the kv expansion, PlanAttentionScores per query
// chunk into an f32 buffer, the softmax kernel's schedule (a warp per row, in-place bf16 writes over
// the f32 row up to the end of the row's query chunk) emulated literally on the shared bytes,
// then PlanAttentionPv per chunk reading the bf16 probabilities from the same bytes. The
// softmax arithmetic is the reference's (the GPU's differs only by tanhf and summation
// order); what this checks is every index: GEMM shapes, leading dimensions, batch strides and
// offsets, chunk bounds, the GQA head mapping, the causal/window mask and the in-place
// aliasing. The workspace is poisoned, so a probability the P.V product reads but nobody
// wrote shows up as garbage.
std::vector<uint16_t> EmulateRunAttention(const std::vector<uint16_t>& q,
                                          const std::vector<uint16_t>& k,
                                          const std::vector<uint16_t>& v, int64_t T, int H,
                                          int Hkv, int hd, float scale, float softcap,
                                          int window, int64_t chunk) {
  const std::vector<float> qf = FromBf16(q), kf = FromBf16(k), vf = FromBf16(v);
  const int G = H / Hkv;
  std::vector<float> kx(static_cast<size_t>(H) * T * hd), vx(kx.size());
  for (int h = 0; h < H; ++h) {  // LaunchExpandKv
    for (int64_t e = 0; e < T * hd; ++e) {
      kx[h * T * hd + e] = kf[(h / G) * T * hd + e];
      vx[h * T * hd + e] = vf[(h / G) * T * hd + e];
    }
  }
  std::vector<unsigned char> ws(static_cast<size_t>(H) * T * T * 4, 0xAB);  // poisoned
  auto get_f32 = [&](int64_t i) {
    float f;
    std::memcpy(&f, ws.data() + i * 4, 4);
    return f;
  };
  auto set_f32 = [&](int64_t i, float f) { std::memcpy(ws.data() + i * 4, &f, 4); };
  auto get_bf16 = [&](int64_t i) {
    uint16_t b;
    std::memcpy(&b, ws.data() + i * 2, 2);
    return Bf16BitsToF32(b);
  };
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    ExecuteGemmCall(
        PlanAttentionScores(T, H, hd, scale, c0, std::min(T, c0 + chunk)),
        [&](int64_t i) { return kx.at(i); }, [&](int64_t i) { return qf.at(i); }, get_f32,
        set_f32);
  }
  const int threads = 32;  // one warp per row
  for (int64_t row = 0; row < static_cast<int64_t>(H) * T; ++row) {
    const int64_t i = row % T;
    const int64_t width = std::min(T, (i / chunk + 1) * chunk);
    const int64_t first = window > 0 ? std::max<int64_t>(0, i - window + 1) : 0;
    const int64_t base_f32 = row * T, base_bf16 = row * 2 * T;
    std::vector<float> c(static_cast<size_t>(i + 1 - first));
    for (int64_t j = first; j <= i; ++j) c[j - first] = get_f32(base_f32 + j);
    if (softcap > 0) forward::SoftcapRow(c.data(), static_cast<int64_t>(c.size()), softcap);
    float mx = c[0];
    for (float x : c) mx = x > mx ? x : mx;
    double sum = 0;
    for (float x : c) sum += forward::FastExp(x - mx);
    const float inv = 1.0f / static_cast<float>(sum);
    for (int64_t base = 0; base < width; base += threads) {
      std::vector<float> p(static_cast<size_t>(threads), 0.0f);
      for (int t = 0; t < threads; ++t) {  // every thread reads its element of the chunk...
        const int64_t j = base + t;
        if (j >= first && j <= i) {
          float x = get_f32(base_f32 + j);
          if (softcap > 0) forward::SoftcapRow(&x, 1, softcap);
          p[t] = forward::FastExp(x - mx) * inv;
        }
      }
      for (int t = 0; t < threads; ++t) {  // ...then (after the barrier) writes it as bf16
        const int64_t j = base + t;
        if (j < width) {
          const uint16_t b = F32ToBf16Bits(p[t]);
          std::memcpy(ws.data() + (base_bf16 + j) * 2, &b, 2);
        }
      }
    }
  }
  std::vector<uint16_t> out(static_cast<size_t>(T) * H * hd, 0xFFFF);  // poisoned
  for (int64_t c0 = 0; c0 < T; c0 += chunk) {
    ExecuteGemmCall(
        PlanAttentionPv(T, H, hd, c0, std::min(T, c0 + chunk)),
        [&](int64_t i) { return vx.at(i); }, get_bf16,
        [&](int64_t i) { return Bf16BitsToF32(out.at(i)); },
        [&](int64_t i, float f) { out.at(i) = F32ToBf16Bits(f); });
  }
  return out;
}

TEST(GemmPlanTest, AttentionChunkRowsCoverLongSequencesInAtMostEightChunks) {
  EXPECT_EQ(1, AttentionChunkRows(1));
  EXPECT_EQ(256, AttentionChunkRows(256));  // one chunk: the plain full product
  EXPECT_EQ(256, AttentionChunkRows(257));
  EXPECT_EQ(256, AttentionChunkRows(2048));
  EXPECT_EQ(1024, AttentionChunkRows(8192));
  for (int64_t T : {1, 100, 256, 257, 1000, 2048, 4097, 100000}) {
    const int64_t c = AttentionChunkRows(T);
    EXPECT_LE((T + c - 1) / c, 8) << T;
    EXPECT_GE(c, std::min<int64_t>(T, 256)) << T;
  }
}

// One attention test case: sequence length, heads, kv heads, head dim, soft-cap, window.
struct AttentionCase {
  int64_t T;
  int H, Hkv, hd;
  float softcap;
  int window;
};

TEST(GemmPlanTest, AttentionPlansWithInPlaceSoftmaxMatchAttentionRef) {
  const AttentionCase cases[] = {
      {1, 2, 1, 4, 0.0f, 0},     {7, 4, 4, 8, 0.0f, 0},    {9, 4, 2, 8, 2.0f, 3},
      {40, 8, 2, 8, 0.0f, 5},    {40, 8, 2, 8, 1.0f, 0},   {300, 2, 1, 4, 0.0f, 0},
      {300, 4, 2, 4, 0.0f, 37},  {513, 2, 2, 4, 0.0f, 0},  {257, 4, 1, 4, 3.0f, 256},
  };
  for (const AttentionCase& c : cases) {
    // The production chunking and two ragged ones, down to one query per chunk.
    for (const int64_t chunk : {AttentionChunkRows(c.T), int64_t{7}, int64_t{1}}) {
      if (chunk == 1 && c.T > 40) continue;  // O(T) GEMM calls: keep the test quick
      SCOPED_TRACE(testing::Message() << "T=" << c.T << " H=" << c.H << " Hkv=" << c.Hkv
                                      << " hd=" << c.hd << " cap=" << c.softcap
                                      << " window=" << c.window << " chunk=" << chunk);
      const auto q = ToBf16(RandomNormal(c.H * c.T * c.hd, 11));
      const auto k = ToBf16(RandomNormal(c.Hkv * c.T * c.hd, 12));
      const auto v = ToBf16(RandomNormal(c.Hkv * c.T * c.hd, 13));
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
      const std::vector<uint16_t> emu = EmulateRunAttention(q, k, v, c.T, c.H, c.Hkv, c.hd,
                                                            scale, c.softcap, c.window, chunk);
      std::vector<uint16_t> ref(emu.size());
      AttentionRef(q.data(), k.data(), v.data(), c.T, c.H, c.Hkv, c.hd, scale, c.softcap,
                   c.window, ref.data());
      // Same double sums in the same order (masked keys add exact zeros): identical bits.
      for (size_t i = 0; i < ref.size(); ++i) {
        ASSERT_EQ(emu[i], ref[i]) << "element " << i << ": " << Bf16BitsToF32(emu[i])
                                  << " vs " << Bf16BitsToF32(ref[i]);
      }
    }
  }
}

// ============================================= references vs the CPU engine (CPU)

model::ModelConfig TinyConfig(const std::string& arch) {
  model::ModelConfig c;
  c.arch = arch;
  c.dim = 48;
  c.hidden_dim = 100;
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 97;  // not a multiple of 32
  c.seq_len = 64;
  if (arch == "qwen3") {
    c.head_dim = 12;  // q_dim 72 != dim
    c.rope_style = model::RopeStyle::kHalf;
    c.rope_theta = 1000000.0f;
    c.qk_norm = true;
  } else if (arch == "gemma2") {
    c.n_kv_heads = 3;
    c.rope_style = model::RopeStyle::kHalf;
    c.norm_weight_offset = 1.0f;
    c.post_norms = true;
    c.scale_embeddings = true;
    c.ffn_activation = model::FfnActivation::kGeluTanh;
    c.attn_logit_softcap = 0.5f;
    c.final_logit_softcap = 0.3f;
    c.sliding_window = 5;
    c.query_pre_attn_scalar = 20.0f;
  } else {
    c.rope_scaling.factor = 8.0f;  // Llama-3 rule
    c.rope_scaling.original_max_position = 16;
  }
  return c;
}

// LlamaForward's private tables, rebuilt exactly as its constructor does.
struct CpuTables {
  std::vector<float> cos, sin;
  std::vector<std::vector<float>> attn, ffn, post_attn, post_ffn;
  std::vector<float> final_norm;
};

std::vector<float> NormMult(const model::Tensor& w, float offset) {
  std::vector<float> v(w.values().begin(), w.values().end());
  if (offset != 0.0f) {
    for (float& x : v) x = offset + x;
  }
  return v;
}

CpuTables BuildTables(const model::Model& m) {
  const model::ModelConfig& c = m.config;
  CpuTables t;
  const int half = c.head_dim / 2;
  const std::vector<double> inv = forward::RopeInvFrequencies(c);
  t.cos.resize(static_cast<size_t>(c.seq_len) * half);
  t.sin.resize(t.cos.size());
  for (int pos = 0; pos < c.seq_len; ++pos) {
    for (int i = 0; i < half; ++i) {
      t.cos[static_cast<size_t>(pos) * half + i] = static_cast<float>(std::cos(pos * inv[i]));
      t.sin[static_cast<size_t>(pos) * half + i] = static_cast<float>(std::sin(pos * inv[i]));
    }
  }
  for (const model::LayerWeights& lw : m.layers) {
    t.attn.push_back(NormMult(lw.attn_norm, c.norm_weight_offset));
    t.ffn.push_back(NormMult(lw.ffn_norm, c.norm_weight_offset));
    if (c.post_norms) {
      t.post_attn.push_back(NormMult(lw.post_attn_norm, c.norm_weight_offset));
      t.post_ffn.push_back(NormMult(lw.post_ffn_norm, c.norm_weight_offset));
    }
  }
  t.final_norm = NormMult(m.final_norm, c.norm_weight_offset);
  return t;
}

// [T, heads*hd] -> [heads, T, hd]
std::vector<float> HeadMajor(const float* x, int64_t T, int heads, int hd) {
  std::vector<float> out(static_cast<size_t>(T) * heads * hd);
  ToHeadMajorRef(x, T, heads, hd, out.data(), nullptr);
  return out;
}

std::vector<float> Linear(const std::vector<float>& x, int64_t T, int64_t in, const float* w,
                          int64_t out) {
  std::vector<float> y(static_cast<size_t>(T * out));
  forward::MatMulWt(x.data(), in, T, in, w, out, y.data(), out, nullptr);
  return y;
}

class ReferenceVsCpuEngineTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReferenceVsCpuEngineTest, PiecesMatchLlamaForward) {
  const model::ModelConfig cfg = TinyConfig(GetParam());
  const model::Model m = model::MakeRandomModel(cfg, 77);
  ASSERT_TRUE(m.Validate().ok()) << m.Validate();
  const forward::LlamaForward fwd(m);
  const CpuTables tab = BuildTables(m);
  const int64_t T = 40, D = cfg.dim, qd = cfg.q_dim(), kvd = cfg.kv_dim(), hd = cfg.head_dim;
  const int64_t Hd = cfg.hidden_dim, V = cfg.vocab_size;
  Rng rng(3);
  std::vector<int> tokens(static_cast<size_t>(T));
  for (int& t : tokens) t = static_cast<int>(rng.Below(static_cast<uint64_t>(V)));
  std::vector<int32_t> tokens32(tokens.begin(), tokens.end());

  // Embedding (Gemma: times float32(sqrt(dim))): bit for bit.
  forward::Workspace ws;
  fwd.Embed(tokens, ws);
  const std::vector<float> x0(ws.x.begin(), ws.x.begin() + T * D);
  const float escale =
      cfg.scale_embeddings ? static_cast<float>(std::sqrt(static_cast<double>(D))) : 1.0f;
  std::vector<float> emb(static_cast<size_t>(T * D));
  EmbedRef(m.embedding.data(), V, cfg.dim, tokens32.data(), T, escale, emb.data());
  ASSERT_EQ(0, std::memcmp(emb.data(), x0.data(), emb.size() * sizeof(float)));

  // Block 0, attention half.
  const forward::WeightSet full = forward::WeightSet::FromModel(m);
  fwd.RunBlock(0, full, T, ws, nullptr);
  std::vector<float> xb(static_cast<size_t>(T * D));
  std::vector<uint16_t> xb16(xb.size());
  RmsNormRef(x0.data(), T, cfg.dim, tab.attn[0].data(), cfg.norm_eps, xb.data(), xb16.data());
  for (size_t i = 0; i < xb.size(); ++i) ASSERT_EQ(xb16[i], F32ToBf16Bits(xb[i]));
  const std::vector<float> q_pre = Linear(xb, T, D, full.Get(0, model::LinearKind::kQ), qd);
  const std::vector<float> k_pre = Linear(xb, T, D, full.Get(0, model::LinearKind::kK), kvd);
  const std::vector<float> v = Linear(xb, T, D, full.Get(0, model::LinearKind::kV), kvd);
  const int rope = cfg.rope_style == model::RopeStyle::kInterleaved ? IMPQ_GPU_ROPE_INTERLEAVED
                                                                   : IMPQ_GPU_ROPE_HALF;
  std::vector<float> qh(q_pre.size()), kh(k_pre.size());
  RopeRef(q_pre.data(), T, cfg.n_heads, cfg.head_dim,
          cfg.qk_norm ? m.layers[0].q_norm.data() : nullptr, cfg.norm_eps, tab.cos.data(),
          tab.sin.data(), rope, qh.data(), nullptr);
  RopeRef(k_pre.data(), T, cfg.n_kv_heads, cfg.head_dim,
          cfg.qk_norm ? m.layers[0].k_norm.data() : nullptr, cfg.norm_eps, tab.cos.data(),
          tab.sin.data(), rope, kh.data(), nullptr);
  // Rotary (and Qwen's head norm) = the CPU's functions on the CPU's tables: bit for bit.
  const std::vector<float> q_cpu = HeadMajor(ws.q.data(), T, cfg.n_heads, cfg.head_dim);
  const std::vector<float> k_cpu = HeadMajor(ws.k.data(), T, cfg.n_kv_heads, cfg.head_dim);
  ASSERT_EQ(0, std::memcmp(qh.data(), q_cpu.data(), qh.size() * sizeof(float)));
  ASSERT_EQ(0, std::memcmp(kh.data(), k_cpu.data(), kh.size() * sizeof(float)));
  ASSERT_EQ(0, std::memcmp(v.data(), ws.v.data(), v.size() * sizeof(float)));

  // Attention with the bf16 roundings off, against LlamaForward's sgemm/float-softmax
  // result. Bound (u = 2^-24): the scores differ by ε_s <= (γ_hd + 10u)·S + 8u·cap,
  // S = max_ij scale·Σ|q_i||k_j| (the f32 dot product and alpha; with a soft-cap, tanh is
  // 1-Lipschitz and glibc's tanhf, called on both sides at slightly different points, errs
  // by <= 2 ulp of |tanh| <= 1 each, times cap, plus the division and product roundings); each probability then moves by at most p·ε_p, ε_p = 4ε_s + (T + 8)u (its
  // numerator and the max shift by 2ε_s each, FastExp's and the float sum's roundings), and
  // the output by Σ_j |Δp_j||v_j| + γ_T·Σ_j p_j|v_j| <= (ε_p + γ_T)·max_j|v_j| + u|out|.
  const float scale = cfg.AttentionScale();
  const int window = cfg.LayerUsesSlidingWindow(0) ? cfg.sliding_window : 0;
  const std::vector<float> vh = HeadMajor(v.data(), T, cfg.n_kv_heads, cfg.head_dim);
  std::vector<float> att(static_cast<size_t>(T * qd));
  AttentionRefF32(qh.data(), kh.data(), vh.data(), T, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                  scale, cfg.attn_logit_softcap, window, /*round_probs=*/false, att.data(),
                  nullptr);
  double S = 0;
  for (int h = 0; h < cfg.n_heads; ++h) {
    const int g = h / (cfg.n_heads / cfg.n_kv_heads);
    for (int64_t i = 0; i < T; ++i) {
      for (int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (int64_t d = 0; d < hd; ++d) {
          s += std::fabs(qh[(h * T + i) * hd + d]) * std::fabs(kh[(g * T + j) * hd + d]);
        }
        S = std::max(S, scale * s);
      }
    }
  }
  const double eps_s = (Gamma(static_cast<double>(hd), kU) + 10 * kU) * S +
                       (cfg.attn_logit_softcap > 0 ? 8 * kU * cfg.attn_logit_softcap : 0.0);
  const double eps_p = 4 * eps_s + (T + 8) * kU;
  double worst = 0;
  for (int64_t i = 0; i < T; ++i) {
    for (int h = 0; h < cfg.n_heads; ++h) {
      const int g = h / (cfg.n_heads / cfg.n_kv_heads);
      for (int64_t d = 0; d < hd; ++d) {
        double vmax = 0;
        for (int64_t j = 0; j <= i; ++j) vmax = std::max(vmax, std::fabs(static_cast<double>(vh[(g * T + j) * hd + d])));
        const double ref = att[i * qd + h * hd + d], cpu = ws.att[i * qd + h * hd + d];
        const double tol = (eps_p + Gamma(static_cast<double>(T), kU)) * vmax + kU * std::fabs(ref);
        ASSERT_LE(std::fabs(ref - cpu), tol) << "i=" << i << " h=" << h << " d=" << d;
        worst = std::max(worst, std::fabs(ref - cpu) / std::max(tol, 1e-30));
      }
    }
  }
  RecordProperty("attention_worst_fraction_of_bound", std::to_string(worst));

  // Feed-forward half: ws.xb is rmsnorm(x_mid) * ffn, ws.h1 = act(gate) * up. x_mid comes from
  // a pass whose down projection is zero (its output, post-normed or not, adds exact zeros).
  std::vector<float> zeros_down(static_cast<size_t>(D * Hd), 0.0f);
  forward::WeightSet no_down = full;
  no_down.linear[0][static_cast<int>(model::LinearKind::kDown)] = zeros_down.data();
  forward::Workspace ws_mid;
  fwd.Embed(tokens, ws_mid);
  fwd.RunBlock(0, no_down, T, ws_mid, nullptr);
  const std::vector<float> x_mid(ws_mid.x.begin(), ws_mid.x.begin() + T * D);
  std::vector<float> m_ref(static_cast<size_t>(T * D));
  RmsNormRef(x_mid.data(), T, cfg.dim, tab.ffn[0].data(), cfg.norm_eps, m_ref.data(), nullptr);
  ASSERT_EQ(0, std::memcmp(m_ref.data(), ws.xb.data(), m_ref.size() * sizeof(float)));
  const std::vector<float> gate = Linear(m_ref, T, D, full.Get(0, model::LinearKind::kGate), Hd);
  const std::vector<float> up = Linear(m_ref, T, D, full.Get(0, model::LinearKind::kUp), Hd);
  const int act = cfg.ffn_activation == model::FfnActivation::kGeluTanh ? IMPQ_GPU_ACT_GELU_TANH
                                                                      : IMPQ_GPU_ACT_SILU;
  std::vector<float> h(static_cast<size_t>(T * Hd));
  std::vector<uint16_t> h16(h.size());
  GluRef(gate.data(), up.data(), T * Hd, act, h.data(), h16.data());
  ASSERT_EQ(0, std::memcmp(h.data(), ws.h1.data(), h.size() * sizeof(float)));
  for (size_t i = 0; i < h.size(); ++i) ASSERT_EQ(h16[i], F32ToBf16Bits(h[i]));
  const std::vector<float> down = Linear(h, T, Hd, full.Get(0, model::LinearKind::kDown), D);
  std::vector<float> x1 = x_mid;
  if (cfg.post_norms) {
    RmsNormAddRef(down.data(), T, cfg.dim, tab.post_ffn[0].data(), cfg.norm_eps, x1.data());
  } else {
    for (size_t i = 0; i < x1.size(); ++i) x1[i] += down[i];
  }
  ASSERT_EQ(0, std::memcmp(x1.data(), ws.x.data(), x1.size() * sizeof(float)));

  // Final norm and NLL (with Gemma's final soft-cap) against the evaluator's formula.
  forward::Workspace wsf;
  fwd.RunBlocks(tokens, full, wsf, nullptr);
  fwd.Logits(0, T, wsf, nullptr);
  std::vector<float> fin(static_cast<size_t>(T * D));
  RmsNormRef(wsf.x.data(), T, cfg.dim, tab.final_norm.data(), cfg.norm_eps, fin.data(), nullptr);
  ASSERT_EQ(0, std::memcmp(fin.data(), wsf.xb.data(), fin.size() * sizeof(float)));
  const std::vector<float> raw = Linear(fin, T, D, m.output.data(), V);
  std::vector<int32_t> targets(static_cast<size_t>(T));
  for (int64_t r = 0; r < T; ++r) targets[r] = tokens32[(r + 1) % T];
  std::vector<float> nll(static_cast<size_t>(T));
  NllRef(raw.data(), T, cfg.vocab_size, targets.data(), cfg.final_logit_softcap, nll.data());
  for (int64_t r = 0; r < T; ++r) {
    const float* row = wsf.logits.data() + r * V;  // soft-capped by Logits
    const double cpu = forward::LogSumExp(row, V) - static_cast<double>(row[targets[r]]);
    ASSERT_EQ(nll[r], static_cast<float>(cpu)) << "row " << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ReferenceVsCpuEngineTest,
                         ::testing::Values("llama", "qwen3", "gemma2"));

// ======================================================================= GPU kernels

class GpuKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    rt_ = TestRuntime(&why);
    if (rt_ == nullptr) GTEST_SKIP() << why;
  }
  const ImpqGpuApi& api() const { return rt_->api(); }
  // Fails the test with the plugin's message unless rc is OK.
  static void Ok(int rc, const ImpqGpuError& err, const char* what) {
    ASSERT_EQ(rc, IMPQ_GPU_OK) << GpuRuntime::ToStatus(rc, err, what);
  }
  GpuRuntime* rt_ = nullptr;
};

TEST_F(GpuKernelTest, RtnQuantizeIsBitIdenticalToRtnQuantizer) {
  std::vector<RtnCase> cases(std::begin(kRtnCases), std::end(kRtnCases));
  cases.push_back({4, 257, 4096, 64});  // a realistic layer slice, many warps per block
  cases.push_back({2, 64, 11008, 128});
  cases.push_back({2, 3, 1000, 1000});  // one group larger than a warp's 32 lanes many times
  cases.push_back({3, 64, 4096, 64});   // 3 and 8 bits on a realistic slice (issue 23)
  cases.push_back({3, 9, 1001, 128});   // 3 bits, a row ending inside a byte
  cases.push_back({8, 64, 4096, 64});
  for (const RtnCase& tc : cases) {
    SCOPED_TRACE(testing::Message() << tc.bits << " bits " << tc.rows << "x" << tc.cols << " G"
                                    << tc.group);
    const std::vector<float> w = RtnCornerWeights(tc.rows, tc.cols, tc.group, 21);
    const int64_t rb = impq_code_bytes(tc.bits, tc.cols);
    const int64_t groups = impq_groups_per_row(tc.cols, tc.group);
    std::vector<uint8_t> pg(static_cast<size_t>(tc.rows * rb), 0xEE), pr(pg.size());
    std::vector<float> sg(static_cast<size_t>(tc.rows * groups)), zg(sg.size()), sr(sg.size()),
        zr(sg.size());
    ASSERT_TRUE(RtnQuantizeRef(tc.bits, tc.rows, tc.cols, tc.group, w.data(), pr.data(),
                               sr.data(), zr.data())
                    .ok());
    ImpqGpuError err{};
    Ok(api().kernel_rtn_quantize(0, tc.bits, tc.rows, tc.cols, tc.group, w.data(), pg.data(),
                                 sg.data(), zg.data(), &err),
       err, "kernel_rtn_quantize");
    EXPECT_EQ(pg, pr);
    EXPECT_EQ(0, std::memcmp(sg.data(), sr.data(), sg.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(zg.data(), zr.data(), zg.size() * sizeof(float)));
  }
}

// Every width of block_format.h: 2 and 4 (codes within a byte), 8 (a code per byte) and 3
// (codes straddling bytes: odd column counts put the row's end, and 3-column groups their
// boundaries, inside a byte).
TEST_F(GpuKernelTest, PackUnpackDequantizeAreBitIdentical) {
  Rng rng(31);
  for (int bits : {2, 3, 4, 8}) {
    for (const auto& [rows, cols, group] :
         {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 5, 2}, {4, 37, 16}, {17, 131, 64},
          {64, 4096, 128}, {5, 30, 3}, {7, 13, 5}}) {
      SCOPED_TRACE(testing::Message() << bits << " bits " << rows << "x" << cols << " G" << group);
      std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
      for (uint8_t& c : codes) c = static_cast<uint8_t>(rng.Below(1u << bits));
      const int64_t rb = impq_code_bytes(bits, cols);
      std::vector<uint8_t> pr(static_cast<size_t>(rows * rb)), pg(pr.size(), 0xEE);
      PackRef(bits, rows, cols, codes.data(), pr.data());
      ImpqGpuError err{};
      Ok(api().kernel_pack(0, bits, rows, cols, codes.data(), pg.data(), &err), err, "pack");
      EXPECT_EQ(pg, pr);
      // Unpack ignores padding bits: feed random bytes, padding included.
      std::vector<uint8_t> noise(pr.size());
      for (uint8_t& b : noise) b = static_cast<uint8_t>(rng.Below(256));
      std::vector<uint8_t> ur(codes.size()), ug(codes.size(), 0xEE);
      UnpackRef(bits, rows, cols, noise.data(), ur.data());
      Ok(api().kernel_unpack(0, bits, rows, cols, noise.data(), ug.data(), &err), err, "unpack");
      EXPECT_EQ(ug, ur);
      const int64_t groups = impq_groups_per_row(cols, group);
      std::vector<float> scales(static_cast<size_t>(rows * groups)), zeros(scales.size());
      for (size_t i = 0; i < scales.size(); ++i) {
        scales[i] = static_cast<float>(1e-3 + 0.1 * rng.Uniform());
        zeros[i] = static_cast<float>(rng.Uniform() * ((1 << bits) - 1));  // HQQ: non-integer
      }
      std::vector<float> fr(codes.size()), fg(codes.size(), -7.0f);
      std::vector<uint16_t> br(codes.size()), bg(codes.size(), 0xEEEE), bg2(codes.size());
      DequantizeRef(bits, rows, cols, group, noise.data(), scales.data(), zeros.data(),
                    fr.data(), br.data());
      Ok(api().kernel_dequantize(0, bits, rows, cols, group, noise.data(), scales.data(),
                                 zeros.data(), fg.data(), bg.data(), &err),
         err, "dequantize");
      EXPECT_EQ(0, std::memcmp(fg.data(), fr.data(), fr.size() * sizeof(float)));
      EXPECT_EQ(bg, br);
      Ok(api().kernel_dequantize(0, bits, rows, cols, group, noise.data(), scales.data(),
                                 zeros.data(), nullptr, bg2.data(), &err),
         err, "dequantize bf16 only");
      EXPECT_EQ(bg2, br);
    }
  }
}

TEST_F(GpuKernelTest, EmbedIsBitIdentical) {
  for (const auto& [vocab, dim] : {std::pair<int64_t, int>{10, 4096}, {33, 7}, {5, 1}}) {
    for (float scale : {1.0f, static_cast<float>(std::sqrt(static_cast<double>(dim)))}) {
      const std::vector<float> table = RandomNormal(vocab * dim, 41);
      std::vector<int32_t> tokens = {0, static_cast<int32_t>(vocab - 1), 3 % static_cast<int32_t>(vocab), 0};
      std::vector<float> r(tokens.size() * dim), g(r.size(), -1.0f);
      EmbedRef(table.data(), vocab, dim, tokens.data(), static_cast<int64_t>(tokens.size()), scale,
               r.data());
      ImpqGpuError err{};
      Ok(api().kernel_embed(0, table.data(), vocab, dim, tokens.data(),
                            static_cast<int64_t>(tokens.size()), scale, g.data(), &err),
         err, "embed");
      EXPECT_EQ(0, std::memcmp(g.data(), r.data(), r.size() * sizeof(float))) << dim;
    }
  }
}

TEST_F(GpuKernelTest, RmsNormWithinOneUlpOfInvAndOneBf16Ulp) {
  // Both sides: ss in double (only the order differs: relative ~dim·2^-53), so the f32
  // scale inv = f32(1/sqrt(ss/n + eps)) is equal or one f32 ulp apart (rel. 2^-23); the two
  // products (x·inv)·w are separately rounded on both sides, so an inv flip moves the output
  // by at most |out|·(2^-23 + 2·2^-24)·(1 + 2^-22) < 2^-21·|out|. A bf16 output then differs
  // by at most that plus one bf16 ulp (values straddling a rounding boundary).
  for (const auto& [rows, dim] : {std::pair<int64_t, int>{1, 1}, {3, 4096}, {5, 4095}, {33, 96}}) {
    std::vector<float> x = RandomNormal(rows * dim, 51, 3.0);
    if (rows > 1) std::fill(x.begin() + dim, x.begin() + 2 * dim, 0.0f);  // an all-zero row
    const std::vector<float> mult = RandomNormal(dim, 52);
    std::vector<float> fr(x.size()), fg(x.size());
    std::vector<uint16_t> br(x.size()), bg(x.size());
    RmsNormRef(x.data(), rows, dim, mult.data(), 1e-6f, fr.data(), br.data());
    ImpqGpuError err{};
    Ok(api().kernel_rmsnorm(0, x.data(), rows, dim, mult.data(), 1e-6f, fg.data(), bg.data(), &err),
       err, "rmsnorm");
    for (size_t i = 0; i < x.size(); ++i) {
      const double tol = 0x1p-21 * std::fabs(fr[i]);
      ASSERT_LE(std::fabs(static_cast<double>(fg[i]) - fr[i]), tol) << i;
      ASSERT_LE(std::fabs(static_cast<double>(Bf16BitsToF32(bg[i])) - Bf16BitsToF32(br[i])),
                tol + Bf16Ulp(fr[i]))
          << i;
    }
  }
}

TEST_F(GpuKernelTest, RopeMatchesReference) {
  // Without the head norm the f32 values before rounding are the same IEEE operations on the
  // same inputs: identical bf16 bits. With it, the head's scale inv may differ by one f32 ulp
  // (double sum order, see RmsNorm): the normed a, b move by < 2^-21 relative, the rotated
  // a·c - b·s by < 2^-21·(|a| + |b|) + 2^-23·(|a·c| + |b·s| + |out|) <= 2^-20·(|a| + |b|)
  // (|c|, |s| <= 1), plus one bf16 ulp for the final rounding.
  const float eps = 1e-6f;
  for (int style : {IMPQ_GPU_ROPE_INTERLEAVED, IMPQ_GPU_ROPE_HALF}) {
    for (const auto& [T, heads, hd] :
         {std::tuple<int64_t, int, int>{1, 1, 2}, {17, 4, 64}, {130, 8, 128}, {5, 3, 256}}) {
      SCOPED_TRACE(testing::Message() << "style " << style << " T=" << T << " heads=" << heads
                                      << " hd=" << hd);
      const std::vector<float> x = RandomNormal(T * heads * hd, 61, 2.0);
      const std::vector<float> cs = RandomNormal(T * hd / 2, 62), sn = RandomNormal(T * hd / 2, 63);
      std::vector<float> cos_t(cs.size()), sin_t(sn.size());
      for (size_t i = 0; i < cs.size(); ++i) {  // a real rotation per (t, i)
        const double a = std::atan2(sn[i], cs[i]);
        cos_t[i] = static_cast<float>(std::cos(a));
        sin_t[i] = static_cast<float>(std::sin(a));
      }
      const std::vector<float> mult = RandomNormal(hd, 64);
      for (const float* hm : {static_cast<const float*>(nullptr), mult.data()}) {
        std::vector<uint16_t> r(x.size()), g(x.size());
        RopeRef(x.data(), T, heads, hd, hm, eps, cos_t.data(), sin_t.data(), style, nullptr,
                r.data());
        ImpqGpuError err{};
        Ok(api().kernel_rope(0, x.data(), T, heads, hd, hm, eps, cos_t.data(), sin_t.data(),
                             style, g.data(), &err),
           err, "rope");
        if (hm == nullptr) {
          EXPECT_EQ(g, r);
          continue;
        }
        std::vector<float> normed(static_cast<size_t>(hd));
        for (int64_t t = 0; t < T; ++t) {
          for (int h = 0; h < heads; ++h) {
            forward::RmsNormRow(x.data() + (t * heads + h) * hd, hm, hd, eps, normed.data());
            for (int i = 0; i < hd / 2; ++i) {
              const int ia = style == IMPQ_GPU_ROPE_INTERLEAVED ? 2 * i : i;
              const int ib = style == IMPQ_GPU_ROPE_INTERLEAVED ? 2 * i + 1 : i + hd / 2;
              const double ab = std::fabs(normed[ia]) + std::fabs(normed[ib]);
              for (int e : {ia, ib}) {
                const size_t o = static_cast<size_t>((h * T + t) * hd + e);
                const double rv = Bf16BitsToF32(r[o]), gv = Bf16BitsToF32(g[o]);
                ASSERT_LE(std::fabs(gv - rv), 0x1p-20 * ab + Bf16Ulp(rv)) << t << " " << h << " " << e;
              }
            }
          }
        }
      }
    }
  }
}

TEST_F(GpuKernelTest, GluSiluIsBitIdenticalGeluWithinTanhBound) {
  const int64_t n = 100003;  // not a multiple of the block
  std::vector<float> gate = RandomNormal(n, 71, 4.0), up = RandomNormal(n, 72);
  gate[0] = 0.0f;
  gate[1] = -100.0f;  // FastExp clamp region
  gate[2] = 100.0f;
  for (int act : {IMPQ_GPU_ACT_SILU, IMPQ_GPU_ACT_GELU_TANH}) {
    std::vector<float> rf(n);
    std::vector<uint16_t> r(n), g(n);
    GluRef(gate.data(), up.data(), n, act, rf.data(), r.data());
    ImpqGpuError err{};
    Ok(api().kernel_glu(0, gate.data(), up.data(), n, act, g.data(), &err), err, "glu");
    if (act == IMPQ_GPU_ACT_SILU) {
      // FastExp and every operation reproduced with separately rounded intrinsics.
      EXPECT_EQ(g, r);
      continue;
    }
    // GeGLU: only tanhf differs (CUDA's and glibc's are each within 2 ulp of tanh, |tanh| < 1,
    // so |Δt| <= 4·2^-24); 1 + t may then round differently (one more ulp of a value < 2:
    // 2^-23), so |Δ(1 + t)| < 2^-21; the products move by |0.5·g·up|·2^-21 plus a flip of
    // their own rounding (2^-23 relative each: 2^-22·|v|), then one bf16 ulp.
    for (int64_t i = 0; i < n; ++i) {
      const double tol = 0x1p-21 * std::fabs(0.5 * gate[i] * up[i]) * (1 + 0x1p-20) +
                         0x1p-22 * std::fabs(rf[i]) + Bf16Ulp(rf[i]);
      ASSERT_LE(std::fabs(static_cast<double>(Bf16BitsToF32(g[i])) - Bf16BitsToF32(r[i])), tol)
          << i << " gate " << gate[i];
    }
  }
}

TEST_F(GpuKernelTest, GemmWithinF32AccumulationBound) {
  // bf16 operands are exact in f32 and their products exact; an f32 accumulation of `in`
  // products in any order (tensor cores, split-K) errs by at most γ'_in·Σ|x||w| (u' = 2^-23,
  // allowing truncating adders); the epilogue alpha·acc + beta·y0 adds the roundings of
  // beta·y0 and of the sum (u'·|beta·y0| + u'·|y|), and the reference rounds once (u·|y|):
  // together within 2u'·|beta·y0| + 2u'·|y|.
  for (const auto& [rows, in, out] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {3, 17, 5}, {64, 4096, 1024},
        {100, 1000, 333}, {2048, 128, 64}}) {
    for (float beta : {0.0f, 1.0f}) {
      SCOPED_TRACE(testing::Message() << rows << "x" << in << "x" << out << " beta " << beta);
      const std::vector<uint16_t> x = ToBf16(RandomNormal(rows * in, 81));
      const std::vector<uint16_t> w = ToBf16(RandomNormal(out * in, 82, 0.02));
      const std::vector<float> y0 = RandomNormal(rows * out, 83);
      std::vector<float> yr = y0, yg = beta != 0.0f ? y0 : std::vector<float>(y0.size(), NAN);
      GemmRef(x.data(), rows, in, w.data(), out, beta, yr.data());
      ImpqGpuError err{};
      Ok(api().kernel_gemm(0, x.data(), rows, in, w.data(), out, beta, yg.data(), &err), err,
         "gemm");
      const std::vector<float> xf = FromBf16(x), wf = FromBf16(w);
      const double g = Gamma(static_cast<double>(in), kUtc);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t o = 0; o < out; ++o) {
          double sabs = 0;
          for (int64_t i = 0; i < in; ++i) sabs += std::fabs(xf[r * in + i] * wf[o * in + i]);
          const double ref = yr[r * out + o];
          const double tol = g * sabs + 2 * kUtc * std::fabs(beta * y0[r * out + o]) +
                             2 * kUtc * std::fabs(ref);
          ASSERT_LE(std::fabs(yg[r * out + o] - ref), tol) << r << "," << o;
        }
      }
    }
  }
}

TEST_F(GpuKernelTest, AttentionWithinDerivedBound) {
  // Bound (see kernels.cuh, AttentionRefF32): the scores differ by
  //   ε_s <= (γ'_hd + 2u)·S + [softcap] 16u·cap,   S = max_ij scale·Σ_d|q_id k_jd|
  // (cuBLAS's f32 accumulation and alpha rounding; tanhf vs glibc's tanh, 4 ulp of tanh <= 1
  // times cap plus the multiply). Then e = FastExp(c - m) (same function: relative change
  // <= 2ε_s·(1 + 2ε_s) + 8u for its approximation on different arguments), the double sum S
  // and inv follow (another 2ε_s + 8u + 2u), so p moves by ε_p·p with
  // ε_p = 4ε_s·(1 + 2ε_s) + 18u, and its bf16 rounding may flip by one bf16 ulp <= 2^-7·p.
  // The P·V accumulation adds γ'_T·Σ p|v|, and each output's final bf16 rounding one bf16 ulp:
  //   |Δout| <= (ε_p + 2^-7 + γ'_T)·(1 + ε_p + 2^-7)·max_{visible j}|v_j| + ulp_bf16(out).
  const AttentionCase cases[] = {
      // head_dim 16/32/64/128/256: the fused tensor-core kernel (ragged query and key tiles,
      // windows that skip key tiles, soft-caps)...
      {1, 4, 4, 64, 0.0f, 0},   {17, 4, 2, 64, 0.0f, 0},  {17, 8, 2, 64, 0.0f, 5},
      {17, 8, 8, 128, 50.0f, 1}, {300, 8, 2, 128, 0.0f, 0}, {300, 4, 1, 64, 30.0f, 64},
      {513, 32, 8, 128, 0.0f, 0}, {700, 4, 2, 64, 0.0f, 100}, {130, 2, 1, 16, 5.0f, 0},
      {200, 4, 4, 32, 0.0f, 70}, {150, 4, 2, 256, 20.0f, 0},
      // ...other head dims: the cuBLAS composite (query chunks at T > 256).
      {40, 4, 2, 8, 0.0f, 0},   {300, 4, 2, 24, 0.0f, 0},  {513, 6, 3, 12, 10.0f, 90},
      {700, 2, 2, 8, 0.0f, 0},  {2100, 2, 1, 8, 2.0f, 0}};
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE(testing::Message() << "T=" << c.T << " H=" << c.H << " Hkv=" << c.Hkv
                                    << " hd=" << c.hd << " cap=" << c.softcap
                                    << " window=" << c.window);
    const auto q = ToBf16(RandomNormal(c.H * c.T * c.hd, 91));
    const auto k = ToBf16(RandomNormal(c.Hkv * c.T * c.hd, 92));
    const auto v = ToBf16(RandomNormal(c.Hkv * c.T * c.hd, 93));
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    std::vector<uint16_t> r(static_cast<size_t>(c.T) * c.H * c.hd);
    AttentionRef(q.data(), k.data(), v.data(), c.T, c.H, c.Hkv, c.hd, scale, c.softcap,
                 c.window, r.data());
    // Both implementations (kernels.cuh, UseFusedAttention): the cuBLAS composite and, where
    // it supports the head dim, the fused tensor-core kernel.
    std::vector<std::vector<uint16_t>> outs;
    for (const char* mode : {"cublas", "fused"}) {
      ScopedEnv env("IMPQ_GPU_ATTENTION", mode);
      std::vector<uint16_t> g(r.size(), 0xEEEE);  // poisoned
      ImpqGpuError err{};
      Ok(api().kernel_attention(0, q.data(), k.data(), v.data(), c.T, c.H, c.Hkv, c.hd, scale,
                                c.softcap, c.window, g.data(), &err),
         err, "attention");
      outs.push_back(std::move(g));
    }
    const std::vector<float> qf = FromBf16(q), kf = FromBf16(k), vf = FromBf16(v);
    const int G = c.H / c.Hkv;
    const double u = kU;
    for (int h = 0; h < c.H; ++h) {
      const int kvh = h / G;
      for (int64_t i = 0; i < c.T; ++i) {
        const int64_t first = c.window > 0 ? std::max<int64_t>(0, i - c.window + 1) : 0;
        double S = 0;
        for (int64_t j = first; j <= i; ++j) {
          double s = 0;
          for (int d = 0; d < c.hd; ++d) {
            s += std::fabs(qf[(h * c.T + i) * c.hd + d]) * std::fabs(kf[(kvh * c.T + j) * c.hd + d]);
          }
          S = std::max(S, scale * s);
        }
        const double eps_s = (Gamma(c.hd, kUtc) + 2 * u) * S + (c.softcap > 0 ? 16 * u * c.softcap : 0);
        const double eps_p = 4 * eps_s * (1 + 2 * eps_s) + 18 * u;
        const double rel = (eps_p + 0x1p-7 + Gamma(static_cast<double>(c.T), kUtc)) *
                           (1 + eps_p + 0x1p-7);
        for (int d = 0; d < c.hd; ++d) {
          double vmax = 0;
          for (int64_t j = first; j <= i; ++j) {
            vmax = std::max(vmax, std::fabs(static_cast<double>(vf[(kvh * c.T + j) * c.hd + d])));
          }
          const size_t o = static_cast<size_t>(i * c.H * c.hd + h * c.hd + d);
          const double rv = Bf16BitsToF32(r[o]);
          for (size_t m = 0; m < outs.size(); ++m) {
            const double gv = Bf16BitsToF32(outs[m][o]);
            ASSERT_LE(std::fabs(gv - rv), rel * vmax + Bf16Ulp(rv))
                << (m == 0 ? "cublas" : "fused") << " h=" << h << " i=" << i << " d=" << d;
          }
        }
      }
    }
  }
}

TEST_F(GpuKernelTest, NllWithinDerivedBound) {
  // Without a soft-cap the exponentials are bit-identical (FastExp) and the max exact; the
  // double sum differs by order only (~vocab·2^-53 relative) and CUDA's log by one double
  // ulp, so the double results agree to ~2^-40·(|m| + |log S| + |z_t|), and the f32 outputs
  // to that plus one f32 ulp. With a cap, every capped logit may differ by δ = 8u·cap
  // (tanhf vs glibc, 4 ulp of |tanh| <= 1, and the multiply): the log-sum-exp is 1-Lipschitz
  // in the max-norm and FastExp on arguments that differ adds 8u relative, so
  // |Δnll| <= 2δ + 8u + the above.
  for (const auto& [rows, vocab] : {std::pair<int64_t, int>{1, 1}, {3, 97}, {8, 32000}, {2, 128256}}) {
    for (float cap : {0.0f, 30.0f}) {
      std::vector<float> logits = RandomNormal(rows * vocab, 101, 5.0);
      if (vocab > 2) logits[1] = 60.0f;  // a dominant logit
      std::vector<int32_t> targets(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) targets[r] = static_cast<int32_t>((r * 7919) % vocab);
      std::vector<float> nr(static_cast<size_t>(rows)), ng(nr.size());
      NllRef(logits.data(), rows, vocab, targets.data(), cap, nr.data());
      ImpqGpuError err{};
      Ok(api().kernel_nll(0, logits.data(), rows, vocab, targets.data(), cap, ng.data(), &err),
         err, "nll");
      for (int64_t r = 0; r < rows; ++r) {
        double mx = 0;
        for (int j = 0; j < vocab; ++j) mx = std::max(mx, std::fabs(static_cast<double>(logits[r * vocab + j])));
        const double tol = F32Ulp(nr[r]) + 0x1p-40 * (2 * mx + std::log(vocab) + 1) +
                           (cap > 0 ? 2 * 8 * kU * cap + 8 * kU : 0.0);
        ASSERT_LE(std::fabs(static_cast<double>(ng[r]) - nr[r]), tol)
            << "rows " << rows << " vocab " << vocab << " cap " << cap << " row " << r;
      }
    }
  }
}

TEST_F(GpuKernelTest, BenchGemmReportsAPositiveThroughput) {
  double tflops = 0;
  ImpqGpuError err{};
  Ok(api().bench_gemm_tflops(0, 512, 512, 512, 5, &tflops, &err), err, "bench_gemm_tflops");
  EXPECT_GT(tflops, 0.0);
  EXPECT_LT(tflops, 10000.0);  // no device does 10 PFLOP/s of bf16: a unit error would
}

TEST_F(GpuKernelTest, DeviceInfoDescribesAnAmpereOrNewerGpu) {
  absl::StatusOr<ImpqGpuDeviceInfo> info = rt_->DeviceInfo(0);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GT(std::strlen(info->name), 0u);
  EXPECT_GE(info->cc_major, 8);
  EXPECT_GT(info->sm_count, 0);
  EXPECT_GE(info->total_bytes, info->free_bytes);
  EXPECT_GT(info->driver_version, 0);
  EXPECT_GT(info->runtime_version, 0);
}

}  // namespace
}  // namespace impq::gpu
