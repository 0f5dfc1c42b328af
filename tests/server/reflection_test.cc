// Server reflection v1 (server/reflection_v1.h), asked as a v1-only client asks: the services,
// recur's API and the health protocol's descriptors (which no reflection client could resolve
// before), and errors for what does not exist.

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "tests/server/reflection_client.h"
#include "tests/server/test_server.h"

namespace recur::testing {
namespace {

namespace v1 = grpc::reflection::v1;
using ::testing::Contains;

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteTestCheckpoint(dir_.Join("model"), AttentionKind::kLinear);
    server_ = StartTestServer(dir_.Join("model"));
    ASSERT_NE(server_, nullptr);
    stub_ = v1::ServerReflection::NewStub(
        grpc::CreateChannel(Address(*server_), grpc::InsecureChannelCredentials()));
  }

  // The answers to `requests`, sent on one stream.
  std::vector<v1::ServerReflectionResponse> Ask(
      const std::vector<v1::ServerReflectionRequest>& requests) {
    grpc::ClientContext context;
    auto stream = stub_->ServerReflectionInfo(&context);
    std::vector<v1::ServerReflectionResponse> responses;
    for (const auto& request : requests) {
      EXPECT_TRUE(stream->Write(request));
      v1::ServerReflectionResponse response;
      EXPECT_TRUE(stream->Read(&response));
      responses.push_back(response);
    }
    stream->WritesDone();
    EXPECT_TRUE(stream->Finish().ok());
    return responses;
  }

  // The names of the files in a descriptor response, and whether one defines `service`.
  static std::vector<std::string> FileNames(const v1::ServerReflectionResponse& response,
                                            const std::string& service, bool* has_service) {
    std::vector<std::string> names;
    *has_service = false;
    for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      EXPECT_TRUE(file.ParseFromString(bytes));
      names.push_back(file.name());
      for (const auto& s : file.service()) {
        if (file.package() + "." + s.name() == service) *has_service = true;
      }
    }
    return names;
  }

  TempDir dir_;
  std::unique_ptr<RecurServer> server_;
  std::unique_ptr<v1::ServerReflection::Stub> stub_;
};

TEST_F(ReflectionTest, V1ListsTheServicesAndResolvesRecurAndHealth) {
  v1::ServerReflectionRequest list, recur, health, method, missing;
  list.set_list_services("");
  recur.set_file_containing_symbol("recur.v1.Recur");
  health.set_file_containing_symbol("grpc.health.v1.Health");
  method.set_file_containing_symbol("recur.v1.Recur.Generate");
  missing.set_file_containing_symbol("no.such.Service");
  const auto answers = Ask({list, recur, health, method, missing});

  std::vector<std::string> services;
  for (const auto& s : answers[0].list_services_response().service()) services.push_back(s.name());
  EXPECT_THAT(services, Contains("recur.v1.Recur"));
  EXPECT_THAT(services, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(services, Contains("grpc.reflection.v1.ServerReflection"));
  bool has = false;
  EXPECT_THAT(FileNames(answers[1], "recur.v1.Recur", &has), Contains("recur/v1/recur.proto"));
  EXPECT_TRUE(has);
  EXPECT_THAT(FileNames(answers[2], "grpc.health.v1.Health", &has),
              Contains("grpc/health/v1/health.proto"));
  EXPECT_TRUE(has) << "the health service's descriptor is served";
  EXPECT_THAT(FileNames(answers[3], "recur.v1.Recur", &has), Contains("recur/v1/recur.proto"));
  EXPECT_EQ(answers[4].error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(answers[4].original_request().file_containing_symbol(), "no.such.Service");
}

TEST_F(ReflectionTest, V1ServesFilesByNameAndAnswersTypeQueries) {
  v1::ServerReflectionRequest by_name, extensions, unknown_type;
  by_name.set_file_by_filename("recur/v1/recur.proto");
  extensions.set_all_extension_numbers_of_type("recur.v1.GenerateRequest");
  unknown_type.set_all_extension_numbers_of_type("no.Such");
  const auto answers = Ask({by_name, extensions, unknown_type});
  bool has = false;
  EXPECT_EQ(FileNames(answers[0], "recur.v1.Recur", &has).front(), "recur/v1/recur.proto");
  EXPECT_EQ(answers[1].all_extension_numbers_response().base_type_name(),
            "recur.v1.GenerateRequest");
  EXPECT_EQ(answers[2].error_response().error_code(), grpc::StatusCode::NOT_FOUND);
}

// gRPC's own v1alpha answers from the same pool, so it now resolves the health service too.
TEST_F(ReflectionTest, V1alphaResolvesTheHealthServiceToo) {
  v1::ServerReflectionRequest health;
  health.set_file_containing_symbol("grpc.health.v1.Health");
  EXPECT_TRUE(
      DefinesService(AskReflection(Address(*server_), "v1alpha", health), "grpc.health.v1.Health"));
}

}  // namespace
}  // namespace recur::testing
