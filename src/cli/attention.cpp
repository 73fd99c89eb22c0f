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
#include "core/utf8.h"
#include "lmlab/analysis.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct AttentionOptions {
  ModelOptions model;
  PromptOptions prompt;
  std::vector<int> layers = {0};
  std::vector<int> heads;
  bool all_layers = false;
  std::string svg_dir;
  bool heatmap = true;
  bool json = false;
};

// A token's visible text cut or padded to `width` terminal cells (code points).
std::string label(const std::string& piece, size_t width) {
  std::string v(utf8::prefix(an::visible(piece), width));
  return v + std::string(width - utf8::length(v), ' ');
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

void run_attention(AttentionOptions& o) {
  std::string prompt = o.prompt.one();
  Context ctx = make_context(o.model);
  LoadedModel m = load(ctx, o.model);
  std::vector<int> ids = build_prompt(m, prompt, o.prompt.system, !o.prompt.no_chat_template);
  if (o.all_layers) o.layers.clear();
  an::AttentionCapture cap;
  {
    Activity busy("capturing attention");
    cap = an::capture_attention(*m.model, ids, o.layers, o.heads);
  }
  std::vector<std::string> pieces;
  for (int id : ids) pieces.push_back(m.tokenizer.decode(std::vector<int>{id}));

  std::vector<std::string> written;
  if (!o.svg_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.svg_dir, ec);
    if (ec) throw std::runtime_error(fmt::format("[attention] cannot create --svg folder {}: {}", o.svg_dir, ec.message()));
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
    json out = cap;
    out.update({{"prompt", prompt}, {"tokens", pieces}, {"files", written}});
    print_json(out, -1);
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
  // A terminal row per token: past a screenful the picture is the SVG's job.
  constexpr size_t kMaxHeatmapTokens = 100;
  if (o.heatmap && ids.size() > kMaxHeatmapTokens)
    note(fmt::format("no terminal heatmap for {} tokens (more than {}); --svg DIR writes them as images",
                     ids.size(), kMaxHeatmapTokens));
  else if (o.heatmap)
    for (const auto& map : cap.maps) print_heatmap(map, pieces, color);
  for (const auto& f : written) fmt::print("wrote {}\n", f);
}

}  // namespace

void setup_attention(CLI::App& app) {
  auto o = std::make_shared<AttentionOptions>();
  o->model.add(app);
  o->prompt.add(app);
  app.add_option("-l,--layer", o->layers, "layer (repeatable)")->capture_default_str();
  app.add_flag("--all-layers", o->all_layers, "every layer");
  app.add_option("--head", o->heads, "query head (repeatable; default: all)");
  app.add_option("--svg", o->svg_dir, "write one SVG heatmap per layer and head into this folder (PNG too when a converter exists)");
  app.add_flag("!--no-heatmap", o->heatmap, "print only shapes and entropies");
  add_json_flag(app, o->json, "tokens, shapes, probabilities, entropies");
  app.callback([o] { run_attention(*o); });
}

}  // namespace lmlab::cli
