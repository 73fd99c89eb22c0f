// TrainConfig: a YAML file in mlx-lm's lora_config.yaml shape reads into the
// same settings mlx_lm.lora would use (floats such as 1e-5 included), is
// written back as adapter_config.json, and bad keys or values are one clear
// error naming the key.
#include <fstream>

#include "lmlab/train.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

train::TrainConfig from_yaml(const std::string& text) {
  auto dir = temp_dir("config");
  std::ofstream(dir / "c.yaml") << text;
  return train::TrainConfig::from_json(train::read_config_file((dir / "c.yaml").string()));
}

std::string error_of(const std::string& yaml) {
  try {
    from_yaml(yaml);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(TrainConfig, ReadsMlxLmYaml) {
  auto c = from_yaml(R"(# as mlx-lm's examples/lora_config.yaml
model: "mlx_model"
train: true
fine_tune_type: dora
optimizer: adamw
optimizer_config:
  adamw:
    betas: [0.9, 0.98]
    eps: 1e-6
    weight_decay: 0.05
data: "/data/"
seed: 0
num_layers: 8
batch_size: 2
iters: 600
val_batches: -1
learning_rate: 1e-5
steps_per_report: 10
steps_per_eval: 200
resume_adapter_file: null
adapter_path: "adapters"
save_every: 100
test: false
test_batches: 100
max_seq_length: 2048
grad_checkpoint: false
lr_schedule:
  name: cosine_decay
  warmup: 100
  warmup_init: 1e-7
  arguments: [1e-5, 1000, 1e-7]
lora_parameters:
  keys: ["self_attn.q_proj", "self_attn.v_proj"]
  rank: 8
  scale: 20.0
  dropout: 0.0
mask_prompt: true
)");
  EXPECT_EQ(c.fine_tune_type, "dora");
  EXPECT_EQ(c.optimizer, "adamw");
  EXPECT_DOUBLE_EQ(c.optimizer_config["adamw"]["eps"].get<double>(), 1e-6);
  EXPECT_EQ(c.num_layers, 8);
  EXPECT_EQ(c.val_batches, -1);
  EXPECT_DOUBLE_EQ(c.learning_rate, 1e-5);
  ASSERT_TRUE(c.lr_schedule);
  EXPECT_EQ(c.lr_schedule->warmup, 100);
  EXPECT_DOUBLE_EQ(c.lr_schedule->warmup_init, 1e-7);
  EXPECT_EQ(c.lr_schedule->arguments, (std::vector<double>{1e-5, 1000, 1e-7}));
  EXPECT_EQ(c.lora_parameters.keys, (std::vector<std::string>{"self_attn.q_proj", "self_attn.v_proj"}));
  EXPECT_TRUE(c.mask_prompt);
  EXPECT_TRUE(c.resume_adapter_file.empty());
  // adapter_config.json round trip, with the keys mlx_lm's load_adapters reads.
  auto j = c.to_json();
  EXPECT_EQ(j["fine_tune_type"], "dora");
  EXPECT_EQ(j["num_layers"], 8);
  EXPECT_EQ(j["lora_parameters"]["rank"], 8);
  auto again = train::TrainConfig::from_json(j);
  EXPECT_EQ(again.to_json(), j);
}

TEST(TrainConfig, BadKeysAndValuesNameTheKey) {
  EXPECT_NE(error_of("batch_sise: 4\n").find("batch_sise: unknown key"), std::string::npos);
  EXPECT_NE(error_of("batch_size: 0\n").find("batch_size: must be ≥ 1"), std::string::npos);
  EXPECT_NE(error_of("batch_size: four\n").find("batch_size: expected an integer"), std::string::npos);
  EXPECT_NE(error_of("fine_tune_type: qlora\n").find("'qlora' is not one of lora, dora, full"), std::string::npos);
  EXPECT_NE(error_of("lora_parameters: {rank: 8, alpha: 16}\n").find("not 'alpha'"), std::string::npos);
  EXPECT_NE(error_of("optimizer: muon\n").find("optimizer: 'muon' is not one of"), std::string::npos);
  EXPECT_NE(error_of("iters: 10\ngrad_accumulation_steps: 4\n").find("not a multiple"), std::string::npos);
  EXPECT_NE(error_of("batch_size: [1\n").find("line"), std::string::npos) << "YAML syntax errors say where";
  EXPECT_NE(error_of("hf_dataset: {path: x}\n").find("not downloaded"), std::string::npos);
}

TEST(TrainConfig, QuotedNumbersStayStrings) {
  auto j = train::read_config_file([] {
    auto dir = temp_dir("config-quoted");
    std::ofstream(dir / "c.yaml") << "a: \"1e-5\"\nb: 1e-5\nc: 12\nd: yes\ne: ~\n";
    return (dir / "c.yaml").string();
  }());
  EXPECT_TRUE(j["a"].is_string());
  EXPECT_DOUBLE_EQ(j["b"].get<double>(), 1e-5);
  EXPECT_EQ(j["c"], 12);
  EXPECT_EQ(j["d"], true) << "YAML 1.1, as PyYAML reads mlx-lm's configs";
  EXPECT_TRUE(j["e"].is_null());
}

}  // namespace
}  // namespace lmlab::test
