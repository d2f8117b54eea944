// Server overhead and throughput (docs/serving.md): an in-process `tailor serve` server and OIP client on loopback.
//   bench_serve MODEL.pt SHAPE [MODEL.pt SHAPE ...] [--requests N] [--seconds S]
// Per model: the ModelInfer round trip less the server's compute, p50 over N sequential requests (1 executor,
// 1 thread); then throughput with 2 executors (1 thread each) under 4 closed-loop clients against the same model
// run by 2 threads in-process (each with its own executable), for S seconds each, and their ratio.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include <torch/torch.h>

#include "tailor/serve/serve.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::vector<std::pair<std::string, std::string>> models;
  int requests = 300;
  double seconds = 10;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--requests") && i + 1 < argc) requests = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = std::atof(argv[++i]);
    else if (i + 1 < argc) {
      models.emplace_back(argv[i], argv[i + 1]);
      ++i;
    }
  }
  if (models.empty()) {
    std::fprintf(stderr, "usage: bench_serve MODEL.pt SHAPE [...] [--requests N] [--seconds S]\n");
    return 2;
  }
  std::printf("CPU %s, ISA %s\n", MachineInfo::detect().cpu_model.c_str(), effective_isa().c_str());
  for (const auto& [file, shape_text] : models) {
    const auto shape = parse_shape(shape_text);
    const auto x = torch::randn(shape);
    auto spec = serve::ModelSpec::parse("m=" + file + ",input=" + shape_text + ",threads=1");
    // Overhead: one executor, sequential requests.
    {
      serve::ServerOptions o;
      o.address = "127.0.0.1:0";
      o.executors = 1;
      serve::Server server({spec}, o);
      server.start();
      serve::Client client("127.0.0.1:" + std::to_string(server.port()));
      const std::string in = client.model_metadata("m").inputs[0].name;
      std::vector<double> over, net, queue, compute, total;
      for (int k = 0; k < requests + 20; ++k) {
        const auto r = client.infer("m", {{in, x}});
        if (k < 20) continue;
        const auto& t = r.timing;
        over.push_back(t.total_ms - t.compute_ms);
        net.push_back(t.network_ms);
        queue.push_back(t.queue_ms);
        compute.push_back(t.compute_ms);
        total.push_back(t.total_ms);
      }
      auto p50 = [](std::vector<double> v) { return LatencyStats::from_samples(std::move(v)).p50_ms; };
      std::printf("%s %s (%lld bytes in): round trip p50 %.3f ms, compute %.3f ms, overhead (round trip - compute) "
                  "p50 %.3f ms [network %.3f, queue+decode %.3f]\n",
                  file.c_str(), shape_text.c_str(), static_cast<long long>(x.numel() * 4), p50(total), p50(compute),
                  p50(over), p50(net), p50(queue));
      server.shutdown();
    }
    // Throughput: 2 executors under 4 clients, against 2 in-process threads.
    {
      serve::ServerOptions o;
      o.address = "127.0.0.1:0";
      o.executors = 2;
      serve::Server server({spec}, o);
      server.start();
      const std::string address = "127.0.0.1:" + std::to_string(server.port());
      const std::string in = serve::Client(address).model_metadata("m").inputs[0].name;
      std::atomic<bool> stop{false};
      std::atomic<long> served{0};
      std::vector<std::thread> clients;
      for (int c = 0; c < 4; ++c)
        clients.emplace_back([&] {
          serve::Client client(address);
          while (!stop) {
            client.infer("m", {{in, x}});
            ++served;
          }
        });
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      const long s = served;
      stop = true;
      for (auto& t : clients) t.join();
      server.shutdown();
      GraphModule gm = load(file);
      CompileOptions co;
      co.input_shapes = {shape};
      co.threads = 1;
      std::atomic<long> ran{0};
      std::atomic<bool> halt{false};
      std::vector<std::thread> workers;
      for (int w = 0; w < 2; ++w)
        workers.emplace_back([&] {
          set_threads(1);
          auto exe = compile("onednn-cpu", *gm, co);
          torch::NoGradGuard no_grad;
          for (int k = 0; k < 5; ++k) exe->run({x});
          while (!halt) {
            exe->run({x});
            ++ran;
          }
        });
      std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
      const long r = ran;
      halt = true;
      for (auto& t : workers) t.join();
      std::printf("%s: served %.1f req/s (2 executors, 4 clients) vs in-process %.1f req/s (2 threads): ratio %.3f\n",
                  file.c_str(), s / seconds, r / seconds, static_cast<double>(s) / static_cast<double>(r));
    }
  }
  return 0;
}
