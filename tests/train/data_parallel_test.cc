// Data-parallel training end to end: recur-train run as 2 processes on 127.0.0.1 must end with the
// same weights as 1 process with the same global batch.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/safetensors.h"
#include "tests/test_util.h"
#include "train/data_parallel.h"

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

std::string TrainCommand(const std::string& data, const std::string& out) {
  return std::string(RECUR_TRAIN_BINARY) + " --dataset text --data " + data + " --out " + out +
         " --layers 1 --heads 2 --d_model 32 --d_ff 64 --dropout 0 --seq_len 16 --batch_size 8"
         " --lr 3e-3 --warmup 2 --max_steps 12 --eval_every 6 --threads 1 --seed 5";
}

TEST(DataParallelTest, TwoProcessesMatchOneWithTheSameGlobalBatch) {
  TempDir dir;
  {
    std::ofstream text(dir.Join("data.txt"));
    for (int i = 0; i < 300; ++i) text << "line " << i % 17 << ": the quick brown fox jumps.\n";
  }
  const std::string data = dir.Join("data.txt");
  const std::string log = " >>" + dir.Join("log.txt") + " 2>&1";
  ASSERT_EQ(std::system((TrainCommand(data, dir.Join("single")) + log).c_str()), 0);

  const std::string env = "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(FreePort()) + " WORLD_SIZE=2";
  const std::string both = env + " RANK=0 " + TrainCommand(data, dir.Join("multi")) + log +
                           " & a=$!; " + env + " RANK=1 " + TrainCommand(data, dir.Join("multi")) +
                           log + " & b=$!; wait $a && wait $b";
  ASSERT_EQ(std::system(("bash -c '" + both + "'").c_str()), 0)
      << "two-process run failed; see " << dir.Join("log.txt");

  // The resumable state holds the final weights of each run.
  auto single = ReadSafetensors(dir.Join("single.state") + "/model.safetensors");
  auto multi = ReadSafetensors(dir.Join("multi.state") + "/model.safetensors");
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_TRUE(multi.ok()) << multi.status();
  ASSERT_EQ(single->tensors.size(), multi->tensors.size());
  for (const auto& [name, tensor] : single->tensors) {
    // Gradients are summed in another order across processes: equal up to rounding.
    EXPECT_LE(testing::RelativeError(multi->tensors.at(name), tensor), 1e-4) << name;
  }
  // And training moved the weights, so the comparison means something.
  auto initial_norm = single->tensors.at("final_norm.weight");
  EXPECT_GT((initial_norm - 1).abs().max().item<double>(), 1e-3);
}

TEST(DataParallelTest, BadEnvironmentIsAClearError) {
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("RANK", "5", 1);
  auto group = DataParallel::FromEnvironment();
  EXPECT_FALSE(group.ok());
  EXPECT_THAT(std::string(group.status().message()), ::testing::HasSubstr("RANK"));
  ::setenv("WORLD_SIZE", "two", 1);
  EXPECT_FALSE(DataParallel::FromEnvironment().ok());
  ::unsetenv("WORLD_SIZE");
  ::unsetenv("RANK");
  auto none = DataParallel::FromEnvironment();
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->get(), nullptr);
}

}  // namespace
}  // namespace recur
