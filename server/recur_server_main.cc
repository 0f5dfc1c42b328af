// recur-server: serves a recur-train checkpoint over gRPC (recur.v1.Recur, health, reflection),
// with Prometheus metrics on /metrics.

#include <malloc.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/program.h"
#include "base/torch_runtime.h"
#include "glog/logging.h"
#include "model/checkpoint.h"
#include "model/weight_format.h"
#include "server/server.h"

ABSL_FLAG(std::string, checkpoint, "", "Checkpoint directory written by recur-train (required)");
ABSL_FLAG(std::string, weights, "auto",
          "How the linear layers' weights are held: auto (bf16-output on CPUs with AVX512-BF16 "
          "or AMX, else fp32), fp32, bf16 (half the bytes, oneDNN's bfloat16 products), "
          "bf16-output (only the output layer) or int8 (per-row quantised; slower than fp32 with "
          "Debian's LibTorch); docs/performance.md");
ABSL_FLAG(std::string, host, "127.0.0.1", "Address to listen on (0.0.0.0 for every interface)");
ABSL_FLAG(int32_t, port, 50051, "gRPC port (0 picks a free one)");
ABSL_FLAG(int32_t, metrics_port, 9464,  // not 9090, Prometheus's own port
          "Port for Prometheus /metrics (-1: none; 0 picks a free one)");
ABSL_FLAG(int32_t, http_port, -1,
          "Port for the OpenAI-compatible HTTP API: POST /v1/completions, GET /v1/models, "
          "GET /health, /v1/sessions (-1: none; 0 picks a free one)");
ABSL_FLAG(std::string, served_model_name, "",
          "The model's id in the HTTP API (default: the checkpoint directory's name)");
ABSL_FLAG(int64_t, max_sessions, 64, "State slots: open sessions plus running one-off requests");
ABSL_FLAG(
    int64_t, state_memory_mb, 0,
    "Linear attention: size the slots from this memory budget instead of --max_sessions (0: off)");
ABSL_FLAG(int64_t, max_queue, 256, "Requests waiting for a slot; past this, RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_tokens, 4096, "Cap on a request's max_tokens");
ABSL_FLAG(int64_t, default_max_tokens, 128, "max_tokens when a request leaves it unset");
ABSL_FLAG(int64_t, max_prompt_tokens, 32768, "Longest prompt accepted, in tokens");
ABSL_FLAG(int64_t, prefill_chunk, 256,
          "Prompt tokens fed per engine step, so long prompts do not stall streams");
ABSL_FLAG(int64_t, max_context_tokens, 8192,
          "Softmax attention: the most tokens one session's context may hold (its key/value "
          "cache grows with the text)");
ABSL_FLAG(int64_t, kv_cache_memory_mb, 2048,
          "Softmax attention: the key/value bytes all sessions and running requests may hold");
ABSL_FLAG(int64_t, prefix_cache_mb, 256,
          "Linear attention: memory for the prefix-state cache, which keeps the state at the end "
          "of each prompt so a request sharing that beginning feeds only the rest (0: off)");
ABSL_FLAG(int64_t, prefix_cache_interval, 512,
          "The prefix cache also keeps a long prompt's state every this many tokens");
ABSL_FLAG(absl::Duration, session_ttl, absl::Minutes(30), "Sessions idle this long are closed");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain: serve gRPC over TLS (with --tls_key_file)");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificates: require clients to present a certificate they signed (mutual TLS)");
ABSL_FLAG(std::string, auth_token_file, "",
          "Bearer tokens, one 'token tenant' per line: calls without a valid token are "
          "UNAUTHENTICATED, and each tenant sees only its own sessions");
ABSL_FLAG(int64_t, malloc_mmap_threshold_kb, 128,
          "Allocations from this size are mmapped and returned to the system on free, so resident "
          "memory stays flat (0: glibc's default, which raises the threshold as blocks are freed)");
ABSL_FLAG(std::string, session_dir, "",
          "Keep sessions on disk here, so they survive restarts: saved on SIGTERM after the "
          "drain, restored at start-up; replicas may share it (each writes <dir>/<replica>/, and "
          "takes a session it is asked for from another replica's subdirectory)");
ABSL_FLAG(std::string, replica_name, "",
          "This replica's subdirectory of --session_dir (default: the host name)");
ABSL_FLAG(absl::Duration, session_sync_interval, absl::ZeroDuration(),
          "With --session_dir: also save changed sessions this often, so a crash loses at most "
          "this much (0: only on SIGTERM)");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGTERM, how long in-flight streams may run before they are cancelled");

namespace {

// What protects the server, said once at start-up so an operator sees an open server at once.
std::string SecuritySummary(const recur::SecurityOptions& security,
                            const recur::Authenticator& authenticator) {
  std::string transport = security.tls() ? (security.tls_client_ca_file.empty()
                                                ? "TLS"
                                                : "mutual TLS (client certificates required)")
                                         : "plaintext (no TLS)";
  std::string auth = authenticator.enabled()
                         ? absl::StrCat("bearer tokens for ", authenticator.tenants(), " tenants")
                         : "no authentication: any client can reach every session";
  std::string summary = absl::StrCat("security: ", transport, ", ", auth);
  if (!security.tls() && !authenticator.enabled()) {
    absl::StrAppend(&summary, " (fit for loopback; see --tls_cert_file and --auth_token_file)");
  }
  return summary;
}

// The prefix cache as the engine set it up (off for softmax models whatever the flag says).
std::string PrefixCacheSummary(const recur::EngineInfo& info) {
  if (info.prefix_cache_capacity_bytes == 0) return "off";
  return absl::StrCat(info.prefix_cache_capacity_bytes >> 20, " MiB");
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

}  // namespace

int main(int argc, char** argv) {
  recur::InitProgram(
      argc, argv,
      "Serves a checkpoint over gRPC: streaming generation with constant-size sessions.\n"
      "Example: recur-server --checkpoint runs/demo --port 50051 --metrics_port 9464");
  // glibc raises its mmap threshold each time a large block is freed (up to 32 MiB); tensors of a
  // few MB then come from the heap, whose holes are not given back: a 15-minute soak grew from 450
  // to 530 MiB in steps. A fixed threshold (which stops the raising) keeps them in mmap, returned
  // on free: the same soak held 290-310 MiB (docs/security.md).
  if (const int64_t kb = absl::GetFlag(FLAGS_malloc_mmap_threshold_kb); kb > 0) {
    mallopt(M_MMAP_THRESHOLD, static_cast<int>(kb * 1024));
  }
  // One core is left to gRPC: oversubscribed cores stall LibTorch's parallel regions and inflate
  // tail latency.
  if (auto s = recur::ApplyThreadsFlag(/*reserved_cores=*/1); !s.ok()) return recur::Fail(s);
  // SIGTERM and SIGINT are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (absl::GetFlag(FLAGS_checkpoint).empty()) return recur::Fail("--checkpoint is required");
  auto device = recur::DeviceFlag();
  if (!device.ok()) return recur::Fail(device.status());
  auto checkpoint = recur::LoadCheckpoint(absl::GetFlag(FLAGS_checkpoint), *device);
  if (!checkpoint.ok()) return recur::Fail(checkpoint.status());
  auto weights = recur::ParseWeightFormat(absl::GetFlag(FLAGS_weights), *device);
  if (!weights.ok()) return recur::Fail(weights.status());
  const bool bf16 = *weights == recur::WeightFormat::kBFloat16 ||
                    *weights == recur::WeightFormat::kBFloat16Output;
  if (bf16 && device->is_cpu() && !recur::CpuHasNativeBFloat16()) {
    LOG(WARNING) << "--weights " << recur::WeightFormatName(*weights)
                 << ": this CPU has no AVX512-BF16, so bfloat16 products are emulated and slower "
                    "than fp32";
  }
  if (auto s = recur::SetWeightFormat(checkpoint->model, *weights); !s.ok()) {
    return recur::Fail(s);
  }

  recur::ServerOptions options;
  options.address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  options.metrics_host = absl::GetFlag(FLAGS_host);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.model_name = absl::GetFlag(FLAGS_served_model_name);
  if (options.model_name.empty()) {
    options.model_name =
        std::filesystem::path(absl::GetFlag(FLAGS_checkpoint)).lexically_normal().filename();
    if (options.model_name.empty()) {
      options.model_name = std::filesystem::path(absl::GetFlag(FLAGS_checkpoint))
                               .lexically_normal()
                               .parent_path()
                               .filename();
    }
  }
  options.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.security.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.security.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.security.auth_token_file = absl::GetFlag(FLAGS_auth_token_file);
  options.persistence.directory = absl::GetFlag(FLAGS_session_dir);
  options.persistence.replica = absl::GetFlag(FLAGS_replica_name);
  if (options.persistence.replica.empty()) options.persistence.replica = HostName();
  options.persistence.sync_interval = absl::GetFlag(FLAGS_session_sync_interval);
  recur::EngineOptions& engine = options.engine;
  engine.device = *device;
  engine.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  engine.max_queue = absl::GetFlag(FLAGS_max_queue);
  engine.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  engine.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
  engine.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  engine.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  engine.session_ttl = absl::GetFlag(FLAGS_session_ttl);
  engine.max_context_tokens = absl::GetFlag(FLAGS_max_context_tokens);
  engine.kv_cache_budget_bytes = absl::GetFlag(FLAGS_kv_cache_memory_mb) << 20;
  engine.prefix_cache_bytes = absl::GetFlag(FLAGS_prefix_cache_mb) << 20;
  engine.prefix_cache_interval = absl::GetFlag(FLAGS_prefix_cache_interval);
  const int64_t budget_mb = absl::GetFlag(FLAGS_state_memory_mb);
  if (budget_mb > 0) {
    if (checkpoint->config.attention != recur::AttentionKind::kLinear) {
      return recur::Fail(
          "--state_memory_mb sizes constant-size linear-attention slots; use --max_sessions for "
          "softmax, with --kv_cache_memory_mb and --max_context_tokens");
    }
    engine.max_sessions = budget_mb * (1 << 20) / checkpoint->config.SlotBytes();
  }
  if (auto s = engine.Validate(); !s.ok()) return recur::Fail(s);
  const int64_t slot_bytes = checkpoint->config.SlotBytes();

  auto server = recur::RecurServer::Start(*std::move(checkpoint), options);
  if (!server.ok()) return recur::Fail(server.status());
  LOG(INFO) << "recur-server listening on " << absl::GetFlag(FLAGS_host) << ":" << (*server)->port()
            << ", weights " << recur::WeightFormatName(*weights)
            << (absl::GetFlag(FLAGS_weights) == "auto" ? " (auto)" : "") << ", "
            << engine.max_sessions << " session slots"
            << (slot_bytes > 0 ? absl::StrCat(" of ", slot_bytes, " bytes") : std::string())
            << ", prefix cache " << PrefixCacheSummary((*server)->engine().Info())
            << ", metrics on "
            << ((*server)->metrics_port() >= 0
                    ? absl::StrCat(":", (*server)->metrics_port(), "/metrics")
                    : std::string("(off)"))
            << ((*server)->http_port() >= 0
                    ? absl::StrCat(", HTTP API on :", (*server)->http_port(), " (model '",
                                   options.model_name, "')")
                    : std::string());
  LOG(INFO) << SecuritySummary(options.security, (*server)->authenticator());

  int signal = 0;
  sigwait(&signals, &signal);
  LOG(INFO) << "signal " << signal << ": draining for up to "
            << absl::FormatDuration(absl::GetFlag(FLAGS_drain_timeout));
  (*server)->Shutdown(absl::GetFlag(FLAGS_drain_timeout));
  LOG(INFO) << "stopped";
  return 0;
}
