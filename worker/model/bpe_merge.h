// SentencePiece-style BPE by score: the merge loop shared by every score-ranked tokenizer
// (llama2.c's run.c, SentencePiece BPE models, GGUF "llama" vocabularies).
//
// Given the initial symbols of a text (one id per code point, byte fallbacks already applied),
// repeatedly merge the adjacent pair whose concatenated piece is in the vocabulary with the
// highest score, the leftmost pair on ties, until no adjacent pair forms a piece. This is
// run.c's rule and SentencePiece's bpe_model.cc rule (both order the agenda by (score, -left)).
// run.c rescans all pairs per merge (O(n^2)); here a heap over candidate pairs with lazy
// invalidation picks the same pair in O(n log n).
#ifndef IMPQ_WORKER_MODEL_BPE_MERGE_H_
#define IMPQ_WORKER_MODEL_BPE_MERGE_H_

#include <string>
#include <unordered_map>
#include <vector>

namespace impq::model {

struct ScoredVocab {
  std::vector<std::string> pieces;  // by id
  std::vector<float> scores;        // by id
  // Pieces a merge may produce, with their id (e.g. only "normal" pieces, not control ones).
  std::unordered_map<std::string, int> mergeable;
  // A merge needs score > min_score (run.c starts from best_score = -1e10).
  float min_score = -1e10f;
};

// Merges `symbols` in place as described above and returns the merged ids.
// REQUIRES: every id in `symbols` indexes vocab.pieces.
std::vector<int> MergeByScore(std::vector<int> symbols, const ScoredVocab& vocab);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_BPE_MERGE_H_
