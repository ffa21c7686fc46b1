// job::GameFacts on the wire (v1::GameFacts), both ways, and the digest by which the
// coordinator checks that every worker evaluates the game the PREPARE unit described.
#ifndef IMPQ_JOB_FACTS_PROTO_H_
#define IMPQ_JOB_FACTS_PROTO_H_

#include <string>

#include "impq/v1/messages.pb.h"
#include "job/game.h"

namespace impq::job {

v1::GameFacts FactsToProto(const GameFacts& f);
GameFacts FactsFromProto(const v1::GameFacts& f);

// "facts:" + 16 hex digits: FNV-1a over what identifies the game, and that any worker with the
// same files computes bit for bit whatever its hardware: the weights' fingerprint and config,
// the players and their bytes at every width, and the sets' sizes. Not the activation scores,
// the fp32 loss nor the timings (they may differ in the last bits between CPU and GPU).
std::string FactsDigest(const GameFacts& f);

}  // namespace impq::job

#endif  // IMPQ_JOB_FACTS_PROTO_H_
