// Seeded, portable random numbers.
//
// Results must depend on the seed only, never on the standard library: std::shuffle and
// std::uniform_*_distribution differ between implementations, so impq draws its own.
// Rng is xoshiro256** seeded through SplitMix64. Thread-compatible (one Rng per thread).
#ifndef IMPQ_COMMON_RNG_H_
#define IMPQ_COMMON_RNG_H_

#include <cstdint>
#include <span>
#include <utility>

namespace impq {

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // Next 64 random bits.
  uint64_t NextU64();
  // Uniform integer in [0, bound) without modulo bias (Lemire's method). REQUIRES: bound > 0.
  uint64_t Below(uint64_t bound);
  // Uniform double in [0, 1) with 53 random bits.
  double Uniform();
  // Standard normal (Box-Muller; deterministic: one draw per call, the pair's second is dropped).
  double Normal();

  // Fisher-Yates shuffle of `items`, identical on every platform for a given seed.
  template <typename T>
  void Shuffle(std::span<T> items) {
    for (size_t i = items.size(); i > 1; --i) {
      size_t j = static_cast<size_t>(Below(i));
      std::swap(items[i - 1], items[j]);
    }
  }

 private:
  uint64_t s_[4];
};

// Derives an independent seed for stream `index` from `seed` (for per-item RNGs).
uint64_t DeriveSeed(uint64_t seed, uint64_t index);

}  // namespace impq

#endif  // IMPQ_COMMON_RNG_H_
