// The bad-input corpus: broken model files (GGUF and safetensors, truncated or
// corrupted), broken configs and tokenizers, a tokenizer from another model,
// absurd flags, invalid UTF-8, over-long prompts and unwritable outputs, each
// run through the lmlab binary. For every case the exit code and the one-line
// message are asserted; no run may crash (a signal), hang (a time limit) or
// leave a partial file behind. The inputs are made here from the default model
// and the test fixtures, plus the small files in tests/bad_inputs/.
//
// LMLAB_BAD_INPUTS_TABLE=path writes the results as the markdown table of
// docs/testing.md.
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include <nlohmann/json.hpp>

#include "lmlab/io.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace fs = std::filesystem;

struct Case {
  const char* name;
  // Command line after `lmlab`: {gguf} and {model} are the model file and
  // folder setup made, {dir} the case's folder, {out} an output that must not
  // appear, {tok} another model's tokenizer, {long} the 9k-token prompt.
  const char* args;
  int exit;
  const char* message;  // a part of the one error line
  const char* setup = "";  // how the inputs are made (see make_inputs)
  const char* stdin_file = "";  // a file of tests/bad_inputs/ or made by setup, fed on stdin
};

// ---------------------------------------------------------------- inputs

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

std::string le64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string le32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
std::string gguf_str(const std::string& s) { return le64(s.size()) + s; }

// A GGUF header written by hand: version 3, then the given counts and body.
std::string gguf(uint64_t tensors, uint64_t kvs, const std::string& body) {
  return "GGUF" + le32(3) + le64(tensors) + le64(kvs) + body;
}

const fs::path& default_gguf() {
  static const fs::path p = default_model_path_for_tests();
  return p;
}

// The default GGUF's bytes up to `n` (its header is about 1.3 MB).
std::string gguf_head(size_t n) {
  std::ifstream f(default_gguf(), std::ios::binary);
  std::string s(n, '\0');
  f.read(s.data(), static_cast<std::streamsize>(n));
  s.resize(static_cast<size_t>(f.gcount()));
  return s;
}

// A model folder like the MLX fixture, with its files linked (not copied)
// so that one of them can be replaced by a broken one.
fs::path model_dir(const fs::path& dir) {
  const fs::path src = fixtures_dir() / "model" / "smollm2-mlx-q4";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src)) fs::create_symlink(e.path(), dir / e.path().filename());
  return dir;
}

void replace(const fs::path& dir, const std::string& name, const std::string& text) {
  fs::remove(dir / name);
  write(dir / name, text);
}

// The fixture's config.json with `key` set to `value` (JSON text).
std::string config_with(const std::string& key, const std::string& value) {
  nlohmann::json c = nlohmann::json::parse(slurp(fixtures_dir() / "model" / "smollm2-mlx-q4" / "config.json"));
  c[key] = nlohmann::json::parse(value);
  if (key == "quantization") c.erase("quantization_config");
  return c.dump(2);
}

// Makes the inputs a case's setup names, in `dir`.
void make_inputs(const std::string& setup, const fs::path& dir) {
  static const std::map<std::string, std::function<void(const fs::path&)>> makers = {
      {"text", [](const fs::path& d) { write(d / "model.gguf", "this is not a model\n"); }},
      {"empty", [](const fs::path& d) { write(d / "model.gguf", ""); }},
      {"gguf-cut-header", [](const fs::path& d) { write(d / "model.gguf", gguf_head(200000)); }},
      {"gguf-cut-data",
       [](const fs::path& d) {
         const uint64_t start = io::read_gguf(default_gguf()).data_offset;
         write(d / "model.gguf", gguf_head(start + 4096));
       }},
      {"gguf-version",
       [](const fs::path& d) {
         std::string s = gguf_head(4096);
         s.replace(4, 4, le32(7));
         write(d / "model.gguf", s);
       }},
      {"gguf-counts", [](const fs::path& d) { write(d / "model.gguf", gguf(uint64_t(1) << 40, 0, "")); }},
      {"gguf-huge-array",
       [](const fs::path& d) {  // an array of 2^40 uint32 in a 50-byte file
         write(d / "model.gguf", gguf(0, 1, gguf_str("a") + le32(9) + le32(4) + le64(uint64_t(1) << 40)));
       }},
      {"gguf-huge-string",
       [](const fs::path& d) { write(d / "model.gguf", gguf(0, 1, le64(uint64_t(1) << 62) + "key")); }},
      {"gguf-offset",
       [](const fs::path& d) {  // a tensor whose offset would wrap past 2^64
         std::string t = gguf_str("x.weight") + le32(1) + le64(32) + le32(0) + le64(~uint64_t(0) - 16);
         write(d / "model.gguf", gguf(1, 0, t));
       }},
      {"dir", [](const fs::path& d) { model_dir(d / "model"); }},
      {"st-cut",
       [](const fs::path& d) {
         fs::path m = model_dir(d / "model");
         std::ifstream f(m / "model.safetensors", std::ios::binary);
         std::string s(1 << 20, '\0');
         f.read(s.data(), s.size());
         replace(m, "model.safetensors", s);
       }},
      {"st-header-len",
       [](const fs::path& d) { replace(model_dir(d / "model"), "model.safetensors", le64(1ull << 40) + "{}"); }},
      {"st-not-json",
       [](const fs::path& d) { replace(model_dir(d / "model"), "model.safetensors", le64(6) + "{nope!"); }},
      {"st-empty", [](const fs::path& d) { replace(model_dir(d / "model"), "model.safetensors", ""); }},
      {"st-overlap",
       [](const fs::path& d) {
         std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
         replace(model_dir(d / "model"), "model.safetensors", le64(h.size()) + h + std::string(12, '\0'));
       }},
      {"no-config", [](const fs::path& d) { fs::remove(model_dir(d / "model") / "config.json"); }},
      {"no-weights", [](const fs::path& d) { fs::remove(model_dir(d / "model") / "model.safetensors"); }},
      {"config-not-json", [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", "{\"model_type\": "); }},
      {"config-no-type",
       [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", config_with("model_type", "null")); }},
      {"config-type",
       [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", config_with("model_type", "\"gptj\"")); }},
      {"config-layers",
       [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", config_with("num_hidden_layers", "2")); }},
      {"config-eps",
       [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", config_with("rms_norm_eps", "-1")); }},
      {"config-hidden",
       [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", config_with("hidden_size", "-576")); }},
      {"config-vocab-huge",
       [](const fs::path& d) {
         replace(model_dir(d / "model"), "config.json", config_with("vocab_size", "1000000000"));
       }},
      {"config-vocab",
       [](const fs::path& d) { replace(model_dir(d / "model"), "config.json", config_with("vocab_size", "49153")); }},
      {"config-bits",
       [](const fs::path& d) {
         replace(model_dir(d / "model"), "config.json",
                 config_with("quantization", R"({"group_size": 32, "bits": 7})"));
       }},
      {"config-group-type",
       [](const fs::path& d) {
         replace(model_dir(d / "model"), "config.json",
                 config_with("quantization", R"({"group_size": "32", "bits": 4})"));
       }},
      {"config-tied-type",
       [](const fs::path& d) {
         replace(model_dir(d / "model"), "config.json", config_with("tie_word_embeddings", "\"yes\""));
       }},
      {"tokenizer-not-json",
       [](const fs::path& d) { replace(model_dir(d / "model"), "tokenizer.json", "{\"model\": [1, 2"); }},
      {"tokenizer-no-model",
       [](const fs::path& d) { replace(model_dir(d / "model"), "tokenizer.json", R"({"added_tokens": []})"); }},
      {"no-tokenizer", [](const fs::path& d) { fs::remove(model_dir(d / "model") / "tokenizer.json"); }},
      {"tokenizer-other",
       [](const fs::path& d) {
         fs::path m = model_dir(d / "model");
         for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
           fs::remove(m / f);
           fs::copy_file(fixtures_dir() / "tokenizer" / "llama3" / f, m / f);
         }
       }},
      {"template",
       [](const fs::path& d) {
         replace(model_dir(d / "model"), "tokenizer_config.json", R"({"chat_template": "{% for m in %}"})");
         fs::remove(d / "model" / "chat_template.jinja");
       }},
      {"long-prompt",
       [](const fs::path& d) {
         std::string p;
         for (int i = 0; i < 9000; ++i) p += "word ";
         write(d / "prompt.txt", p);
       }},
      {"long-8k",
       [](const fs::path& d) {
         std::string p;
         for (int i = 0; i < 8000; ++i) p += "word ";
         write(d / "prompt.txt", p);
       }},
      {"bad-utf8", [](const fs::path& d) { write(d / "prompt.txt", "caf\xe9 au lait\n"); }},
      {"existing-out", [](const fs::path& d) { fs::create_directories(d / "out"); }},
      {"file-parent", [](const fs::path& d) { write(d / "file", "x"); }},
  };
  for (size_t a = 0, b; a < setup.size(); a = b + 1) {
    b = setup.find(' ', a);
    if (b == std::string::npos) b = setup.size();
    const std::string step = setup.substr(a, b - a);
    if (step.empty()) continue;
    auto it = makers.find(step);
    if (it == makers.end()) throw std::invalid_argument("bad-input corpus: unknown setup " + step);
    it->second(dir);
  }
}

// ---------------------------------------------------------------- cases

const Case kCases[] = {
    // Model files
    {"GGUF: not a GGUF file", "generate --model {gguf} -p hi", 1, "not a GGUF file (bad magic)", "text"},
    {"GGUF: empty file", "generate --model {gguf} -p hi", 1, "bad magic", "empty"},
    {"GGUF: truncated in the header", "generate --model {gguf} -p hi", 1,
     "array of 49152 elements does not fit in the file", "gguf-cut-header"},
    {"GGUF: truncated in the tensor data", "inspect --model {gguf}", 1, "truncated (incomplete download?)",
     "gguf-cut-data"},
    {"GGUF: unknown version", "inspect --model {gguf}", 1, "unsupported GGUF version 7", "gguf-version"},
    {"GGUF: 2^40 tensors", "inspect --model {gguf}", 1, "implausible tensor or key count", "gguf-counts"},
    {"GGUF: array longer than the file", "inspect --model {gguf}", 1, "does not fit in the file", "gguf-huge-array"},
    {"GGUF: 2^62-byte string", "inspect --model {gguf}", 1, "string length 4611686018427387904 is implausible",
     "gguf-huge-string"},
    {"GGUF: tensor offset wrapping past 2^64", "inspect --model {gguf}", 1, "ends past the end of the file",
     "gguf-offset"},
    {"safetensors: truncated", "generate --model {model} -p hi", 1, "the file is truncated (incomplete download?)",
     "st-cut"},
    {"safetensors: header longer than the file", "inspect --model {model}", 1, "the header claims 1099511627776 bytes",
     "st-header-len"},
    {"safetensors: header not JSON", "inspect --model {model}", 1, "the header is not JSON", "st-not-json"},
    {"safetensors: empty file", "inspect --model {model}", 1, "too short for a header", "st-empty"},
    {"safetensors: overlapping tensors", "inspect --model {model}", 1, "tensors 'a' and 'b' overlap", "st-overlap"},
    {"model folder without config.json", "inspect --model {model}", 1, "no config.json", "no-config"},
    {"model folder without weights", "inspect --model {model}", 1, "no model*.safetensors files", "no-weights"},
    {"missing model", "generate --model /nonexistent/model.gguf -p hi", 1, "model not found"},
    // Configs
    {"config.json: not JSON", "inspect --model {model}", 1, "invalid JSON", "config-not-json"},
    {"config.json: no model_type", "inspect --model {model}", 1, "missing or non-string 'model_type'", "config-no-type"},
    {"config.json: unknown model_type", "inspect --model {model}", 1, "model_type 'gptj' is not supported",
     "config-type"},
    {"config.json: num_hidden_layers 2 on 30 layers", "generate --model {model} -p hi", 1,
     "num_hidden_layers = 2 but the weights hold 30 layers", "config-layers"},
    {"config.json: rms_norm_eps -1", "generate --model {model} -p hi", 1, "'rms_norm_eps' = -1 must be a number in (0, 1)",
     "config-eps"},
    {"config.json: negative hidden_size", "inspect --model {model}", 1, "'hidden_size' = -576 is out of range",
     "config-hidden"},
    {"config.json: vocab_size 10^9", "inspect --model {model}", 1, "'vocab_size' = 1000000000 is out of range",
     "config-vocab-huge"},
    {"config.json: vocab_size not the embedding's", "inspect --model {model}", 1, "vocab_size", "config-vocab"},
    {"config.json: 7-bit quantization", "inspect --model {model}", 1, "unsupported quantization bits=7", "config-bits"},
    {"config.json: group_size a string", "inspect --model {model}", 1, "'group_size' = \"32\" is not a small integer",
     "config-group-type"},
    {"config.json: tie_word_embeddings a string", "inspect --model {model}", 1,
     "'tie_word_embeddings' = \"yes\" must be true or false", "config-tied-type"},
    // Tokenizers
    {"tokenizer.json: not JSON", "generate --model {model} -p hi", 1, "invalid JSON", "tokenizer-not-json"},
    {"tokenizer.json: no model", "generate --model {model} -p hi", 1, "missing field 'model'", "tokenizer-no-model"},
    {"model folder without tokenizer.json", "generate --model {model} -p hi", 1, "no tokenizer.json", "no-tokenizer"},
    {"tokenizer of another model (generate)", "generate --model {model} -p hi", 1,
     "is outside the model's vocabulary of 49152 ids", "tokenizer-other"},
    {"tokenizer of another model (predict)", "predict --model {model} -p hi", 1, "outside the model's vocabulary",
     "tokenizer-other"},
    {"tokenizer of another model (attention)", "attention --model {model} -p hi", 1, "outside the model's vocabulary",
     "tokenizer-other"},
    {"tokenizer of another model (surgery --save)", "surgery zero model.norm --save {out} --tokenizer {tok}", 1,
     "has 128256 tokens but the model's vocabulary has 49152"},
    {"chat template that does not parse", "generate --model {model} -p hi", 1, "chat template", "template"},
    // Flags
    {"--temp nan", "generate -p hi --temp nan", 2, "temp nan: must be a finite number >= 0"},
    {"--top-p 0", "generate -p hi --top-p 0", 2, "top_p 0: must be in (0, 1]"},
    {"--max-tokens -3", "generate -p hi --max-tokens -3", 2, "max_tokens -3: must be >= 0, or -1"},
    {"--max-tokens 99999999999", "generate -p hi --max-tokens 99999999999", 2,
     "--max-tokens: '99999999999' is not an integer in range"},
    {"--repetition-context-size -5", "generate -p hi --repetition-context-size -5", 2,
     "repetition_context_size -5: must be >= 0"},
    {"--seed -5", "generate -p hi --seed -5", 2, "--seed: must not be negative"},
    {"--temp abc", "generate -p hi --temp abc", 2, "--temp: 'abc' is not a number"},
    {"--dtype float64", "generate -p hi --dtype float64", 2, "--dtype"},
    {"predict --temp -1", "predict -p hi --temp -1", 2, "temperature -1: must be a finite number >= 0"},
    {"surgery -v nan", "surgery scale model.norm -v nan", 2, "value nan is not a finite number"},
    {"surgery shift of 1.9", "surgery shift-words model.layers.0.mlp.up_proj -v 1.9", 2,
     "value 1.9 must be an integer"},
    {"surgery shift of 1e20", "surgery shift-words model.layers.0.mlp.up_proj -v 1e20", 2, "must be an integer"},
    {"surgery flip-bits with no rate", "surgery flip-bits model.norm", 2, "rate 0 must be in (0, 1]"},
    {"surgery unknown edit", "surgery melt model.norm", 2, "unknown edit 'melt'"},
    {"weights --bins 100000000", "weights model.norm --bins 100000000", 2, "bins 100000000: must be in [0, 1000]"},
    {"weights lm_head on a tied model", "weights lm_head", 1,
     "ties its output head to its input embedding (tie_word_embeddings), so the head is 'model.embed_tokens.weight'"},
    {"surgery lm_head on a tied model", "surgery scale lm_head -v 2", 1, "the head is 'model.embed_tokens.weight'"},
    {"weights --row past the tensor", "weights model.embed_tokens --row 999999", 1, "outside shape"},
    {"weights: no such tensor", "weights no.such.tensor", 1, "no tensor matches 'no.such.tensor'"},
    {"attention --layer 99", "attention -p hi --layer 99", 1, "layer 99 out of range [0, 30)"},
    {"attention --head -1", "attention -p hi --head -1", 1, "head -1 out of range"},
    {"embed --id 999999", "embed --id 999999", 1, "token id 999999 outside the vocabulary"},
    {"unknown command", "chat2", 2, "unknown command 'chat2' (did you mean chat?)"},
    {"unknown option", "generate --tmep 1 -p hi", 2, "unknown option --tmep (did you mean --temp?)"},
    {"no command (--json)", "--json", 2, "give a command"},
    {"--json error", "generate --json --model /nonexistent.gguf -p hi", 1, "model not found"},
    // Prompts
    {"over-long prompt (generate)", "generate --no-chat-template", 1,
     "the prompt has 9001 tokens but the model's context is 8192 tokens", "long-prompt", "prompt.txt"},
    {"over-long prompt (predict)", "predict --no-chat-template", 1, "the model's context is 8192 tokens",
     "long-prompt", "prompt.txt"},
    {"over-long prompt (attention, 9k tokens)", "attention --no-chat-template", 1, "the model's context is 8192",
     "long-prompt", "prompt.txt"},
    {"attention maps over the memory", "attention --no-chat-template --all-layers", 1,
     "maps grow with the square of the prompt", "long-8k", "prompt.txt"},
    {"over-long context (embed)", "embed ' word' --context {long} --context 'a word'", 1,
     "the model's context is 8192", "long-prompt"},
    {"invalid UTF-8 on stdin", "generate", 1, "is not valid UTF-8 (byte 3: 0xE9)", "bad-utf8", "prompt.txt"},
    {"empty --prompt", "generate -p ''", 2, "--prompt is empty"},
    {"empty stdin", "generate", 2, "the prompt read from standard input is empty"},
    // Outputs
    {"surgery --save into an existing folder", "surgery zero model.norm --save {dir}/out", 1, "already exists",
     "existing-out"},
    {"surgery --save under a file", "surgery zero model.norm --save {dir}/file/out", 1, "is not a folder",
     "file-parent"},
    {"surgery --save where nothing can be written", "surgery zero model.norm --save /proc/lmlab-out", 1, "/proc"},
    {"attention --svg into a file", "attention -p hi --svg {dir}/file", 1, "cannot create --svg folder",
     "file-parent"},
    // Measuring commands: unknown tensors, impossible schedules, unwritable reports
    {"sweep: no such tensor", "sweep shift-words no.such.tensor -v 1 -o {out}", 1, "no tensor matches 'no.such.tensor'"},
    {"sweep: log grid from 0", "sweep shift-words lm_head --log-grid 0:10:5 -o {out}", 2,
     "a log grid needs 0 < lo < hi (got 0 to 10)"},
    {"sweep: two schedules", "sweep shift-words lm_head -v 1 --bisect 1:2 -o {out}", 2,
     "give one of --values, --log-grid and --bisect"},
    {"sweep -o where nothing can be written", "sweep shift-words lm_head -v 0 -o /proc/lmlab-out", 1,
     "cannot create /proc/lmlab-out"},
    {"ppl: missing text", "ppl --text {dir}/none.txt", 1, "cannot read"},
    {"ppl --stride 0", "ppl --text {dir}/none.txt --stride 0", 2, "stride 0 outside [1, context = 512]"},
    {"convert --q-bits 7", "convert -q --q-bits 7 -o {out}", 2, "7 bits: choose 2, 3, 4, 5, 6 or 8"},
    {"convert into an existing folder", "convert -q -o {dir}/out", 1, "already exists", "existing-out"},
    // Fine-tuning: inputs that need no model are refused before it loads
    {"lora: no such data", "lora --data {dir}/none --adapter-path {out}", 1, "/none does not exist"},
    {"lora --num-layers 0", "lora --data {dir} --num-layers 0 --adapter-path {out}", 1,
     "num_layers: 0 adapts no layer; give -1 (every layer) or a count ≥ 1"},
    {"lora --resume-adapter-file missing", "lora --data {dir} --resume-adapter-file {dir}/none.safetensors --adapter-path {out}",
     1, "is not a file"},
    {"fuse: no such adapters", "fuse --adapter-path {dir}/none --save-path {out}", 1,
     "none is not a folder (expected adapter_config.json and adapters.safetensors)"},
};

// ---------------------------------------------------------------- runner

struct Outcome {
  int exit = -1;
  bool signaled = false, timed_out = false;
  std::string out, err;
};

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

Outcome run_case(const Case& c, const fs::path& dir) {
  std::string args = c.args;
  args = replace_all(args, "{gguf}", (dir / "model.gguf").string());
  args = replace_all(args, "{model}", (dir / "model").string());
  args = replace_all(args, "{dir}", dir.string());
  args = replace_all(args, "{out}", (dir / "out").string());
  args = replace_all(args, "{tok}", (fixtures_dir() / "tokenizer" / "llama3").string());
  args = replace_all(args, "{long}", "\"$(cat " + (dir / "prompt.txt").string() + ")\"");
  const std::string in = std::string(c.stdin_file).empty() ? "/dev/null" : (dir / c.stdin_file).string();
  const std::string cmd = "timeout 120 " + lmlab_binary() + " " + args + " < " + in + " > " + (dir / "stdout").string() +
                          " 2> " + (dir / "stderr").string();
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.signaled = WIFSIGNALED(status);
  o.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o.timed_out = o.exit == 124;
  o.out = slurp(dir / "stdout");
  o.err = slurp(dir / "stderr");
  return o;
}

// Files a case leaves in its folder besides the inputs it was given.
std::vector<std::string> leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.find(".tmp") != std::string::npos || n == "out.svg") out.push_back(n);
  }
  return out;
}

class BadInput : public ::testing::TestWithParam<Case> {};

TEST_P(BadInput, OneClearLineNoCrashNoPartialFile) {
  const Case& c = GetParam();
  LMLAB_REQUIRE_FILE(default_gguf());
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "smollm2-mlx-q4" / "model.safetensors");
  const fs::path dir = temp_dir("bad-input");
  make_inputs(c.setup, dir);
  const bool had_out = fs::exists(dir / "out");
  Outcome o = run_case(c, dir);
  EXPECT_FALSE(o.signaled) << c.name << ": killed by a signal\n" << o.err;
  EXPECT_FALSE(o.timed_out) << c.name << ": still running after 120 s";
  EXPECT_EQ(o.exit, c.exit) << c.name << "\n" << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << c.name << "\n" << o.err;
  std::string message = o.err;
  if (std::string(c.args).find("--json") != std::string::npos) {
    // With --json the one line is {"error": {"message", "type"}}.
    auto j = nlohmann::json::parse(o.err, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << c.name << "\n" << o.err;
    EXPECT_EQ(j["error"]["type"] == "usage_error", c.exit == 2) << c.name << "\n" << o.err;
    message = "error: " + j["error"]["message"].get<std::string>() + "\n";
  }
  EXPECT_EQ(message.rfind("error: ", 0), 0u) << c.name << "\n" << o.err;
  EXPECT_NE(message.find(c.message), std::string::npos) << c.name << "\n" << o.err;
  EXPECT_TRUE(o.out.empty()) << c.name << ": printed before failing:\n" << o.out;
  EXPECT_EQ(leftovers(dir), std::vector<std::string>{}) << c.name;
  if (!had_out) EXPECT_FALSE(fs::exists(dir / "out")) << c.name << ": wrote an output";
  EXPECT_FALSE(fs::exists("/proc/lmlab-out"));
  if (const char* table = std::getenv("LMLAB_BAD_INPUTS_TABLE")) {
    std::string line = message.substr(std::min<size_t>(7, message.size()));
    line = replace_all(replace_all(line, "\n", ""), dir.string(), "DIR");
    std::string cmd = std::string("lmlab ") + c.args + (*c.stdin_file ? std::string(" < ") + c.stdin_file : "");
    std::ofstream(table, std::ios::app) << "| " << c.name << " | `" << replace_all(cmd, "|", "\\|") << "` | "
                                        << o.exit << " | " << replace_all(line, "|", "\\|") << " |\n";
  }
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string n;
  for (const char* p = info.param.name; *p; ++p) n += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
  return std::to_string(info.index) + "_" + n;
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadInput, ::testing::ValuesIn(kCases), case_name);

}  // namespace
}  // namespace lmlab::test
