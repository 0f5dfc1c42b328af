#ifndef RECUR_SERVER_RECUR_SERVICE_IMPL_H_
#define RECUR_SERVER_RECUR_SERVICE_IMPL_H_

// The recur.v1.Recur gRPC service (callback API): translates messages to engine calls and engine
// results to messages and status codes. No tensors here.

#include "proto/grpc_status.h"
#include "recur/v1/recur.grpc.pb.h"
#include "server/engine.h"
#include "server/metrics.h"

namespace recur {

class RecurServiceImpl final : public v1::Recur::CallbackService {
 public:
  // `engine` and `metrics` must outlive the service.
  RecurServiceImpl(Engine& engine, Metrics& metrics) : engine_(engine), metrics_(metrics) {}

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

  Engine& engine_;
  Metrics& metrics_;
};

}  // namespace recur

#endif  // RECUR_SERVER_RECUR_SERVICE_IMPL_H_
