#include "client/recur_client.h"

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace recur {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

RecurClient::RecurClient(const std::string& address, absl::Duration timeout)
    : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      stub_(v1::Recur::NewStub(channel_)),
      timeout_(timeout) {}

void RecurClient::SetDeadline(grpc::ClientContext* context) const {
  if (timeout_ != absl::InfiniteDuration()) context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
}

absl::Status RecurClient::Generate(const v1::GenerateRequest& request,
                                   const std::function<void(const v1::GenerateResponse&)>& on_message) {
  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse message;
  while (reader->Read(&message)) on_message(message);
  return FromGrpcStatus(reader->Finish());
}

namespace {

// Runs one unary call with a fresh context.
template <typename Response, typename Call>
absl::StatusOr<Response> Unary(const Call& call) {
  Response response;
  absl::Status status = FromGrpcStatus(call(&response));
  if (!status.ok()) return status;
  return response;
}

}  // namespace

#define RECUR_UNARY(Method, RequestType, ResponseType, fill)                   \
  Unary<ResponseType>([&](ResponseType* response) {                            \
    grpc::ClientContext context;                                               \
    SetDeadline(&context);                                                     \
    RequestType request;                                                       \
    fill;                                                                      \
    return stub_->Method(&context, request, response);                         \
  })

absl::StatusOr<v1::Session> RecurClient::CreateSession() {
  return RECUR_UNARY(CreateSession, v1::CreateSessionRequest, v1::Session, (void)0);
}

absl::StatusOr<v1::Session> RecurClient::GetSession(const std::string& id) {
  return RECUR_UNARY(GetSession, v1::GetSessionRequest, v1::Session, request.set_session_id(id));
}

absl::Status RecurClient::CloseSession(const std::string& id) {
  return RECUR_UNARY(CloseSession, v1::CloseSessionRequest, v1::CloseSessionResponse, request.set_session_id(id))
      .status();
}

absl::StatusOr<v1::Session> RecurClient::ForkSession(const std::string& id) {
  return RECUR_UNARY(ForkSession, v1::ForkSessionRequest, v1::Session, request.set_session_id(id));
}

absl::StatusOr<std::string> RecurClient::ExportSession(const std::string& id) {
  auto response =
      RECUR_UNARY(ExportSession, v1::ExportSessionRequest, v1::ExportSessionResponse, request.set_session_id(id));
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_state());
}

absl::StatusOr<v1::Session> RecurClient::ImportSession(const std::string& state) {
  return RECUR_UNARY(ImportSession, v1::ImportSessionRequest, v1::Session, request.set_state(state));
}

absl::StatusOr<v1::ModelInfo> RecurClient::GetModelInfo() {
  return RECUR_UNARY(GetModelInfo, v1::GetModelInfoRequest, v1::ModelInfo, (void)0);
}

#undef RECUR_UNARY

absl::StatusOr<std::string> RecurClient::Health() {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status = FromGrpcStatus(stub->Check(&context, request, &response));
  if (!status.ok()) return status;
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

}  // namespace recur
