#include "train/data_parallel.h"

#include <cstdlib>
#include <string>

#include <torch/torch.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#ifdef RECUR_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace recur {

namespace {

absl::StatusOr<int> IntFromEnvironment(const char* name, int fallback) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return fallback;
  int parsed;
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", value, "' is not an integer"));
  }
  return parsed;
}

#ifdef RECUR_HAVE_GLOO
class GlooDataParallel : public DataParallel {
 public:
  GlooDataParallel(c10::intrusive_ptr<c10d::ProcessGroupGloo> group, int rank, int world)
      : group_(std::move(group)), rank_(rank), world_(world) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void AllReduceMean(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    // One flat buffer, one collective: far cheaper than a call per parameter.
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : tensors) flat_parts.push_back(t.reshape({-1}));
    std::vector<at::Tensor> buffer{torch::cat(flat_parts)};
    group_->allreduce(buffer)->wait();
    buffer[0].div_(world_);
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(buffer[0].slice(0, offset, offset + t.numel()).view_as(t));
      offset += t.numel();
    }
  }

  void Barrier() override { group_->barrier()->wait(); }

 private:
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
  int rank_;
  int world_;
};
#endif

}  // namespace

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::FromEnvironment() {
  auto world = IntFromEnvironment("WORLD_SIZE", 1);
  if (!world.ok()) return world.status();
  if (*world <= 1) return std::unique_ptr<DataParallel>();
  auto rank = IntFromEnvironment("RANK", -1);
  if (!rank.ok()) return rank.status();
  if (*rank < 0 || *rank >= *world) {
    return absl::InvalidArgumentError(absl::StrCat("RANK must be in [0, WORLD_SIZE=", *world, ")"));
  }
  auto port = IntFromEnvironment("MASTER_PORT", 29500);
  if (!port.ok()) return port.status();
  if (*port <= 0 || *port > 65535) return absl::InvalidArgumentError("MASTER_PORT is not a port");
  const char* addr_env = std::getenv("MASTER_ADDR");
  const std::string addr = addr_env != nullptr && *addr_env != '\0' ? addr_env : "127.0.0.1";
#ifdef RECUR_HAVE_GLOO
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(*port);
    store_options.isServer = *rank == 0;
    store_options.numWorkers = *world;
    store_options.timeout = std::chrono::seconds(120);
    auto store = c10::make_intrusive<c10d::TCPStore>(addr, store_options);
    auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(600));
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(addr));
    options->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, *rank, *world, options);
    return std::unique_ptr<DataParallel>(new GlooDataParallel(std::move(group), *rank, *world));
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot join the process group at ", addr, ":", *port,
                                               " as rank ", *rank, " of ", *world, ": ", e.what()));
  }
#else
  return absl::UnimplementedError(
      "this build has no Gloo support, so WORLD_SIZE > 1 cannot be used (rebuild with libgloo-dev)");
#endif
}

}  // namespace recur
