// recur: the command-line client of recur-server.
//
//   recur generate "prompt" | -       stream a continuation to stdout
//   recur chat                         an interactive loop over one session
//   recur session create|info|close|fork|export|import
//   recur info | health | bench

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "base/files.h"
#include "base/program.h"
#include "base/sampling_defaults.h"
#include "base/status.h"
#include "client/chat.h"
#include "client/load_generator.h"
#include "client/recur_client.h"
#include "client/terminal_text.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "recur-server address, host:port (a host alone means port 50051)");
ABSL_FLAG(absl::Duration, timeout, absl::InfiniteDuration(),
          "Deadline for each call (e.g. 30s; default: none)");
ABSL_FLAG(std::string, tls_ca_file, "",
          "Connect with TLS, trusting the CA certificates in this PEM file");
ABSL_FLAG(bool, tls, false, "Connect with TLS, trusting the system's CA certificates");
ABSL_FLAG(std::string, tls_cert_file, "", "PEM client certificate, for mutual TLS");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls_cert_file");
ABSL_FLAG(std::string, token, "",
          "Bearer token for a server with --auth_token_file (default: $RECUR_TOKEN)");
ABSL_FLAG(std::string, session, "", "generate, chat: continue this session");
ABSL_FLAG(int64_t, max_tokens, 0, "generate: tokens to generate (0: the server's default)");
ABSL_FLAG(double, temperature, recur::kCliTemperature,
          "generate, chat: sampling temperature (0: greedy)");
ABSL_FLAG(int64_t, top_k, recur::kCliTopK,
          "generate, chat: sample from the k most likely tokens (0: all)");
ABSL_FLAG(double, top_p, recur::kCliTopP, "generate, chat: nucleus sampling mass in (0, 1]");
ABSL_FLAG(double, repetition_penalty, recur::kCliRepetitionPenalty,
          "generate, chat: > 1 discourages tokens already seen");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "generate, chat: sampling seed, the same seed giving the same text (default: random, "
          "shown by --usage)");
ABSL_FLAG(std::string, stop, "",
          "generate, chat: a stop sequence; repeat the flag for several (a sequence may hold "
          "commas)");
ABSL_FLAG(bool, usage, false, "generate: print the finish reason, seed and usage to stderr");
ABSL_FLAG(bool, raw, false,
          "generate, chat: write the model's control characters as they are (by default they "
          "are shown escaped on a terminal)");
ABSL_FLAG(std::string, file, "", "session export/import: the state file (default: stdout/stdin)");
ABSL_FLAG(int32_t, concurrency, 8, "bench: concurrent streams");
ABSL_FLAG(int32_t, requests, 32, "bench: requests in all");
ABSL_FLAG(std::string, prompt, "The ", "bench: prompt of every request");

namespace {

constexpr char kUsage[] =
    "Talks to a recur-server.\n\n"
    "  recur generate \"prompt\" [--session ID] [--max_tokens N] [--temperature T] ...\n"
    "  recur generate -           the prompt from stdin\n"
    "  recur chat [--session ID]  each line a turn of one session; Ctrl-C stops a reply\n"
    "  recur session create | info ID | close ID | fork ID | export ID [--file F] | import [--file "
    "F]\n"
    "  recur info                 the model and the server's capacity\n"
    "  recur health               the standard gRPC health check\n"
    "  recur bench                concurrent streams: tokens/s, time to first token, inter-token "
    "p50/p99\n\n"
    "Common flags: --server host:port (default 127.0.0.1:50051), --timeout DURATION (e.g. 30s; "
    "default: none), --token T (or $RECUR_TOKEN), --tls_ca_file F";

// TLS and the token from the flags (and $RECUR_TOKEN); an unreadable file is an error.
absl::StatusOr<recur::ConnectionOptions> ConnectionFromFlags() {
  recur::ConnectionOptions connection;
  connection.token = absl::GetFlag(FLAGS_token);
  if (const char* env = std::getenv("RECUR_TOKEN"); connection.token.empty() && env != nullptr) {
    connection.token = env;
  }
  const std::string ca = absl::GetFlag(FLAGS_tls_ca_file),
                    cert = absl::GetFlag(FLAGS_tls_cert_file),
                    key = absl::GetFlag(FLAGS_tls_key_file);
  connection.tls = absl::GetFlag(FLAGS_tls) || !ca.empty() || !cert.empty();
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("--tls_cert_file and --tls_key_file go together");
  }
  if (!ca.empty()) {
    RECUR_ASSIGN_OR_RETURN(connection.tls_root_certs, recur::ReadFileContents(ca));
  }
  if (!cert.empty()) {
    RECUR_ASSIGN_OR_RETURN(connection.tls_cert_chain, recur::ReadFileContents(cert));
    RECUR_ASSIGN_OR_RETURN(connection.tls_private_key, recur::ReadFileContents(key));
  }
  return connection;
}

void PrintSession(const recur::v1::Session& session) {
  std::printf(
      "session %s\n  tokens       %lld\n  state bytes  %lld\n  busy         %s\n  last used    "
      "%s\n",
      session.session_id().c_str(), static_cast<long long>(session.tokens()),
      static_cast<long long>(session.state_bytes()), session.busy() ? "yes" : "no",
      absl::FormatTime(
          absl::FromUnixSeconds(static_cast<int64_t>(session.last_used_unix_seconds())),
          absl::UTCTimeZone())
          .c_str());
}

const char* FinishName(recur::v1::FinishReason reason) {
  switch (reason) {
    case recur::v1::FINISH_REASON_LENGTH:
      return "length";
    case recur::v1::FINISH_REASON_STOP:
      return "stop";
    case recur::v1::FINISH_REASON_END_OF_SEQUENCE:
      return "end_of_sequence";
    case recur::v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    case recur::v1::FINISH_REASON_SHUTDOWN:
      return "shutdown";
    case recur::v1::FINISH_REASON_CONTEXT_FULL:
      return "context_full";
    default:
      return "unspecified";
  }
}

// Every value of a repeatable flag (`--name=V` or `--name V`): absl keeps only the last.
std::vector<std::string> RepeatedFlag(int argc, char** argv, const std::string& name) {
  std::vector<std::string> values;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    for (const std::string& dashes : {"--", "-"}) {
      if (arg == dashes + name && i + 1 < argc) {
        values.push_back(argv[++i]);
      } else if (absl::StartsWith(arg, dashes + name + "=")) {
        values.push_back(arg.substr(dashes.size() + name.size() + 1));
      }
    }
  }
  return values;
}

std::vector<std::string>& StopSequences() {
  static std::vector<std::string> stops;
  return stops;
}

// host:port, with gRPC's default port when only a host is given (`localhost`, `[::1]`).
std::string ServerAddress() {
  const std::string server = absl::GetFlag(FLAGS_server);
  if (absl::StartsWith(server, "unix:") || absl::StartsWith(server, "dns:")) return server;
  const bool bracketed = absl::StartsWith(server, "[");
  const bool has_port =
      bracketed ? server.find("]:") != std::string::npos : server.find(':') != std::string::npos;
  return has_port ? server : server + ":50051";
}

// --seed, or a random one when it is not given (reported by --usage).
uint64_t SeedFromFlags() { return absl::GetFlag(FLAGS_seed).value_or(recur::RandomSeed()); }

// Whether model text written to `file` is shown escaped (client/terminal_text.h).
bool EscapeFor(FILE* file) { return !absl::GetFlag(FLAGS_raw) && isatty(fileno(file)); }

recur::v1::GenerateRequest RequestFromFlags(const std::string& prompt, uint64_t seed) {
  recur::v1::GenerateRequest request;
  request.set_prompt(prompt);
  request.set_session_id(absl::GetFlag(FLAGS_session));
  if (absl::GetFlag(FLAGS_max_tokens) != 0) request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  auto* sampling = request.mutable_sampling();
  sampling->set_temperature(absl::GetFlag(FLAGS_temperature));
  sampling->set_top_k(absl::GetFlag(FLAGS_top_k));
  sampling->set_top_p(absl::GetFlag(FLAGS_top_p));
  sampling->set_repetition_penalty(absl::GetFlag(FLAGS_repetition_penalty));
  sampling->set_seed(seed);
  for (const auto& stop : StopSequences()) request.add_stop(stop);
  return request;
}

int Generate(recur::RecurClient& client, const std::vector<std::string>& args,
             recur::Cancellation& cancellation) {
  if (args.size() > 1) return recur::Fail("generate takes one prompt argument (quote it)");
  std::string prompt = args.empty() ? "" : args[0];
  if (prompt == "-") {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  const uint64_t seed = SeedFromFlags();
  const bool escape = EscapeFor(stdout);
  recur::v1::GenerateResponse last;
  bool line_open = true;  // the text so far does not end a line (nor does an empty one)
  auto status = client.Generate(
      RequestFromFlags(prompt, seed),
      [&](const recur::v1::GenerateResponse& message) {
        const std::string text = escape ? recur::EscapeForTerminal(message.text()) : message.text();
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
        if (!text.empty()) line_open = text.back() != '\n';
        last = message;
      },
      &cancellation);
  // Whatever comes next on stderr (the usage line, an error) starts a line of its own instead of
  // running on from the text on a terminal.
  if (line_open) std::printf("\n");
  std::fflush(stdout);
  if (!status.ok()) return recur::FailWithCode(status);
  if (absl::GetFlag(FLAGS_usage)) {
    const auto& u = last.usage();
    std::fprintf(
        stderr,
        "finish: %s, seed %llu, prompt tokens %lld (%lld cached), generated %lld, first token "
        "%.3f s, total %.3f s\n",
        FinishName(last.finish_reason()), static_cast<unsigned long long>(seed),
        static_cast<long long>(u.prompt_tokens()), static_cast<long long>(u.cached_prompt_tokens()),
        static_cast<long long>(u.generated_tokens()), u.time_to_first_token_seconds(),
        u.duration_seconds());
  }
  return last.finish_reason() == recur::v1::FINISH_REASON_CANCELLED
             ? recur::Fail("the generation was cancelled")
             : 0;
}

int Session(recur::RecurClient& client, const std::vector<std::string>& args) {
  if (args.empty())
    return recur::Fail("session needs a command: create, info, close, fork, export or import");
  const std::string& command = args[0];
  const bool takes_id =
      command == "info" || command == "close" || command == "fork" || command == "export";
  if (takes_id && args.size() != 2)
    return recur::Fail(absl::StrCat("session ", command, " takes a session id"));
  if (!takes_id && args.size() != 1)
    return recur::Fail(absl::StrCat("session ", command, " takes no arguments"));
  if (command == "create" || command == "info" || command == "fork" || command == "import") {
    absl::StatusOr<recur::v1::Session> session;
    if (command == "create") session = client.CreateSession();
    if (command == "info") session = client.GetSession(args[1]);
    if (command == "fork") session = client.ForkSession(args[1]);
    if (command == "import") {
      const std::string path = absl::GetFlag(FLAGS_file);
      std::string bytes;
      if (path.empty()) {
        bytes.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
      } else {
        std::ifstream in(path, std::ios::binary);
        if (!in) return recur::Fail(absl::StrCat("cannot read ", path));
        bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      }
      session = client.ImportSession(bytes);
    }
    if (!session.ok()) return recur::FailWithCode(session.status());
    if (command == "create" || command == "fork" || command == "import") {
      std::printf("%s\n", session->session_id().c_str());
    } else {
      PrintSession(*session);
    }
    return 0;
  }
  if (command == "close") {
    auto status = client.CloseSession(args[1]);
    return status.ok() ? 0 : recur::FailWithCode(status);
  }
  if (command == "export") {
    auto bytes = client.ExportSession(args[1]);
    if (!bytes.ok()) return recur::FailWithCode(bytes.status());
    const std::string path = absl::GetFlag(FLAGS_file);
    if (path.empty()) {
      std::fwrite(bytes->data(), 1, bytes->size(), stdout);
    } else {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
      out.close();
      if (!out) return recur::Fail(absl::StrCat("cannot write ", path));
    }
    return 0;
  }
  return recur::Fail(absl::StrCat("unknown session command '", command, "'"));
}

int Info(recur::RecurClient& client) {
  auto info = client.GetModelInfo();
  if (!info.ok()) return recur::FailWithCode(info.status());
  std::printf("attention            %s\n", info->attention().c_str());
  std::printf("tokenizer            %s, %lld tokens\n", info->tokenizer().c_str(),
              static_cast<long long>(info->vocab_size()));
  std::printf(
      "size                 d_model %lld, %lld layers, %lld heads, d_ff %lld, %lld parameters\n",
      static_cast<long long>(info->d_model()), static_cast<long long>(info->num_layers()),
      static_cast<long long>(info->num_heads()), static_cast<long long>(info->d_ff()),
      static_cast<long long>(info->parameters()));
  if (info->attention() == "linear") {
    std::printf("state per session    %lld bytes (constant)\n",
                static_cast<long long>(info->state_bytes_per_session()));
  } else {
    std::printf("key/value cache      %lld bytes per token\n",
                static_cast<long long>(info->kv_cache_bytes_per_token()));
  }
  std::printf("sessions             %lld in use, %lld free of %lld\n",
              static_cast<long long>(info->sessions_in_use()),
              static_cast<long long>(info->sessions_free()),
              static_cast<long long>(info->max_sessions()));
  std::printf("state bytes in use   %lld\n", static_cast<long long>(info->state_bytes_in_use()));
  std::printf("limits               max_tokens %lld, prompt %lld tokens\n",
              static_cast<long long>(info->max_tokens()),
              static_cast<long long>(info->max_prompt_tokens()));
  std::printf("device               %s\n", info->device().c_str());
  return 0;
}

int Bench(const recur::ConnectionOptions& connection) {
  recur::LoadOptions options;
  options.server = ServerAddress();
  options.connection = connection;
  options.concurrency = absl::GetFlag(FLAGS_concurrency);
  options.requests = absl::GetFlag(FLAGS_requests);
  if (options.concurrency < 1 || options.requests < 1)
    return recur::Fail("--concurrency and --requests must be >= 1");
  options.request = RequestFromFlags(absl::GetFlag(FLAGS_prompt), SeedFromFlags());
  // A table of zeros says nothing about a server that is not there: check it answers first.
  recur::RecurClient probe(options.server, absl::Seconds(10), connection);
  if (auto health = probe.Health(); !health.ok()) {
    return recur::FailWithCode(absl::Status(
        health.status().code(),
        absl::StrCat("could not connect to ", options.server, ": ", health.status().message())));
  }
  const recur::LoadReport r = recur::RunLoad(options);
  std::printf("requests %lld (%lld failed) in %.2f s, %d concurrent\n",
              static_cast<long long>(r.requests), static_cast<long long>(r.failed), r.seconds,
              options.concurrency);
  std::printf("tokens %lld, %.1f tokens/s\n", static_cast<long long>(r.tokens),
              r.tokens_per_second);
  std::printf("time to first token  p50 %.2f ms  p99 %.2f ms\n", r.ttft_p50 * 1e3,
              r.ttft_p99 * 1e3);
  std::printf("inter-token latency  p50 %.2f ms  p99 %.2f ms\n", r.inter_token_p50 * 1e3,
              r.inter_token_p99 * 1e3);
  if (r.failed > 0)
    return recur::Fail(absl::StrCat(r.failed, " requests failed, the first with ", r.first_error));
  return 0;
}

// Ctrl-C cancels the stream in progress (its session keeps the text so far); with none, it ends
// the program, except in chat, where it only ever stops a reply. SIGINT is blocked in every thread
// (before gRPC starts any) and taken by a thread of its own.
void RouteCtrlCTo(recur::Cancellation& cancellation, bool exit_when_idle) {
  sigset_t interrupt;
  sigemptyset(&interrupt);
  sigaddset(&interrupt, SIGINT);
  pthread_sigmask(SIG_BLOCK, &interrupt, nullptr);
  std::thread([interrupt, &cancellation, exit_when_idle] {
    for (int signal = 0;;) {
      if (sigwait(&interrupt, &signal) != 0) continue;
      if (!cancellation.Cancel() && exit_when_idle) std::_Exit(128 + SIGINT);
    }
  }).detach();
}

int Chat(recur::RecurClient& client, recur::Cancellation& cancellation) {
  recur::ChatOptions options;
  options.turn = RequestFromFlags("", SeedFromFlags());
  options.session_id = absl::GetFlag(FLAGS_session);
  options.escape = EscapeFor(stdout);
  options.prompt = isatty(STDIN_FILENO);
  return recur::RunChat(client, options, cancellation, std::cin, stdout, stderr);
}

}  // namespace

int main(int argc, char** argv) {
  StopSequences() = RepeatedFlag(argc, argv, "stop");
  std::vector<char*> positional = recur::ParseProgramFlags(argc, argv, kUsage);
  std::vector<std::string> args(positional.begin() + 1, positional.end());
  if (args.empty()) return recur::Fail(absl::StrCat("no command given\n\n", kUsage));
  const std::string command = args[0];
  args.erase(args.begin());

  auto connection = ConnectionFromFlags();
  if (!connection.ok()) return recur::Fail(connection.status());
  // Before the client: its channel starts gRPC's threads, which must inherit the signal mask.
  static recur::Cancellation cancellation;
  RouteCtrlCTo(cancellation, /*exit_when_idle=*/command != "chat");
  recur::RecurClient client(ServerAddress(), absl::GetFlag(FLAGS_timeout), *connection);
  if (command == "generate") return Generate(client, args, cancellation);
  if (command == "chat") {
    if (!args.empty()) return recur::Fail("chat takes no arguments (each line of input is a turn)");
    return Chat(client, cancellation);
  }
  if (command == "session") return Session(client, args);
  if (!args.empty()) return recur::Fail(absl::StrCat(command, " takes no arguments"));
  if (command == "info") return Info(client);
  if (command == "bench") return Bench(*connection);
  if (command == "health") {
    auto health = client.Health();
    if (!health.ok()) return recur::FailWithCode(health.status());
    std::printf("%s\n", health->c_str());
    return *health == "SERVING" ? 0 : 1;
  }
  return recur::Fail(absl::StrCat("unknown command '", command, "'\n\n", kUsage));
}
