#ifndef RECUR_SERVER_REFLECTION_V1_H_
#define RECUR_SERVER_REFLECTION_V1_H_

// grpc.reflection.v1, beside the v1alpha that gRPC's plugin serves (Debian's gRPC 1.51 has no v1):
// clients that speak only v1 (newer grpcurl, Postman, grpcui) can list the services and fetch
// their descriptors. Both answer from the generated descriptor pool, which holds recur.v1 and, as
// this server links the health protocol's messages, grpc.health.v1 (gRPC's built-in health
// service has no descriptors of its own, so before, no reflection client could resolve it).

#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace recur {

class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::Service {
 public:
  // `services`: the fully qualified names list_services answers.
  explicit ReflectionV1Service(std::vector<std::string> services);

  grpc::Status ServerReflectionInfo(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<grpc::reflection::v1::ServerReflectionResponse,
                               grpc::reflection::v1::ServerReflectionRequest>* stream) override;

 private:
  const std::vector<std::string> services_;
};

}  // namespace recur

#endif  // RECUR_SERVER_REFLECTION_V1_H_
