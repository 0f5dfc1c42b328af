#ifndef RECUR_SERVER_RECUR_SERVICE_IMPL_H_
#define RECUR_SERVER_RECUR_SERVICE_IMPL_H_

// The recur.v1.Recur gRPC service (callback API): translates messages to engine calls and engine
// results to messages and status codes. No tensors here.

#include <string>

#include "absl/status/statusor.h"
#include "proto/grpc_status.h"
#include "recur/v1/recur.grpc.pb.h"
#include "server/authenticator.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "server/write_thread.h"

namespace recur {

class RecurServiceImpl final : public v1::Recur::CallbackService {
 public:
  // `engine`, `metrics` and `authenticator` must outlive the service. Every call is made as the
  // tenant its bearer token names (server/authenticator.h), or refused UNAUTHENTICATED.
  RecurServiceImpl(Engine& engine, Metrics& metrics, const Authenticator& authenticator)
      : engine_(engine), metrics_(metrics), authenticator_(authenticator) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* CreateSession(grpc::CallbackServerContext* context,
                                          const v1::CreateSessionRequest* request,
                                          v1::Session* response) override;
  grpc::ServerUnaryReactor* GetSession(grpc::CallbackServerContext* context,
                                       const v1::GetSessionRequest* request,
                                       v1::Session* response) override;
  grpc::ServerUnaryReactor* CloseSession(grpc::CallbackServerContext* context,
                                         const v1::CloseSessionRequest* request,
                                         v1::CloseSessionResponse* response) override;
  grpc::ServerUnaryReactor* ForkSession(grpc::CallbackServerContext* context,
                                        const v1::ForkSessionRequest* request,
                                        v1::Session* response) override;
  grpc::ServerUnaryReactor* ExportSession(grpc::CallbackServerContext* context,
                                          const v1::ExportSessionRequest* request,
                                          v1::ExportSessionResponse* response) override;
  grpc::ServerUnaryReactor* ImportSession(grpc::CallbackServerContext* context,
                                          const v1::ImportSessionRequest* request,
                                          v1::Session* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

 private:
  grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status);
  // The caller's tenant, from its `authorization` metadata.
  absl::StatusOr<std::string> Caller(const grpc::CallbackServerContext& context) const;

  Engine& engine_;
  Metrics& metrics_;
  const Authenticator& authenticator_;
  WriteThread writer_;  // where the Generate streams start their writes
};

}  // namespace recur

#endif  // RECUR_SERVER_RECUR_SERVICE_IMPL_H_
