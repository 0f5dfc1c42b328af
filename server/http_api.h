#ifndef RECUR_SERVER_HTTP_API_H_
#define RECUR_SERVER_HTTP_API_H_

// recur-server's HTTP face (--http_port): an OpenAI-compatible API on the same engine, tokens and
// tenants as the gRPC service, on cpp-httplib.
//   POST /v1/completions     server/openai_request.h; `"stream": true` answers server-sent events,
//                            one `data: {chunk}` per piece of text, ending in `data: [DONE]`
//   GET  /v1/models          the one model served
//   GET  /health             200 while serving, 503 while draining
//   POST /v1/sessions, GET /v1/sessions/{id}, DELETE /v1/sessions/{id}
//                            recur's sessions: a completion with "session_id" continues one,
//                            sending only the new text (no other OpenAI-compatible server can)
// Errors are OpenAI's shape, {"error": {"message", "type", "param", "code"}}, with the HTTP status
// of the engine's code (HttpStatus). Every call wants `Authorization: Bearer <token>` when the
// server has --auth_token_file.

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/authenticator.h"
#include "server/engine.h"
#include "server/metrics.h"

namespace recur {

struct HttpApiOptions {
  std::string host = "127.0.0.1";
  int port = 0;            // 0 picks a free one
  std::string model_name;  // the id /v1/models lists and completions accept
};

// The HTTP status for an engine error: 400, 401, 403, 404, 409, 429, 503, 504, else 500.
int HttpStatus(absl::StatusCode code);

class HttpApi {
 public:
  // `engine`, `metrics` and `authenticator` must outlive the API.
  static absl::StatusOr<std::unique_ptr<HttpApi>> Start(HttpApiOptions options, Engine& engine,
                                                        Metrics& metrics,
                                                        const Authenticator& authenticator);
  virtual ~HttpApi() = default;  // stops listening and waits for the connections' threads

  virtual int port() const = 0;
  // /health's answer: false while draining.
  virtual void SetServing(bool serving) = 0;
};

}  // namespace recur

#endif  // RECUR_SERVER_HTTP_API_H_
