#include "client/recur_client.h"

#include "base/session_id.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/grpc_status.h"

namespace recur {

namespace {

std::shared_ptr<grpc::ChannelCredentials> Credentials(const ConnectionOptions& connection) {
  if (!connection.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = connection.tls_root_certs;
  ssl.pem_cert_chain = connection.tls_cert_chain;
  ssl.pem_private_key = connection.tls_private_key;
  return grpc::SslCredentials(ssl);
}

constexpr size_t kMaxRoutedIdLength = 64;

}  // namespace

RecurClient::RecurClient(const std::string& address, absl::Duration timeout,
                         const ConnectionOptions& connection)
    : channel_(grpc::CreateChannel(address, Credentials(connection))),
      stub_(v1::Recur::NewStub(channel_)),
      timeout_(timeout),
      authorization_(connection.token.empty() ? "" : "Bearer " + connection.token) {}

void RecurClient::Prepare(grpc::ClientContext* context, const std::string& session_id) const {
  if (timeout_ != absl::InfiniteDuration())
    context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  if (!authorization_.empty()) context->AddMetadata("authorization", authorization_);
  // Only an id of a session id's size: a malformed one of any length still reaches the server,
  // which answers NOT_FOUND, instead of failing on the header's size limit.
  if (!session_id.empty() && session_id.size() <= kMaxRoutedIdLength) {
    context->AddMetadata(kSessionHeader, session_id);
  }
}

absl::Status RecurClient::Generate(
    const v1::GenerateRequest& request,
    const std::function<void(const v1::GenerateResponse&)>& on_message,
    Cancellation* cancellation) {
  grpc::ClientContext context;
  Prepare(&context, request.session_id());
  if (cancellation != nullptr) {
    absl::MutexLock lock(&cancellation->mu_);
    cancellation->context_ = &context;
  }
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse message;
  while (reader->Read(&message)) on_message(message);
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (cancellation != nullptr) {
    absl::MutexLock lock(&cancellation->mu_);
    cancellation->context_ = nullptr;
  }
  return status;
}

bool Cancellation::Cancel() {
  absl::MutexLock lock(&mu_);
  if (context_ == nullptr) return false;
  context_->TryCancel();
  return true;
}

template <typename Request, typename Response>
absl::StatusOr<Response> RecurClient::Call(
    grpc::Status (v1::Recur::Stub::*method)(grpc::ClientContext*, const Request&, Response*),
    const Request& request, const std::string& session_id) {
  grpc::ClientContext context;
  Prepare(&context, session_id);
  Response response;
  absl::Status status = FromGrpcStatus((stub_.get()->*method)(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

namespace {

template <typename Request>
Request WithSession(const std::string& id) {
  Request request;
  request.set_session_id(id);
  return request;
}

}  // namespace

absl::StatusOr<v1::Session> RecurClient::CreateSession() {
  const std::string id = NewSessionId();
  return Call(&v1::Recur::Stub::CreateSession, WithSession<v1::CreateSessionRequest>(id), id);
}

absl::StatusOr<v1::Session> RecurClient::GetSession(const std::string& id) {
  return Call(&v1::Recur::Stub::GetSession, WithSession<v1::GetSessionRequest>(id), id);
}

absl::Status RecurClient::CloseSession(const std::string& id) {
  return Call(&v1::Recur::Stub::CloseSession, WithSession<v1::CloseSessionRequest>(id), id)
      .status();
}

absl::StatusOr<v1::Session> RecurClient::ForkSession(const std::string& id) {
  return Call(&v1::Recur::Stub::ForkSession, WithSession<v1::ForkSessionRequest>(id), id);
}

absl::StatusOr<std::string> RecurClient::ExportSession(const std::string& id) {
  auto response =
      Call(&v1::Recur::Stub::ExportSession, WithSession<v1::ExportSessionRequest>(id), id);
  if (!response.ok()) return response.status();
  return std::move(*response->mutable_state());
}

absl::StatusOr<v1::Session> RecurClient::ImportSession(const std::string& state) {
  auto request = WithSession<v1::ImportSessionRequest>(NewSessionId());
  request.set_state(state);
  return Call(&v1::Recur::Stub::ImportSession, request, request.session_id());
}

absl::StatusOr<v1::ModelInfo> RecurClient::GetModelInfo() {
  return Call(&v1::Recur::Stub::GetModelInfo, v1::GetModelInfoRequest());
}

absl::StatusOr<std::string> RecurClient::Health() {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext context;
  Prepare(&context);
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  absl::Status status = FromGrpcStatus(stub->Check(&context, request, &response));
  if (!status.ok()) return status;
  return grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
}

}  // namespace recur
