// tailor/train/distributed.hpp: data-parallel training on LibTorch's own c10d engine (ProcessGroupGloo over
// a TCP or file store). Ranks find each other like torchrun's (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
// the trainer all-reduces gradients and shards the data. `launch` starts N local ranks on loopback.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace tailor::train {

/// True when this build of tailor has c10d with Gloo (LibTorch built with it and Gloo's headers found).
bool distributed_available();

struct DistributedOptions {
  int rank = 0;
  int world_size = 1;
  /// Rendezvous: "tcp://HOST:PORT" (rank 0 serves the store) or "file:///path" (a file all ranks can reach).
  std::string store = "tcp://127.0.0.1:29500";
  std::chrono::milliseconds timeout{60000};  ///< a collective or rendezvous that waits longer fails
  /// Interface address Gloo binds to (default: the address the store's host resolves from, else loopback).
  std::string hostname;
};

/// One rank of a process group. Collectives throw tailor::Error naming this rank when a peer is gone.
class Distributed {
 public:
  static std::shared_ptr<Distributed> connect(const DistributedOptions& options);
  /// From the environment: RANK, WORLD_SIZE and MASTER_ADDR/MASTER_PORT (or TAILOR_STORE); nullptr when
  /// WORLD_SIZE is unset or 1.
  static std::shared_ptr<Distributed> from_env();
  virtual ~Distributed() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// In place: every tensor becomes the mean over ranks (one flattened all-reduce).
  virtual void allreduce_mean(const std::vector<torch::Tensor>& tensors) = 0;
  /// In place: every rank gets `root`'s values.
  virtual void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0) = 0;
  virtual void barrier() = 0;
  double allreduce_mean(double value);

  /// Makes all ranks start from rank 0's parameters and buffers.
  void broadcast_module(torch::nn::Module& module);
  /// Averages the gradients of the module's parameters over ranks.
  void allreduce_gradients(torch::nn::Module& module);
  /// Averages floating-point buffers (batch-norm running statistics) over ranks.
  void allreduce_buffers(torch::nn::Module& module);
};

struct LaunchOptions {
  int nproc = 2;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int nnodes = 1;
  int node_rank = 0;
};

/// Starts `nproc` copies of `argv` with RANK/LOCAL_RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set and waits.
/// If one rank fails, the others are stopped; returns 0 when all succeeded, else the first failure's
/// exit status (the message names the rank and how it ended).
int launch(const std::vector<std::string>& argv, const LaunchOptions& options);

}  // namespace tailor::train
