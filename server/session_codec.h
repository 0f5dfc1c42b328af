#ifndef RECUR_SERVER_SESSION_CODEC_H_
#define RECUR_SERVER_SESSION_CODEC_H_

// A session's contents as bytes, so a session can move between servers that run the same model.
// The bytes are a safetensors file (docs/checkpoint.md describes the format):
//   layers.<i>.s, layers.<i>.z        linear attention: the sums S [1,H,d,d] and z [1,H,d], float32
//   layers.<i>.k, layers.<i>.v        softmax attention: the key/value cache [1,H,T,d], T =
//   consumed layers.<i>.conv                   with a short convolution of width K: the last K−1
//   rows of the
//                                     layer's q/k/v projections [1,K−1,3D], float32
//   pending                           int64 [P]: tokens seen but not yet fed to the model
//   seen                              uint8 [ceil(V/8)]: the tokens so far as a bitmap (for the
//                                     repetition penalty; model/token_set.h)
// and metadata: format "recur-session", version "2", consumed (tokens in the state) and the
// model's config.json, which must match the importing server's; a saved session adds its
// session_id and tenant (SessionLabels). Version 1 (recur before the
// bitmap) listed the distinct tokens as int64 [U] in `seen`; it is still read.

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/config.h"
#include "model/model_state.h"
#include "model/token_set.h"

namespace recur {

// Bounds on what an imported session may claim, far above any real session: the tokens in its
// state (2^40, about 10^12), and the tokens seen but not yet fed (a prompt cut by its deadline
// keeps its unread rest pending).
inline constexpr int64_t kMaxSessionTokens = int64_t{1} << 40;
inline constexpr int64_t kMaxPendingTokens = int64_t{1} << 20;

// Everything a session remembers: the model's state after `consumed` tokens, plus the tokens the
// model has not been fed yet (the last sampled one, which the next request feeds first).
struct SessionState {
  ModelState model;  // batch of one
  std::vector<int64_t> pending;
  TokenSet seen;  // every token of the text so far, over the model's vocabulary
  int64_t consumed = 0;

  int64_t tokens() const { return consumed + static_cast<int64_t>(pending.size()); }
  // What the session holds: the model's state and the history's bitmap.
  int64_t Bytes() const { return model.Bytes() + seen.Bytes(); }
};

// Who a session is, in a file of --session_dir (server/session_keeper.h): metadata `session_id`
// and `tenant`. An export over the API carries none (an import gets a new id).
struct SessionLabels {
  std::string id;
  std::string tenant;
};

absl::StatusOr<std::string> EncodeSession(const SessionState& session, const ModelConfig& config,
                                          const SessionLabels& labels = {});

// INVALID_ARGUMENT naming the problem when the bytes are corrupt or were made by another model.
// `labels`, when given, receives the bytes' labels (empty where they have none).
absl::StatusOr<SessionState> DecodeSession(absl::string_view bytes, const ModelConfig& config,
                                           const torch::Device& device,
                                           SessionLabels* labels = nullptr);

}  // namespace recur

#endif  // RECUR_SERVER_SESSION_CODEC_H_
