// No Abseil header may be included here (see sentencepiece_shim.h).
#include "worker/model/sentencepiece_shim.h"

#include <sentencepiece_processor.h>

namespace impq::model {

SpmProcessor::SpmProcessor(std::unique_ptr<sentencepiece::SentencePieceProcessor> p)
    : p_(std::move(p)) {}
SpmProcessor::~SpmProcessor() = default;

std::unique_ptr<SpmProcessor> SpmProcessor::Load(const std::string& path, std::string* error) {
  auto p = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = p->Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return std::unique_ptr<SpmProcessor>(new SpmProcessor(std::move(p)));
}

int SpmProcessor::piece_size() const { return p_->GetPieceSize(); }
int SpmProcessor::bos_id() const { return p_->bos_id(); }
int SpmProcessor::eos_id() const { return p_->eos_id(); }

bool SpmProcessor::Encode(std::string_view text, std::vector<int>* ids, std::string* error) const {
  const auto status = p_->Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool SpmProcessor::Decode(const std::vector<int>& ids, std::string* text,
                          std::string* error) const {
  const auto status = p_->Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

std::string SpmProcessor::IdToPiece(int id) const { return p_->IdToPiece(id); }
float SpmProcessor::Score(int id) const { return p_->GetScore(id); }
bool SpmProcessor::IsControl(int id) const { return p_->IsControl(id); }

}  // namespace impq::model
