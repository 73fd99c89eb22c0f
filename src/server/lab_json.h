// JSON of the lab's results, as the lab API sends them (documented in
// docs/server.md). Field names follow the structs of lmlab/analysis.h and the
// lab commands' --json output.
#pragma once

#include <nlohmann/json.hpp>

#include "lmlab/analysis.h"
#include "server/scheduler.h"

namespace lmlab::server::lab_json {

using nlohmann::json;

// {"text", "count", "round_trip", "tokens": [{"id", "piece", "text", "bytes", "special"}]}
json tokens(const Tokenizer& tok, const std::string& text, const std::vector<int>& ids);
json embedding(const Tokenizer& tok, int id, const std::vector<float>& v, int values,
               const std::vector<analysis::Neighbour>& nb);
json context_check(const Tokenizer& tok, const analysis::ContextCheck& c);
json token_probs(const std::vector<analysis::TokenProb>& top);
json prediction(const analysis::Prediction& p);
json lens_row(const analysis::LensRow& r);
json attention_maps(const std::vector<analysis::AttentionMap>& maps);
json tensor_view(const analysis::TensorView& v);
json summary(const analysis::ModelSummary& s, bool with_params);
json edit(const analysis::EditSpec& e);
json scheduler(const SchedulerStats& s);
json info(const LoadedModel& m, const std::string& id, const std::string& device, const analysis::ModelSummary& s);

}  // namespace lmlab::server::lab_json
