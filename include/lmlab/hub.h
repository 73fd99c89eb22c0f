// Models from the Hugging Face Hub, kept in the cache layout huggingface_hub
// uses, so that a model mlx_lm or transformers already downloaded is found
// without the network, and one lmlab downloads is theirs too:
//
//   <cache>/models--<org>--<name>/blobs/<sha256 or git blob id>
//                                /snapshots/<commit>/<file>  → ../../blobs/<id>
//                                /refs/<revision>            (the commit, as text)
//
// `lmlab … --model org/name` resolves through here (a local path wins when it
// exists). Files are downloaded into blobs/ as `.incomplete` files, checked
// against the Hub's sha256 for large (LFS) files, then renamed: an interrupted
// download leaves no file a later run would take for complete.
#pragma once

#include <filesystem>
#include <string>

#include "lmlab/progress.h"

namespace lmlab::hub {

struct Options {
  std::string revision = "main";  // branch, tag or commit
  std::string endpoint;           // "" → $HF_ENDPOINT, else https://huggingface.co
  std::string token;              // "" → $HF_TOKEN, else the file $HF_HOME/token when present
  std::filesystem::path cache;    // "" → $HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub
  bool offline = false;           // only the cache (also with $HF_HUB_OFFLINE=1)
  ProgressCallback progress;      // download progress (unit "bytes"); none: silent
};

// Whether s has the form of a Hub model id, "org/name" or "org/name/file.gguf"
// (names of letters, digits, '-', '_', '.'). Callers try a local path first.
bool is_model_id(const std::string& s);

// The local snapshot of model `id` ("org/name"): a directory holding what a
// model needs (config and tokenizer files, safetensors and their index, chat
// templates), downloading what the cache lacks. For "org/name/file.gguf" the
// path of that one file. When the Hub cannot be reached, a snapshot already in
// the cache for this revision is used. Throws std::runtime_error with one line
// naming the model and what went wrong (not found, needs a token, network, checksum).
std::filesystem::path snapshot(const std::string& id, const Options& opts = {});

// The cache folder the options resolve to.
std::filesystem::path cache_root(const Options& opts = {});

}  // namespace lmlab::hub
