#include "train/data_parallel.h"

#include <torch/cuda.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

#if defined(RECUR_HAVE_GLOO) || defined(RECUR_HAVE_NCCL)
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef RECUR_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef RECUR_HAVE_NCCL
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
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

#if defined(RECUR_HAVE_GLOO) || defined(RECUR_HAVE_NCCL)
// A c10d process group (Gloo's or NCCL's: the same collective calls) behind DataParallel.
template <typename Group>
class ProcessGroupDataParallel : public DataParallel {
 public:
  ProcessGroupDataParallel(c10::intrusive_ptr<Group> group, const ProcessGroupSpec& spec)
      : group_(std::move(group)), spec_(spec) {}

  int rank() const override { return spec_.rank; }
  int world_size() const override { return spec_.world_size; }
  torch::Device device() const override { return spec_.device; }

  void AllReduceSum(std::vector<torch::Tensor>& tensors) override {
    if (tensors.empty()) return;
    // One flat buffer, one collective: far cheaper than a call per parameter.
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : tensors) {
      TORCH_CHECK(t.scalar_type() == tensors[0].scalar_type(),
                  "AllReduceSum: tensors of one dtype only");
      flat_parts.push_back(t.reshape({-1}));
    }
    std::vector<at::Tensor> buffer{torch::cat(flat_parts)};
    group_->allreduce(buffer)->wait();
    int64_t offset = 0;
    for (auto& t : tensors) {
      t.copy_(buffer[0].slice(0, offset, offset + t.numel()).view_as(t));
      offset += t.numel();
    }
  }

 private:
  c10::intrusive_ptr<Group> group_;
  ProcessGroupSpec spec_;
};

// The rendezvous every rank meets at; rank 0 serves it.
c10::intrusive_ptr<c10d::Store> ConnectStore(const ProcessGroupSpec& spec) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<uint16_t>(spec.master_port);
  options.isServer = spec.rank == 0;
  options.numWorkers = spec.world_size;
  options.timeout = std::chrono::seconds(120);
  return c10::make_intrusive<c10d::TCPStore>(spec.master_addr, options);
}
#endif

#ifdef RECUR_HAVE_GLOO
std::unique_ptr<DataParallel> JoinGloo(const ProcessGroupSpec& spec) {
  auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(600));
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(spec.master_addr));
  options->threads = 2;
  auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(ConnectStore(spec), spec.rank,
                                                           spec.world_size, options);
  return std::make_unique<ProcessGroupDataParallel<c10d::ProcessGroupGloo>>(std::move(group), spec);
}
#endif

#ifdef RECUR_HAVE_NCCL
std::unique_ptr<DataParallel> JoinNccl(const ProcessGroupSpec& spec) {
  // The rank's GPU becomes current first, so that NCCL and the CUDA context live there, not on GPU
  // 0.
  c10::cuda::set_device(spec.device.index());
  auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(
      ConnectStore(spec), spec.rank, spec.world_size, c10d::ProcessGroupNCCL::Options::create());
  return std::make_unique<ProcessGroupDataParallel<c10d::ProcessGroupNCCL>>(std::move(group), spec);
}
#endif

}  // namespace

void DataParallel::AllReduceMean(std::vector<torch::Tensor>& tensors) {
  AllReduceSum(tensors);
  for (auto& t : tensors) t.div_(world_size());
}

uint64_t DropoutSeed(uint64_t run_seed, int rank, int64_t step) {
  // SplitMix64's finaliser over the three inputs: nearby ranks and steps get unrelated seeds.
  auto mix = [](uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;
  return mix(mix(mix(run_seed + kGolden) + static_cast<uint64_t>(rank) + kGolden) +
             static_cast<uint64_t>(step) + kGolden);
}

bool DataParallel::HasNccl() {
#ifdef RECUR_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

absl::StatusOr<ProcessGroupSpec> DataParallel::SpecFromEnvironment(torch::DeviceType device_type) {
  ProcessGroupSpec spec;
  auto world = IntFromEnvironment("WORLD_SIZE", 1);
  if (!world.ok()) return world.status();
  if (*world < 1)
    return absl::InvalidArgumentError(absl::StrCat("WORLD_SIZE must be positive, got ", *world));
  spec.world_size = *world;
  auto rank = IntFromEnvironment("RANK", spec.world_size == 1 ? 0 : -1);
  if (!rank.ok()) return rank.status();
  if (*rank < 0 || *rank >= spec.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("RANK must be set and in [0, WORLD_SIZE=", spec.world_size, ")"));
  }
  spec.rank = *rank;
  auto port = IntFromEnvironment("MASTER_PORT", spec.master_port);
  if (!port.ok()) return port.status();
  if (*port <= 0 || *port > 65535) return absl::InvalidArgumentError("MASTER_PORT is not a port");
  spec.master_port = *port;
  const char* addr = std::getenv("MASTER_ADDR");
  if (addr != nullptr && *addr != '\0') spec.master_addr = addr;
  if (device_type == torch::kCUDA) {
    auto local_rank = IntFromEnvironment("LOCAL_RANK", spec.rank);
    if (!local_rank.ok()) return local_rank.status();
    const int gpus = static_cast<int>(torch::cuda::device_count());
    if (*local_rank < 0 || *local_rank >= gpus) {
      return absl::InvalidArgumentError(absl::StrCat(
          "this rank's GPU is LOCAL_RANK=", *local_rank, " (default: RANK), but this machine has ",
          gpus, " CUDA device(s): run at most one rank per GPU"));
    }
    spec.device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(*local_rank));
  }
  return spec;
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Join(const ProcessGroupSpec& spec) {
  const std::string where = absl::StrCat(spec.master_addr, ":", spec.master_port, " as rank ",
                                         spec.rank, " of ", spec.world_size);
  try {
    if (spec.device.is_cuda()) {
#ifdef RECUR_HAVE_NCCL
      return JoinNccl(spec);
#else
      return absl::UnimplementedError(
          "data-parallel training on CUDA runs over NCCL, and this build has none (its LibTorch "
          "lacks "
          "CUDA, or nccl.h was not found when it was configured)");
#endif
    }
#ifdef RECUR_HAVE_GLOO
    return JoinGloo(spec);
#else
    return absl::UnimplementedError(
        "data-parallel training on the CPU runs over Gloo, and this build has none (rebuild with "
        "libgloo-dev)");
#endif
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot join the process group at ", where, ": ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::FromEnvironment(
    torch::DeviceType device_type) {
  auto spec = SpecFromEnvironment(device_type);
  if (!spec.ok()) return spec.status();
  if (spec->world_size == 1) return std::unique_ptr<DataParallel>();
  return Join(*spec);
}

}  // namespace recur
