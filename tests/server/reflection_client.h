#ifndef RECUR_TESTS_SERVER_REFLECTION_CLIENT_H_
#define RECUR_TESTS_SERVER_REFLECTION_CLIENT_H_

// A reflection client for either version: v1alpha's messages are v1's on the wire, so one set of
// types serves both methods.

#include <memory>
#include <string>

#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"

namespace recur::testing {

// The answer of `address`'s reflection service `version` ("v1" or "v1alpha") to `request`.
inline grpc::reflection::v1::ServerReflectionResponse AskReflection(
    const std::string& address, const std::string& version,
    const grpc::reflection::v1::ServerReflectionRequest& request) {
  using Request = grpc::reflection::v1::ServerReflectionRequest;
  using Response = grpc::reflection::v1::ServerReflectionResponse;
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  // RpcMethod keeps the pointer: the name must outlive the call.
  const std::string name = "/grpc.reflection." + version + ".ServerReflection/ServerReflectionInfo";
  const grpc::internal::RpcMethod method(name.c_str(), grpc::internal::RpcMethod::BIDI_STREAMING);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  std::unique_ptr<grpc::ClientReaderWriter<Request, Response>> stream(
      grpc::internal::ClientReaderWriterFactory<Request, Response>::Create(channel.get(), method,
                                                                           &context));
  Response response;
  if (stream->Write(request)) stream->Read(&response);
  stream->WritesDone();
  stream->Finish();
  return response;
}

// Whether the answer holds a file that defines the service `name` (fully qualified).
inline bool DefinesService(const grpc::reflection::v1::ServerReflectionResponse& response,
                           const std::string& name) {
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    if (!file.ParseFromString(bytes)) continue;
    for (const auto& service : file.service()) {
      if (file.package() + "." + service.name() == name) return true;
    }
  }
  return false;
}

}  // namespace recur::testing

#endif  // RECUR_TESTS_SERVER_REFLECTION_CLIENT_H_
