#include "server/reflection_v1.h"

#include <set>
#include <utility>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.pb.h"

namespace recur {

namespace {

namespace v1 = grpc::reflection::v1;
using google::protobuf::DescriptorPool;
using google::protobuf::FileDescriptor;

void Error(grpc::StatusCode code, const std::string& message, v1::ServerReflectionResponse* out) {
  out->mutable_error_response()->set_error_code(code);
  out->mutable_error_response()->set_error_message(message);
}

// `file` and every file it imports, directly or not, each once, the file itself first.
void AddFileAndImports(const FileDescriptor* file, std::set<std::string>& seen,
                       v1::FileDescriptorResponse* out) {
  if (file == nullptr || !seen.insert(file->name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file->CopyTo(&proto);
  out->add_file_descriptor_proto(proto.SerializeAsString());
  for (int i = 0; i < file->dependency_count(); ++i)
    AddFileAndImports(file->dependency(i), seen, out);
}

void Files(const FileDescriptor* file, const std::string& what, v1::ServerReflectionResponse* out) {
  if (file == nullptr) return Error(grpc::StatusCode::NOT_FOUND, what + " not found", out);
  std::set<std::string> seen;
  AddFileAndImports(file, seen, out->mutable_file_descriptor_response());
}

void Answer(const v1::ServerReflectionRequest& request, const std::vector<std::string>& services,
            v1::ServerReflectionResponse* out) {
  const DescriptorPool* pool = DescriptorPool::generated_pool();
  switch (request.message_request_case()) {
    case v1::ServerReflectionRequest::kListServices:
      for (const std::string& name : services) {
        out->mutable_list_services_response()->add_service()->set_name(name);
      }
      return;
    case v1::ServerReflectionRequest::kFileByFilename:
      return Files(pool->FindFileByName(request.file_by_filename()),
                   "file " + request.file_by_filename(), out);
    case v1::ServerReflectionRequest::kFileContainingSymbol:
      return Files(pool->FindFileContainingSymbol(request.file_containing_symbol()),
                   "symbol " + request.file_containing_symbol(), out);
    case v1::ServerReflectionRequest::kFileContainingExtension: {
      const auto& ask = request.file_containing_extension();
      const auto* type = pool->FindMessageTypeByName(ask.containing_type());
      const auto* extension =
          type == nullptr ? nullptr : pool->FindExtensionByNumber(type, ask.extension_number());
      return Files(extension == nullptr ? nullptr : extension->file(), "extension", out);
    }
    case v1::ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const auto* type = pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        return Error(grpc::StatusCode::NOT_FOUND,
                     "type " + request.all_extension_numbers_of_type() + " not found", out);
      }
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      auto* numbers = out->mutable_all_extension_numbers_response();
      numbers->set_base_type_name(type->full_name());
      for (const auto* extension : extensions) numbers->add_extension_number(extension->number());
      return;
    }
    default:
      return Error(grpc::StatusCode::UNIMPLEMENTED, "unknown reflection request", out);
  }
}

}  // namespace

ReflectionV1Service::ReflectionV1Service(std::vector<std::string> services)
    : services_(std::move(services)) {
  // Puts grpc/health/v1/health.proto in the generated pool (the linker keeps what is used).
  (void)grpc::health::v1::HealthCheckRequest::descriptor();
}

grpc::Status ReflectionV1Service::ServerReflectionInfo(
    grpc::ServerContext*,
    grpc::ServerReaderWriter<v1::ServerReflectionResponse, v1::ServerReflectionRequest>* stream) {
  v1::ServerReflectionRequest request;
  while (stream->Read(&request)) {
    v1::ServerReflectionResponse response;
    response.set_valid_host(request.host());
    *response.mutable_original_request() = request;
    Answer(request, services_, &response);
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

}  // namespace recur
