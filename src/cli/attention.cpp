// lmlab attention: attention probabilities of chosen layers and heads captured
// during a real forward pass, with Q/K/V shapes and per-head entropy; shown as
// a terminal heatmap (shade characters, 256-colour when stdout is a terminal)
// and written as SVG (and PNG when rsvg-convert or ImageMagick is installed).
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct AttentionOptions {
  ModelOptions model;
  std::string prompt;
  std::vector<int> layers = {0};
  std::vector<int> heads;
  bool all_layers = false;
  bool no_chat_template = false;
  std::string svg_dir;
  bool heatmap = true;
  bool json = false;
};

std::string label(const std::string& piece, size_t width) {
  std::string v = an::visible(piece);
  std::string out;
  size_t n = 0;
  for (size_t i = 0; i < v.size() && n < width; ++i) {
    out += v[i];
    if ((static_cast<unsigned char>(v[i]) & 0xC0) != 0x80) {
      // Copy the continuation bytes of this code point too.
      while (i + 1 < v.size() && (static_cast<unsigned char>(v[i + 1]) & 0xC0) == 0x80) out += v[++i];
      ++n;
    }
  }
  return out + std::string(width - n, ' ');
}

void print_heatmap(const an::AttentionMap& map, const std::vector<std::string>& pieces, bool color) {
  fmt::print("\nlayer {} head {} (kv head {})   mean entropy {:.2f} bits\n", map.layer, map.head, map.kv_head,
             map.mean_entropy);
  for (int r = 0; r < map.rows; ++r) {
    std::string line = "  " + label(pieces[r], 12) + " │";
    for (int c = 0; c < map.cols; ++c) {
      float p = map.probs[r * map.cols + c];
      if (c > r) line += "  ";
      else if (color) line += fmt::format("\x1b[48;5;{}m  \x1b[0m", 232 + static_cast<int>(std::sqrt(p) * 23.99f));
      else line += an::shade(p) + an::shade(p);
    }
    fmt::print("{}│ {:.2f}\n", line, map.row_entropy[r]);
  }
}

void run_attention(AttentionOptions o) {
  std::string prompt = read_prompt(o.prompt);
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  std::vector<int> ids = build_prompt(m, prompt, "", !o.no_chat_template);
  if (o.all_layers) o.layers.clear();
  an::AttentionCapture cap = an::capture_attention(*m.model, ids, o.layers, o.heads);
  std::vector<std::string> pieces;
  for (int id : ids) pieces.push_back(m.tokenizer.decode(std::vector<int>{id}));

  std::vector<std::string> written;
  if (!o.svg_dir.empty()) {
    std::filesystem::create_directories(o.svg_dir);
    // PNG through whichever SVG converter is installed (none is required).
    std::string conv = std::system("command -v rsvg-convert >/dev/null 2>&1") == 0 ? "rsvg-convert -o '{1}' '{0}'"
                       : std::system("command -v convert >/dev/null 2>&1") == 0 ? "convert '{0}' '{1}'"
                                                                                 : "";
    for (const auto& map : cap.maps) {
      auto base = std::filesystem::path(o.svg_dir) / fmt::format("attention_L{}_H{}", map.layer, map.head);
      std::string title = fmt::format("layer {} head {} (kv head {}), entropy {:.2f} bits", map.layer, map.head,
                                      map.kv_head, map.mean_entropy);
      write_file_atomic(base.string() + ".svg", an::attention_svg(map, pieces, title));
      written.push_back(base.string() + ".svg");
      if (!conv.empty() &&
          std::system((fmt::format(fmt::runtime(conv), base.string() + ".svg", base.string() + ".png") +
                       " >/dev/null 2>&1").c_str()) == 0)
        written.push_back(base.string() + ".png");
    }
  }
  if (o.json) {
    json maps = json::array();
    for (const auto& map : cap.maps)
      maps.push_back({{"layer", map.layer}, {"head", map.head}, {"kv_head", map.kv_head}, {"rows", map.rows},
                      {"cols", map.cols}, {"probs", map.probs}, {"row_entropy_bits", map.row_entropy},
                      {"mean_entropy_bits", map.mean_entropy}});
    json out = {{"prompt", prompt}, {"ids", ids}, {"tokens", pieces}, {"q_shape", cap.q_shape},
                {"k_shape", cap.k_shape}, {"v_shape", cap.v_shape}, {"maps", maps}, {"files", written}};
    std::cout << out.dump() << "\n";
    return;
  }
  auto shape = [](const std::vector<int>& s) { return fmt::format("({})", fmt::join(s, ", ")); };
  fmt::print("{} tokens   Q {}   K {}   V {}   (B, heads, L, head_dim; {} query heads share each kv head)\n",
             ids.size(), shape(cap.q_shape), shape(cap.k_shape), shape(cap.v_shape),
             cap.q_shape[1] / cap.k_shape[1]);
  fmt::print("\nmean entropy per head (bits; low = focused, high = spread)\n");
  int last_layer = -1;
  for (const auto& map : cap.maps) {
    if (map.layer != last_layer) fmt::print("{}  layer {:>2}:", last_layer < 0 ? "" : "\n", map.layer);
    last_layer = map.layer;
    fmt::print("  h{} {:.2f}", map.head, map.mean_entropy);
  }
  fmt::print("\n");
  const bool color = isatty(STDOUT_FILENO);
  if (o.heatmap)
    for (const auto& map : cap.maps) print_heatmap(map, pieces, color);
  for (const auto& f : written) fmt::print("wrote {}\n", f);
}

}  // namespace

void setup_attention(CLI::App& app) {
  auto o = std::make_shared<AttentionOptions>();
  add_model_options(app, o->model);
  app.add_option("-p,--prompt", o->prompt, "prompt text ('-' or absent: read stdin)");
  app.add_option("-l,--layer", o->layers, "layer (repeatable)")->capture_default_str();
  app.add_flag("--all-layers", o->all_layers, "every layer");
  app.add_option("--head", o->heads, "query head (repeatable; default: all)");
  app.add_flag("--no-chat-template", o->no_chat_template, "encode the prompt as raw text");
  app.add_option("--svg", o->svg_dir, "write one SVG heatmap per layer and head into this folder (PNG too when a converter exists)");
  app.add_flag("!--no-heatmap", o->heatmap, "print only shapes and entropies");
  app.add_flag("--json", o->json, "print JSON: tokens, shapes, probabilities, entropies");
  app.callback([o] { run_attention(*o); });
}

}  // namespace lmlab::cli
