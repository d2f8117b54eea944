// Data-parallel ranks on c10d's ProcessGroupGloo, and the local launcher (see tailor/train/distributed.hpp).
#include "tailor/train/distributed.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <torch/torch.h>

#include "tailor/core/error.hpp"

#if TAILOR_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace tailor::train {

bool distributed_available() { return TAILOR_WITH_GLOO != 0; }

double Distributed::allreduce_mean(double value) {
  auto t = torch::tensor({value}, torch::kFloat64);
  allreduce_mean({t});
  return t.item<double>();
}

void Distributed::broadcast_module(torch::nn::Module& module) {
  std::vector<torch::Tensor> all;
  for (auto& p : module.parameters()) all.push_back(p.detach());
  for (auto& b : module.buffers()) all.push_back(b.detach());
  if (!all.empty()) broadcast(all, 0);
}

void Distributed::allreduce_gradients(torch::nn::Module& module) {
  std::vector<torch::Tensor> grads;
  for (auto& p : module.parameters()) {
    if (!p.requires_grad()) continue;
    // A parameter the loss did not reach still takes part, so every rank reduces the same tensors.
    if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
    grads.push_back(p.grad());
  }
  if (!grads.empty()) allreduce_mean(grads);
}

void Distributed::allreduce_buffers(torch::nn::Module& module) {
  std::vector<torch::Tensor> buffers;
  for (auto& b : module.buffers())
    if (b.is_floating_point()) buffers.push_back(b.detach());
  if (!buffers.empty()) allreduce_mean(buffers);
}

#if TAILOR_WITH_GLOO

namespace {

// One collective for many tensors: all of them as one float64 vector (float64 so that averaging does not round
// differently from rank to rank), then copied back into each tensor's storage.
torch::Tensor flatten_f64(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> parts;
  for (const auto& t : tensors) parts.push_back(t.detach().reshape({-1}).to(torch::kFloat64));
  return torch::cat(parts);
}

void unflatten_into(const torch::Tensor& flat, const std::vector<torch::Tensor>& tensors) {
  torch::NoGradGuard g;
  int64_t offset = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(flat.slice(0, offset, offset + n).view(t.sizes()));
    offset += n;
  }
}

class GlooRank : public Distributed {
 public:
  explicit GlooRank(const DistributedOptions& o) : rank_(o.rank), world_(o.world_size), timeout_(o.timeout) {
    TAILOR_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, "rank ", o.rank,
                 " is outside world size ", o.world_size);
    std::string host = "127.0.0.1";
    try {
      if (o.store.rfind("tcp://", 0) == 0) {
        const std::string rest = o.store.substr(6);
        const auto colon = rest.rfind(':');
        TAILOR_CHECK(colon != std::string::npos, "store '", o.store, "' must be tcp://HOST:PORT");
        host = rest.substr(0, colon);
        c10d::TCPStoreOptions so;
        so.port = static_cast<uint16_t>(std::stoi(rest.substr(colon + 1)));
        so.isServer = o.rank == 0;
        so.numWorkers = static_cast<size_t>(o.world_size);
        so.timeout = o.timeout;
        store_ = c10::make_intrusive<c10d::TCPStore>(host, so);
      } else if (o.store.rfind("file://", 0) == 0) {
        store_ = c10::make_intrusive<c10d::FileStore>(o.store.substr(7), o.world_size);
        store_->setTimeout(o.timeout);
      } else {
        TAILOR_FAIL("unknown store '", o.store, "'; use tcp://HOST:PORT or file:///PATH");
      }
      auto options = c10d::ProcessGroupGloo::Options::create(o.timeout);
      const std::string bind = !o.hostname.empty() ? o.hostname : host;
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bind));
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, o.rank, o.world_size, options);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      TAILOR_FAIL("rank ", o.rank, " of ", o.world_size, " could not join the process group at '", o.store, "': ",
                  e.what());
    }
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void allreduce_mean(const std::vector<torch::Tensor>& tensors) override {
    if (world_ == 1 || tensors.empty()) return;
    std::vector<torch::Tensor> flat{flatten_f64(tensors)};
    run("all-reduce", [&] { return group_->allreduce(flat); });
    flat[0].div_(world_);
    unflatten_into(flat[0], tensors);
  }

  void broadcast(const std::vector<torch::Tensor>& tensors, int root) override {
    if (world_ == 1 || tensors.empty()) return;
    std::vector<torch::Tensor> flat{flatten_f64(tensors)};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    run("broadcast", [&] { return group_->broadcast(flat, bo); });
    unflatten_into(flat[0], tensors);
  }

  void barrier() override {
    if (world_ == 1) return;
    run("barrier", [&] { return group_->barrier(); });
  }

 private:
  template <typename Start>
  void run(const char* what, Start&& start) {
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      TAILOR_FAIL("rank ", rank_, " of ", world_, ": ", what, " failed (did another rank stop?): ", e.what());
    }
  }
  int rank_, world_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group_;
};

}  // namespace

std::shared_ptr<Distributed> Distributed::connect(const DistributedOptions& options) {
  return std::make_shared<GlooRank>(options);
}

#else

std::shared_ptr<Distributed> Distributed::connect(const DistributedOptions&) {
  TAILOR_FAIL("this build of tailor has no c10d/Gloo (LibTorch without distributed support, or Gloo's headers "
              "were not found when tailor was built; on Debian install libgloo-dev and rebuild)");
}

#endif

std::shared_ptr<Distributed> Distributed::from_env() {
  const char* world = std::getenv("WORLD_SIZE");
  if (!world || std::atoi(world) <= 1) return nullptr;
  DistributedOptions o;
  o.world_size = std::atoi(world);
  const char* rank = std::getenv("RANK");
  TAILOR_CHECK(rank, "WORLD_SIZE is ", o.world_size, " but RANK is not set");
  o.rank = std::atoi(rank);
  if (const char* store = std::getenv("TAILOR_STORE")) {
    o.store = store;
  } else {
    const char* addr = std::getenv("MASTER_ADDR");
    const char* port = std::getenv("MASTER_PORT");
    o.store = std::string("tcp://") + (addr ? addr : "127.0.0.1") + ":" + (port ? port : "29500");
  }
  if (const char* t = std::getenv("TAILOR_DIST_TIMEOUT_S")) o.timeout = std::chrono::milliseconds(std::atol(t) * 1000);
  return connect(o);
}

int launch(const std::vector<std::string>& argv, const LaunchOptions& o) {
  TAILOR_CHECK(!argv.empty(), "launch needs a command to run");
  TAILOR_CHECK(o.nproc >= 1, "launch needs at least one process per node, got ", o.nproc);
  TAILOR_CHECK(o.nnodes >= 1 && o.node_rank >= 0 && o.node_rank < o.nnodes, "node rank ", o.node_rank,
               " is outside ", o.nnodes, " node(s)");
  const int world = o.nproc * o.nnodes;
  std::vector<pid_t> pids;
  for (int local = 0; local < o.nproc; ++local) {
    const int rank = o.node_rank * o.nproc + local;
    const pid_t pid = fork();
    TAILOR_CHECK(pid >= 0, "fork failed: ", std::strerror(errno));
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(o.master_port).c_str(), 1);
      // Ranks share the cores: each gets its share of threads unless the caller chose.
      if (!std::getenv("OMP_NUM_THREADS")) {
        const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
        setenv("OMP_NUM_THREADS", std::to_string(std::max(1u, cores / static_cast<unsigned>(o.nproc))).c_str(), 1);
      }
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      std::fprintf(stderr, "tailor launch: cannot run '%s': %s\n", args[0], std::strerror(errno));
      _exit(127);
    }
    pids.push_back(pid);
  }
  int first_failure = 0;
  size_t alive = pids.size();
  while (alive > 0) {
    int status = 0;
    const pid_t done = waitpid(-1, &status, 0);
    if (done < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int local = -1;
    for (size_t i = 0; i < pids.size(); ++i)
      if (pids[i] == done) local = static_cast<int>(i);
    if (local < 0) continue;
    pids[static_cast<size_t>(local)] = -1;
    --alive;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && first_failure == 0) {
      const int rank = o.node_rank * o.nproc + local;
      if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "tailor launch: rank %d was killed by signal %d (%s); stopping the other ranks\n", rank,
                     WTERMSIG(status), strsignal(WTERMSIG(status)));
        first_failure = 128 + WTERMSIG(status);
      } else {
        std::fprintf(stderr, "tailor launch: rank %d exited with status %d; stopping the other ranks\n", rank,
                     WEXITSTATUS(status));
        first_failure = WEXITSTATUS(status);
      }
      for (pid_t p : pids)
        if (p > 0) kill(p, SIGTERM);
    }
  }
  return first_failure;
}

}  // namespace tailor::train
