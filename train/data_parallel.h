#ifndef RECUR_TRAIN_DATA_PARALLEL_H_
#define RECUR_TRAIN_DATA_PARALLEL_H_

// Multi-process data-parallel training over torch's c10d, launched the torchrun way: W processes
// with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (and, on CUDA, LOCAL_RANK) in their
// environment. Each rank trains on its share of every batch; gradients are averaged across ranks
// before the optimizer step, so W processes follow the same trajectory as one process with the
// whole batch. The collectives run over Gloo on the CPU and over NCCL on CUDA, one GPU per rank.

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace recur {

// Where a rank joins its group, and on which device it trains.
struct ProcessGroupSpec {
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  // CPU: the group runs over Gloo. CUDA: over NCCL, and the index is the rank's own GPU.
  torch::Device device = torch::kCPU;
};

class DataParallel {
 public:
  virtual ~DataParallel() = default;

  // Reads the spec from the environment for a run on `device_type`; on CUDA the rank's GPU is
  // LOCAL_RANK (default: RANK), which must name a device this machine has.
  static absl::StatusOr<ProcessGroupSpec> SpecFromEnvironment(torch::DeviceType device_type);
  // Joins the group `spec` describes (blocks until all world_size ranks have joined).
  static absl::StatusOr<std::unique_ptr<DataParallel>> Join(const ProcessGroupSpec& spec);
  // Both of the above; null when WORLD_SIZE is unset or 1.
  static absl::StatusOr<std::unique_ptr<DataParallel>> FromEnvironment(
      torch::DeviceType device_type);

  // Whether this build can run groups on CUDA (its LibTorch has CUDA and NCCL's headers were
  // found).
  static bool HasNccl();

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // The device this rank trains on (tensors handed to the collectives must live there).
  virtual torch::Device device() const = 0;
  // Replaces each tensor with its sum over the ranks, in place. The tensors share one dtype.
  virtual void AllReduceSum(std::vector<torch::Tensor>& tensors) = 0;
  // Replaces each tensor with its mean over the ranks, in place (floating-point tensors).
  void AllReduceMean(std::vector<torch::Tensor>& tensors);
};

// The seed rank `rank` draws its dropout masks from at training step `step` of a run seeded with
// `run_seed`. Ranks start from the same seed so their initial weights agree; reseeding each step
// from this gives every rank its own masks (shared masks would correlate the noise of different
// rows), and a resumed run draws the same masks as one that never stopped.
uint64_t DropoutSeed(uint64_t run_seed, int rank, int64_t step);

}  // namespace recur

#endif  // RECUR_TRAIN_DATA_PARALLEL_H_
