// lmlab chat: an interactive conversation that keeps the KV cache between
// turns (only each new turn is prefilled), streaming replies, with commands
// to reset, change the system message, show statistics and save/load the
// conversation with its cache. Reads stdin line by line, so it also runs
// from a pipe.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "lmlab/chat_session.h"

namespace lmlab::cli {

namespace {

struct ChatCliOptions {
  ModelOptions model;
  GenerateOptions gen;
  std::string system;
  std::string load;
};

std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) { g_interrupted = true; }

constexpr const char* kHelp =
    "commands:\n"
    "  /reset        forget the conversation (the system message stays)\n"
    "  /system TEXT  set the system message and start over (/system alone clears it)\n"
    "  /stats        the last turn's statistics and the cache\n"
    "  /save FILE    save the conversation and its KV cache\n"
    "  /load FILE    load a saved conversation; its next turn skips the cached prefill\n"
    "  /help         this list\n"
    "  /quit         leave (or end of input)\n"
    "Ctrl-C stops a reply.\n";

void print_stats(const ChatSession& chat, const GenerationResult& last, bool any) {
  if (any) {
    const auto& s = last.stats;
    fmt::print("last turn: prompt {} tokens ({} from the cache, {} prefilled) at {:.1f} tok/s; "
               "{} generated at {:.1f} tok/s; first token after {:.3f} s; MLX peak memory {:.3f} GB\n",
               s.prompt_tokens, s.cached_tokens, s.prompt_tokens - s.cached_tokens, s.prompt_tps,
               s.generation_tokens, s.generation_tps, s.time_to_first_token, s.peak_memory_gb);
  }
  fmt::print("conversation: {} messages; KV cache: {} tokens, {:.1f} MiB\n", chat.messages().size(),
             chat.cached_ids().size(), chat.cache_bytes() / 1048576.0);
}

// Runs one command line; false means leave.
bool command(ChatSession& chat, const std::string& line, const GenerationResult& last, bool any) {
  const size_t sp = line.find(' ');
  const std::string cmd = line.substr(0, sp);
  std::string arg = sp == std::string::npos ? "" : line.substr(sp + 1);
  arg.erase(0, arg.find_first_not_of(' '));
  if (cmd == "/quit" || cmd == "/exit") return false;
  if (cmd == "/help") fmt::print("{}", kHelp);
  else if (cmd == "/reset") { chat.reset(); fmt::print("conversation reset\n"); }
  else if (cmd == "/system") { chat.set_system(arg); fmt::print("system message {}; conversation reset\n", arg.empty() ? "cleared" : "set"); }
  else if (cmd == "/stats") print_stats(chat, last, any);
  else if (cmd == "/save" || cmd == "/load") {
    if (arg.empty()) throw std::invalid_argument(fmt::format("[chat] {} needs a file name", cmd));
    if (cmd == "/save") chat.save(arg);
    else chat.load(arg);
    fmt::print("{} {} ({} messages, {} cached tokens)\n", cmd == "/save" ? "saved" : "loaded", arg,
               chat.messages().size(), chat.cached_ids().size());
  } else fmt::print("unknown command {} (/help lists them)\n", cmd);
  return true;
}

void run_chat(const ChatCliOptions& o) {
  check_usage([&] { validate(o.gen); });
  check_utf8(o.system, "--system");
  Context ctx = make_context(o.model, o.gen.sampler.seed);
  LoadedModel m = load(ctx, o.model);
  ChatSession chat(m, o.gen, o.system);
  if (!o.load.empty()) chat.load(o.load);
  const bool tty = isatty(STDIN_FILENO);
  if (tty) fmt::print("chatting with {} (/help for commands)\n", m.path);
  GenerationResult last;
  bool any = false;
  std::string line;
  while (true) {
    if (tty) fmt::print(">> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line[0] == '/') {
      try {
        if (!command(chat, line, last, any)) break;
      } catch (const std::exception& e) {
        // A bad command argument or file keeps the conversation going.
        fmt::print(stderr, "error: {}\n", e.what());
      }
      continue;
    }
    g_interrupted = false;
    auto old = std::signal(SIGINT, on_sigint);
    last = chat.send(line, [](const std::string& piece) {
      std::cout << piece << std::flush;
      return !g_interrupted.load();
    });
    std::signal(SIGINT, old);
    any = true;
    std::cout << "\n" << std::flush;
  }
}

}  // namespace

void setup_chat(CLI::App& app) {
  auto o = std::make_shared<ChatCliOptions>();
  o->gen.max_tokens = 512;
  o->model.add(app);
  app.add_option("-s,--system,--system-prompt", o->system, "system message");
  add_generation_options(app, o->gen);
  app.add_option("--load", o->load, "start from a conversation saved with /save");
  app.callback([o] { run_chat(*o); });
}

}  // namespace lmlab::cli
