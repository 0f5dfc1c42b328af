// The status vocabulary: the macros return early with the error, Annotate keeps the code.

#include "base/status.h"

#include <gtest/gtest.h>

#include <string>

namespace recur {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  RECUR_ASSIGN_OR_RETURN(const int half, Half(x));
  RECUR_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x, int* calls) {
  ++*calls;
  RECUR_RETURN_IF_ERROR(Half(x).status());
  RECUR_RETURN_IF_ERROR(absl::OkStatus());
  return absl::NotFoundError("reached the end");
}

TEST(StatusMacrosTest, AssignOrReturnPassesValuesAndReturnsErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);  // 3 is odd
  EXPECT_EQ(Quarter(5).status().message(), "odd");
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheErrorAndEvaluatesOnce) {
  int calls = 0;
  EXPECT_EQ(CheckEven(3, &calls).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckEven(4, &calls).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(calls, 2);
}

TEST(AnnotateTest, KeepsTheCodeAndPrefixesTheMessage) {
  const absl::Status missing = absl::NotFoundError("file not found: x/optimizer.safetensors");
  const absl::Status annotated = Annotate(missing, "cannot resume");
  EXPECT_EQ(annotated.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(annotated.message(), "cannot resume: file not found: x/optimizer.safetensors");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "context").ok());
}

}  // namespace
}  // namespace recur
