#include "worker/model/bpe_merge.h"

#include <queue>

namespace impq::model {

std::vector<int> MergeByScore(std::vector<int> tok, const ScoredVocab& vocab) {
  // Positions are original indices, which stay ordered as nodes merge, so "leftmost" means
  // smallest index.
  const int n = static_cast<int>(tok.size());
  std::vector<int> next(n), prev(n);
  std::vector<char> alive(n, 1);
  for (int k = 0; k < n; ++k) {
    next[k] = k + 1 < n ? k + 1 : -1;
    prev[k] = k - 1;
  }
  struct Cand {
    float score;
    int left, right, left_tok, right_tok, merged;
  };
  auto worse = [](const Cand& a, const Cand& b) {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  std::string buf;
  auto push = [&](int left) {
    if (left < 0) return;
    int right = next[left];
    if (right < 0) return;
    buf.assign(vocab.pieces[tok[left]]);
    buf.append(vocab.pieces[tok[right]]);
    auto it = vocab.mergeable.find(buf);
    if (it == vocab.mergeable.end()) return;
    const int id = it->second;
    if (vocab.scores[id] > vocab.min_score) {
      heap.push({vocab.scores[id], left, right, tok[left], tok[right], id});
    }
  };
  for (int k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    if (!alive[c.left] || !alive[c.right] || next[c.left] != c.right ||
        tok[c.left] != c.left_tok || tok[c.right] != c.right_tok) {
      continue;  // stale: one side merged since this pair was queued
    }
    tok[c.left] = c.merged;
    alive[c.right] = 0;
    next[c.left] = next[c.right];
    if (next[c.right] >= 0) prev[next[c.right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  std::vector<int> out;
  out.reserve(n);
  for (int k = 0; k < n; ++k) {
    if (alive[k]) out.push_back(tok[k]);
  }
  return out;
}

}  // namespace impq::model
