// TrainConfig under mlx_lm.lora's keys (lora.py CONFIG_DEFAULTS), read from
// JSON (flags and YAML merged by the caller) and written back as
// adapter_config.json, and the YAML reader for mlx-lm's config files.
#include <cmath>
#include <fstream>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "lmlab/core.h"
#include "lmlab/train.h"

using json = nlohmann::json;

namespace lmlab::train {

namespace {

[[noreturn]] void bad(const std::string& key, const std::string& what) {
  throw std::invalid_argument(fmt::format("[config] {}: {}", key, what));
}

std::string shown(const json& v) { return v.dump(); }

int get_int(const json& v, const std::string& key, int min) {
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    bad(key, fmt::format("expected an integer, got {}", shown(v)));
  double d = v.get<double>();
  if (d < min || d > 2147483647.0) bad(key, fmt::format("must be ≥ {} (got {})", min, shown(v)));
  return static_cast<int>(d);
}

double get_double(const json& v, const std::string& key, double min, bool inclusive = true) {
  if (!v.is_number()) bad(key, fmt::format("expected a number, got {}", shown(v)));
  double d = v.get<double>();
  if (!std::isfinite(d) || d < min || (!inclusive && d == min))
    bad(key, fmt::format("must be {} {} (got {})", inclusive ? "≥" : ">", min, shown(v)));
  return d;
}

bool get_bool(const json& v, const std::string& key) {
  if (!v.is_boolean()) bad(key, fmt::format("expected true or false, got {}", shown(v)));
  return v.get<bool>();
}

std::string get_string(const json& v, const std::string& key) {
  if (v.is_null()) return "";
  if (!v.is_string()) bad(key, fmt::format("expected a string, got {}", shown(v)));
  return v.get<std::string>();
}

std::string one_of(const json& v, const std::string& key, std::initializer_list<const char*> allowed) {
  std::string s = get_string(v, key);
  std::string list;
  for (const char* a : allowed) {
    if (s == a) return s;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  bad(key, fmt::format("'{}' is not one of {}", s, list));
}

LoraParameters lora_from_json(const json& j) {
  if (!j.is_object()) bad("lora_parameters", "expected a mapping {rank, scale, dropout, keys}");
  LoraParameters p;
  for (const auto& [k, v] : j.items()) {
    const std::string key = "lora_parameters." + k;
    if (k == "rank") p.rank = get_int(v, key, 1);
    else if (k == "scale") p.scale = static_cast<float>(get_double(v, key, -1e30));
    else if (k == "dropout") {
      p.dropout = static_cast<float>(get_double(v, key, 0.0));
      if (p.dropout >= 1.0f) bad(key, fmt::format("must be below 1 (got {})", p.dropout));
    } else if (k == "keys") {
      if (v.is_null()) continue;
      if (!v.is_array()) bad(key, "expected a list of module names");
      for (const auto& name : v) p.keys.push_back(get_string(name, key));
    } else if (k == "alpha") {
      bad(key, "mlx-lm's LoRA config uses 'scale' (a plain multiplier), not 'alpha'; for alpha/rank write scale");
    } else {
      bad(key, "unknown key (rank, scale, dropout, keys)");
    }
  }
  return p;
}

ScheduleConfig schedule_from_json(const json& j) {
  if (!j.is_object()) bad("lr_schedule", "expected a mapping {name, arguments, warmup, warmup_init}");
  ScheduleConfig s;
  for (const auto& [k, v] : j.items()) {
    const std::string key = "lr_schedule." + k;
    if (k == "name")
      s.name = one_of(v, key, {"cosine_decay", "linear_schedule", "exponential_decay", "step_decay"});
    else if (k == "arguments") {
      if (v.is_null()) continue;
      if (!v.is_array()) bad(key, "expected a list of numbers");
      for (const auto& a : v) s.arguments.push_back(get_double(a, key, -1e30));
    } else if (k == "warmup") s.warmup = get_int(v, key, 0);
    else if (k == "warmup_init") s.warmup_init = get_double(v, key, 0.0);
    else bad(key, "unknown key (name, arguments, warmup, warmup_init)");
  }
  if (s.name.empty()) bad("lr_schedule.name", "missing");
  return s;
}

void check_optimizer_config(const json& j) {
  if (!j.is_object()) bad("optimizer_config", "expected a mapping per optimizer name");
  static const std::map<std::string, std::set<std::string>> allowed = {
      {"adam", {"betas", "eps", "bias_correction"}},
      {"adamw", {"betas", "eps", "bias_correction", "weight_decay"}},
      {"sgd", {"momentum", "weight_decay", "dampening", "nesterov"}},
      {"muon", {}},
      {"adafactor", {}}};
  for (const auto& [name, opts] : j.items()) {
    auto it = allowed.find(name);
    if (it == allowed.end()) bad("optimizer_config." + name, "unknown optimizer (adam, adamw, sgd)");
    if (opts.is_null()) continue;
    if (!opts.is_object()) bad("optimizer_config." + name, "expected a mapping of settings");
    for (const auto& [k, v] : opts.items())
      if (!it->second.count(k))
        bad(fmt::format("optimizer_config.{}.{}", name, k),
            it->second.empty() ? "this optimizer is not implemented" : "unknown setting");
  }
}

}  // namespace

TrainConfig TrainConfig::from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("[config] expected a mapping of settings");
  TrainConfig c;
  for (const auto& [k, v] : j.items()) {
    if (k == "model") c.model = get_string(v, k);
    else if (k == "data") c.data = get_string(v, k);
    else if (k == "train") c.train = v.is_null() ? c.train : get_bool(v, k);
    else if (k == "fine_tune_type") c.fine_tune_type = one_of(v, k, {"lora", "dora", "full"});
    else if (k == "optimizer") c.optimizer = one_of(v, k, {"adam", "adamw", "sgd"});
    else if (k == "optimizer_config") {
      check_optimizer_config(v);
      c.optimizer_config = v;
    } else if (k == "seed") c.seed = static_cast<uint64_t>(get_int(v, k, 0));
    else if (k == "num_layers") {
      c.num_layers = get_int(v, k, -1);
      if (c.num_layers == 0) bad(k, "0 adapts no layer; give -1 (every layer) or a count ≥ 1");
    }
    else if (k == "batch_size") c.batch_size = get_int(v, k, 1);
    else if (k == "iters") c.iters = get_int(v, k, 1);
    else if (k == "epochs") c.epochs = get_double(v, k, 0.0);
    else if (k == "val_batches") c.val_batches = get_int(v, k, -1);
    else if (k == "learning_rate") c.learning_rate = get_double(v, k, 0.0);
    else if (k == "steps_per_report") c.steps_per_report = get_int(v, k, 1);
    else if (k == "steps_per_eval") c.steps_per_eval = get_int(v, k, 1);
    else if (k == "resume_adapter_file") c.resume_adapter_file = get_string(v, k);
    else if (k == "adapter_path") c.adapter_path = get_string(v, k);
    else if (k == "save_every") c.save_every = get_int(v, k, 1);
    else if (k == "test") c.test = v.is_null() ? c.test : get_bool(v, k);
    else if (k == "test_batches") c.test_batches = get_int(v, k, -1);
    else if (k == "max_seq_length") c.max_seq_length = get_int(v, k, 2);
    else if (k == "grad_checkpoint") c.grad_checkpoint = get_bool(v, k);
    else if (k == "grad_accumulation_steps") c.grad_accumulation_steps = get_int(v, k, 1);
    else if (k == "lr_schedule") c.lr_schedule = v.is_null() ? std::nullopt : std::optional(schedule_from_json(v));
    else if (k == "lora_parameters") c.lora_parameters = v.is_null() ? c.lora_parameters : lora_from_json(v);
    else if (k == "mask_prompt") c.mask_prompt = get_bool(v, k);
    else if (k == "prompt_feature") c.prompt_feature = get_string(v, k);
    else if (k == "completion_feature") c.completion_feature = get_string(v, k);
    else if (k == "chat_feature") c.chat_feature = get_string(v, k);
    else if (k == "text_feature") c.text_feature = get_string(v, k);
    else if (k == "resume") c.resume = get_bool(v, k);
    else if (k == "mlx_lm_compat") c.mlx_lm_compat = get_bool(v, k);
    else if (k == "valid_split") c.valid_split = get_double(v, k, 0.0);
    else if (k == "test_split") c.test_split = get_double(v, k, 0.0);
    else if (k == "memory_limit_gb") c.memory_limit_gb = get_double(v, k, 0.0);
    else if (k == "dtype") c.dtype = one_of(v, k, {"", "float32", "float16", "bfloat16"});
    else if (k == "report_to") {
      if (!v.is_null()) bad(k, "wandb/swanlab reporting is not supported; lmlab writes a CSV log and an SVG curve");
    } else if (k == "hf_dataset") {
      bad(k, "Hugging Face datasets are not downloaded; point 'data' at a folder of JSONL files");
    } else if (k == "config" || k == "project_name" || k == "trust_remote_code" || k == "clear_cache_threshold") {
      // mlx-lm bookkeeping with no effect here (clear_cache_threshold is unused by mlx-lm's trainer too).
    } else {
      bad(k, "unknown key (mlx_lm.lora's keys; see docs/finetuning.md)");
    }
  }
  if (c.valid_split + c.test_split >= 1.0) bad("valid_split", "valid_split + test_split must leave data to train on");
  if (c.grad_accumulation_steps > 1 && c.iters % c.grad_accumulation_steps != 0 && c.epochs == 0)
    bad("iters", fmt::format("{} is not a multiple of grad_accumulation_steps {}: the last steps would never update",
                             c.iters, c.grad_accumulation_steps));
  return c;
}

json TrainConfig::to_json() const {
  json lora = {{"rank", lora_parameters.rank},
               {"scale", lora_parameters.scale},
               {"dropout", lora_parameters.dropout}};
  if (!lora_parameters.keys.empty()) lora["keys"] = lora_parameters.keys;
  json sched = nullptr;
  if (lr_schedule)
    sched = {{"name", lr_schedule->name},
             {"arguments", lr_schedule->arguments},
             {"warmup", lr_schedule->warmup},
             {"warmup_init", lr_schedule->warmup_init}};
  auto opt_or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  // nlohmann::json keeps keys sorted, as mlx-lm's save_config writes them.
  return {{"model", model},
          {"data", data},
          {"train", train},
          {"fine_tune_type", fine_tune_type},
          {"optimizer", optimizer},
          {"optimizer_config", optimizer_config},
          {"seed", seed},
          {"num_layers", num_layers},
          {"batch_size", batch_size},
          {"iters", iters},
          {"epochs", epochs},
          {"val_batches", val_batches},
          {"learning_rate", learning_rate},
          {"steps_per_report", steps_per_report},
          {"steps_per_eval", steps_per_eval},
          {"resume_adapter_file", opt_or_null(resume_adapter_file)},
          {"adapter_path", adapter_path},
          {"save_every", save_every},
          {"test", test},
          {"test_batches", test_batches},
          {"max_seq_length", max_seq_length},
          {"grad_checkpoint", grad_checkpoint},
          {"grad_accumulation_steps", grad_accumulation_steps},
          {"lr_schedule", sched},
          {"lora_parameters", lora},
          {"mask_prompt", mask_prompt},
          {"prompt_feature", prompt_feature},
          {"completion_feature", completion_feature},
          {"chat_feature", chat_feature},
          {"text_feature", text_feature},
          {"mlx_lm_compat", mlx_lm_compat},
          {"valid_split", valid_split},
          {"test_split", test_split},
          {"memory_limit_gb", memory_limit_gb},
          {"dtype", dtype}};
}

DataOptions TrainConfig::data_options() const {
  return DataOptions{.path = data,
                     .valid_fraction = valid_split,
                     .test_fraction = test_split,
                     .seed = seed,
                     .mask_prompt = mask_prompt,
                     .max_seq_length = max_seq_length,
                     .prompt_feature = prompt_feature,
                     .completion_feature = completion_feature,
                     .chat_feature = chat_feature,
                     .text_feature = text_feature};
}

// ---------------------------------------------------------------- YAML

namespace {

json scalar(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() == "!") return s;  // quoted: always a string
  static const std::regex null_re("~|null|Null|NULL|"), true_re("yes|Yes|YES|true|True|TRUE|on|On|ON"),
      false_re("no|No|NO|false|False|FALSE|off|Off|OFF");  // PyYAML's (YAML 1.1) booleans
  static const std::regex int_re("[-+]?[0-9]+");
  // YAML 1.1 floats plus the forms mlx-lm's loader adds (1e-5, 2E3 without a dot).
  static const std::regex float_re(
      "[-+]?([0-9][0-9_]*)?\\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\\.(inf|Inf|INF)|"
      "\\.(nan|NaN|NAN)");
  if (std::regex_match(s, null_re)) return nullptr;
  if (std::regex_match(s, true_re)) return true;
  if (std::regex_match(s, false_re)) return false;
  if (std::regex_match(s, int_re)) {
    try {
      return std::stoll(s);
    } catch (const std::out_of_range&) {
      return s;
    }
  }
  if (std::regex_match(s, float_re) && s != ".") {
    std::string t;
    for (char c : s)
      if (c != '_') t += c;
    if (t.find("inf") != std::string::npos || t.find("Inf") != std::string::npos || t.find("INF") != std::string::npos)
      return t[0] == '-' ? -INFINITY : INFINITY;
    if (t.find("nan") != std::string::npos || t.find("NaN") != std::string::npos || t.find("NAN") != std::string::npos)
      return NAN;
    return std::stod(t);
  }
  return s;
}

json to_json(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return nullptr;
    case YAML::NodeType::Scalar: return scalar(n);
    case YAML::NodeType::Sequence: {
      json a = json::array();
      for (const auto& e : n) a.push_back(to_json(e));
      return a;
    }
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) o[kv.first.as<std::string>()] = to_json(kv.second);
      return o;
    }
  }
  return nullptr;
}

}  // namespace

json read_config_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::invalid_argument(fmt::format("[config] cannot read {}", path));
  try {
    YAML::Node root = YAML::Load(f);
    if (root.IsNull()) return json::object();
    if (!root.IsMap()) throw std::invalid_argument(fmt::format("[config] {}: expected a mapping of settings", path));
    return to_json(root);
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument(
        fmt::format("[config] {}: line {}, column {}: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
}

}  // namespace lmlab::train
