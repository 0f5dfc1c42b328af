#ifndef RECUR_SERVER_SAMPLE_FAN_OUT_H_
#define RECUR_SERVER_SAMPLE_FAN_OUT_H_

// Several samples of one prompt (GenerationRequest::samples = n > 1), the way a recurrent state
// allows: the prompt is fed once, into a temporary session that keeps its last token pending
// (GenerationRequest::prefill_only); the session is forked n - 1 times (one copy of a
// constant-size state each) and sample i continues copy i with seed + i, so it is exactly the text
// a separate request with that seed gives; the samples then decode in one batch. Every front end
// (gRPC, HTTP) goes through here, and nothing waits: the forks and the samples' requests are made
// from the prefill's finish, on the engine thread.
//
// What each sample's sink sees is what a separate request's would: its prompt logprobs (the prefill
// scores the prompt once), its text, and a finish whose usage counts the prompt (with its cached
// tokens) and times from this call. The temporary sessions are closed as their samples finish.

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "server/engine.h"

namespace recur {

// Submits `request` with one sink per sample (sinks.size() == request.samples; one sample is a
// plain Engine::Submit). The returned ticket cancels every sample. Errors are Engine::Submit's for
// the prompt, and RESOURCE_EXHAUSTED when fewer than n state slots are free; a sample that cannot
// start later (the slots were taken meanwhile, the server began draining) finishes with kError.
absl::StatusOr<std::shared_ptr<GenerationTicket>> SubmitSamples(
    Engine& engine, GenerationRequest request, std::vector<std::shared_ptr<GenerationSink>> sinks);

}  // namespace recur

#endif  // RECUR_SERVER_SAMPLE_FAN_OUT_H_
