#ifndef RECUR_TRAIN_DATA_PARALLEL_H_
#define RECUR_TRAIN_DATA_PARALLEL_H_

// Multi-process data-parallel training over torch's c10d (Gloo on CPU), launched the torchrun way:
// W processes with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in their environment. Each rank
// trains on its share of every batch; gradients are averaged across ranks before the optimizer
// step, so W processes follow the same trajectory as one process with the whole batch.

#include <memory>
#include <vector>

#include <torch/types.h>

#include "absl/status/statusor.h"

namespace recur {

class DataParallel {
 public:
  virtual ~DataParallel() = default;

  // Joins the group the environment describes; null when WORLD_SIZE is unset or 1.
  static absl::StatusOr<std::unique_ptr<DataParallel>> FromEnvironment();

  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Replaces each tensor with its mean over the ranks.
  virtual void AllReduceMean(std::vector<torch::Tensor>& tensors) = 0;
  virtual void Barrier() = 0;
};

}  // namespace recur

#endif  // RECUR_TRAIN_DATA_PARALLEL_H_
