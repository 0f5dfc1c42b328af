// Data-parallel training: the torchrun environment, the groups themselves, the ranks' dropout
// seeds, and recur-train end to end, where 2 processes on 127.0.0.1 must end with the same weights
// as 1 process with the same global batch.
#include "train/data_parallel.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors.h"
#include "tests/test_util.h"

namespace recur {
namespace {

using testing::TempDir;

// A port that was free a moment ago (the kernel picks it).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t length = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string TrainCommand(const std::string& data, const std::string& out,
                         const std::string& device) {
  return std::string(RECUR_TRAIN_BINARY) + " --dataset text --data " + data + " --out " + out +
         " --layers 1 --heads 2 --d_model 32 --d_ff 64 --dropout 0 --seq_len 16 --batch_size 8"
         " --lr 3e-3 --warmup 2 --max_steps 12 --eval_every 6 --threads 1 --seed 5 --device " +
         device;
}

// Sets environment variables for one test and restores them after it.
class ScopedEnvironment {
 public:
  ScopedEnvironment(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const auto& [name, value] : values) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
      if (value != nullptr) {
        ::setenv(name, value, 1);
      } else {
        ::unsetenv(name);
      }
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value.has_value()) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A small text to train on, written into `dir`; returns its path.
std::string WriteTrainingText(const TempDir& dir) {
  std::ofstream text(dir.Join("data.txt"));
  for (int i = 0; i < 300; ++i) text << "line " << i % 17 << ": the quick brown fox jumps.\n";
  return dir.Join("data.txt");
}

// recur-train on `data` as 2 processes on 127.0.0.1 (Gloo on the CPU, NCCL on CUDA), writing to
// `out`; appends their output to `log`. Returns the shell's exit status (0: both ranks succeeded).
int LaunchTwoProcesses(const std::string& data, const std::string& out, const std::string& device,
                       const std::string& flags, const std::string& log) {
  const std::string env =
      "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(FreePort()) + " WORLD_SIZE=2";
  const std::string multi = TrainCommand(data, out, device) + flags + " >>" + log + " 2>&1";
  const std::string both = env + " RANK=0 " + multi + " & a=$!; " + env + " RANK=1 " + multi +
                           " & b=$!; wait $a && wait $b";
  return std::system(("bash -c '" + both + "'").c_str());
}

// recur-train as 2 processes against 1 process, same global batch and `flags`; with
// `resume_halfway`, the 2 processes stop after half the steps and a second 2-process launch
// resumes from the state they saved.
void ExpectTwoProcessesMatchOne(const std::string& device, double tolerance,
                                const std::string& flags = "", bool resume_halfway = false) {
  TempDir dir;
  const std::string data = WriteTrainingText(dir);
  const std::string log = dir.Join("log.txt");
  ASSERT_EQ(
      std::system(
          (TrainCommand(data, dir.Join("single"), device) + flags + " >>" + log + " 2>&1").c_str()),
      0)
      << "one-process run failed; see " << log;
  const std::string multi = dir.Join("multi");
  if (resume_halfway) {
    ASSERT_EQ(LaunchTwoProcesses(data, multi, device, flags + " --stop_after_steps 6", log), 0)
        << "two-process run failed; see " << log;
    ASSERT_EQ(LaunchTwoProcesses(data, multi, device, flags + " --resume " + multi + ".state", log),
              0)
        << "two-process resume failed; see " << log;
  } else {
    ASSERT_EQ(LaunchTwoProcesses(data, multi, device, flags, log), 0)
        << "two-process run failed; see " << log;
  }

  // The resumable state holds the final weights of each run.
  auto single = ReadSafetensors(dir.Join("single.state") + "/model.safetensors");
  auto two = ReadSafetensors(dir.Join("multi.state") + "/model.safetensors");
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_TRUE(two.ok()) << two.status();
  ASSERT_EQ(single->tensors.size(), two->tensors.size());
  for (const auto& [name, tensor] : single->tensors) {
    // Gradients are summed in another order across processes: equal up to rounding.
    EXPECT_LE(testing::RelativeError(two->tensors.at(name), tensor), tolerance) << name;
  }
  // And training moved the weights, so the comparison means something.
  auto initial_norm = single->tensors.at("final_norm.weight");
  EXPECT_GT((initial_norm - 1).abs().max().item<double>(), 1e-3);

  // A carried context is saved whole: the ranks' rows in order, as one process holds them.
  auto single_state = ReadSafetensors(dir.Join("single.state") + "/optimizer.safetensors");
  auto two_state = ReadSafetensors(dir.Join("multi.state") + "/optimizer.safetensors");
  ASSERT_TRUE(single_state.ok()) << single_state.status();
  ASSERT_TRUE(two_state.ok()) << two_state.status();
  for (const auto& [name, tensor] : single_state->tensors) {
    if (name.rfind("carried.", 0) != 0) continue;
    ASSERT_TRUE(two_state->tensors.count(name)) << name;
    EXPECT_EQ(two_state->tensors.at(name).sizes(), tensor.sizes()) << name;
    EXPECT_LE(testing::RelativeError(two_state->tensors.at(name), tensor), tolerance) << name;
  }
}

TEST(DataParallelTest, TwoProcessesMatchOneWithTheSameGlobalBatch) {
  ExpectTwoProcessesMatchOne("cpu", 1e-4);
}

// Each rank carries its own rows' state from window to window; the saved state holds them all.
TEST(DataParallelTest, TwoProcessesCarryingTheContextMatchOne) {
  ExpectTwoProcessesMatchOne("cpu", 1e-4, " --carry_context --short_conv 3");
}

// Stopped and resumed as 2 processes, every rank takes its rows of the saved context back.
TEST(DataParallelTest, TwoProcessesResumeTheCarriedContext) {
  ExpectTwoProcessesMatchOne("cpu", 1e-4, " --carry_context --short_conv 3",
                             /*resume_halfway=*/true);
}

// With dropout each rank reseeds from its rank and the step at every step, so 2 processes stopped
// halfway and resumed end exactly where 2 processes that never stopped do.
TEST(DataParallelTest, TwoProcessesWithDropoutResumeExactly) {
  TempDir dir;
  const std::string data = WriteTrainingText(dir);
  const std::string log = dir.Join("log.txt");
  const std::string dropout = " --dropout 0.3";
  ASSERT_EQ(LaunchTwoProcesses(data, dir.Join("straight"), "cpu", dropout, log), 0)
      << "see " << log;
  const std::string resumed = dir.Join("resumed");
  ASSERT_EQ(LaunchTwoProcesses(data, resumed, "cpu", dropout + " --stop_after_steps 6", log), 0)
      << "see " << log;
  ASSERT_EQ(
      LaunchTwoProcesses(data, resumed, "cpu", dropout + " --resume " + resumed + ".state", log), 0)
      << "see " << log;
  auto straight_weights = ReadSafetensors(dir.Join("straight.state") + "/model.safetensors");
  auto resumed_weights = ReadSafetensors(resumed + ".state/model.safetensors");
  ASSERT_TRUE(straight_weights.ok()) << straight_weights.status();
  ASSERT_TRUE(resumed_weights.ok()) << resumed_weights.status();
  for (const auto& [name, tensor] : straight_weights->tensors) {
    EXPECT_TRUE(torch::equal(resumed_weights->tensors.at(name), tensor)) << name;
  }
}

// Each rank's dropout masks are its own, the same again for the same rank and step.
TEST(DataParallelTest, RanksDrawTheirOwnDropoutMasks) {
  auto mask = [](int rank, int64_t step) {
    torch::manual_seed(DropoutSeed(/*run_seed=*/1, rank, step));
    return torch::dropout(torch::ones({4096}), 0.5, /*train=*/true);
  };
  EXPECT_TRUE(torch::equal(mask(1, 7), mask(1, 7)));
  EXPECT_FALSE(torch::equal(mask(0, 7), mask(1, 7)));
  EXPECT_FALSE(torch::equal(mask(1, 7), mask(1, 8)));
  EXPECT_NE(DropoutSeed(1, 0, 7), DropoutSeed(2, 0, 7));
}

TEST(DataParallelTest, TwoGpuProcessesOverNcclMatchOne) {
  if (testing::TestDevice().is_cpu()) GTEST_SKIP() << "runs with RECUR_TEST_DEVICE=cuda on a GPU";
  if (!DataParallel::HasNccl()) GTEST_SKIP() << "this build has no NCCL";
  if (torch::cuda::device_count() < 2)
    GTEST_SKIP() << "NCCL needs one GPU per rank: this machine has one";
  ExpectTwoProcessesMatchOne("cuda", 1e-3);
}

TEST(DataParallelTest, SpecComesFromTheTorchrunVariables) {
  {
    ScopedEnvironment env({{"WORLD_SIZE", "4"},
                           {"RANK", "3"},
                           {"MASTER_ADDR", "10.0.0.7"},
                           {"MASTER_PORT", "1234"},
                           {"LOCAL_RANK", nullptr}});
    auto spec = DataParallel::SpecFromEnvironment(torch::kCPU);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->world_size, 4);
    EXPECT_EQ(spec->rank, 3);
    EXPECT_EQ(spec->master_addr, "10.0.0.7");
    EXPECT_EQ(spec->master_port, 1234);
    EXPECT_TRUE(spec->device.is_cpu());
  }
  ScopedEnvironment env({{"WORLD_SIZE", nullptr},
                         {"RANK", nullptr},
                         {"MASTER_ADDR", nullptr},
                         {"MASTER_PORT", nullptr},
                         {"LOCAL_RANK", nullptr}});
  auto spec = DataParallel::SpecFromEnvironment(torch::kCPU);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->world_size, 1);
  EXPECT_EQ(spec->rank, 0);
  EXPECT_EQ(spec->master_addr, "127.0.0.1");
  EXPECT_EQ(spec->master_port, 29500);
}

TEST(DataParallelTest, EachCudaRankNeedsItsOwnGpu) {
  const int gpus = static_cast<int>(torch::cuda::device_count());
  const std::string too_far = std::to_string(gpus);
  {
    ScopedEnvironment env({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"LOCAL_RANK", too_far.c_str()}});
    auto spec = DataParallel::SpecFromEnvironment(torch::kCUDA);
    ASSERT_FALSE(spec.ok());
    EXPECT_THAT(std::string(spec.status().message()),
                ::testing::HasSubstr("LOCAL_RANK=" + too_far));
  }
  if (gpus >= 1) {
    ScopedEnvironment env({{"WORLD_SIZE", "2"}, {"RANK", "1"}, {"LOCAL_RANK", "0"}});
    auto spec = DataParallel::SpecFromEnvironment(torch::kCUDA);
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(spec->device, torch::Device(torch::kCUDA, 0));
  }
}

TEST(DataParallelTest, CudaWithoutNcclIsAClearError) {
  if (DataParallel::HasNccl()) GTEST_SKIP() << "this build has NCCL";
  ProcessGroupSpec spec;
  spec.device = torch::Device(torch::kCUDA, 0);
  auto group = DataParallel::Join(spec);
  ASSERT_FALSE(group.ok());
  EXPECT_EQ(group.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(group.status().message()), ::testing::HasSubstr("NCCL"));
}

// A group of one (Gloo on the CPU, NCCL on a GPU) averages each tensor to itself, in place.
TEST(DataParallelTest, GroupOfOneAveragesToItself) {
  const torch::Device device = testing::TestDevice();
  if (device.is_cuda() && !DataParallel::HasNccl()) GTEST_SKIP() << "this build has no NCCL";
  ProcessGroupSpec spec;
  spec.master_port = FreePort();
  spec.device = device.is_cuda() ? torch::Device(torch::kCUDA, 0) : device;
  auto group = DataParallel::Join(spec);
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ((*group)->rank(), 0);
  EXPECT_EQ((*group)->world_size(), 1);
  EXPECT_EQ((*group)->device(), spec.device);
  torch::manual_seed(3);
  std::vector<torch::Tensor> tensors{torch::randn({3, 4}, spec.device),
                                     torch::randn({5}, spec.device)};
  const auto expected = std::vector<torch::Tensor>{tensors[0].clone(), tensors[1].clone()};
  (*group)->AllReduceMean(tensors);
  EXPECT_TRUE(torch::equal(tensors[0], expected[0]));
  EXPECT_TRUE(torch::equal(tensors[1], expected[1]));
}

TEST(DataParallelTest, BadEnvironmentIsAClearError) {
  {
    ScopedEnvironment env({{"WORLD_SIZE", "2"}, {"RANK", "5"}});
    auto group = DataParallel::FromEnvironment(torch::kCPU);
    EXPECT_FALSE(group.ok());
    EXPECT_THAT(std::string(group.status().message()), ::testing::HasSubstr("RANK"));
  }
  {
    ScopedEnvironment env({{"WORLD_SIZE", "2"}, {"RANK", nullptr}});
    EXPECT_FALSE(DataParallel::FromEnvironment(torch::kCPU).ok());
  }
  {
    ScopedEnvironment env({{"WORLD_SIZE", "two"}});
    EXPECT_FALSE(DataParallel::FromEnvironment(torch::kCPU).ok());
  }
  {
    ScopedEnvironment env({{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "70000"}});
    EXPECT_FALSE(DataParallel::FromEnvironment(torch::kCPU).ok());
  }
  ScopedEnvironment env({{"WORLD_SIZE", nullptr}, {"RANK", nullptr}});
  auto none = DataParallel::FromEnvironment(torch::kCPU);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->get(), nullptr);
}

}  // namespace
}  // namespace recur
