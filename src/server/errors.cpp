#include "server/errors.h"

#include "lmlab/core.h"

namespace lmlab::server {

using json = nlohmann::json;

json error_body(const std::string& message, const std::string& type, const std::string& code,
                const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

ErrorReply error_reply(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const ApiError& x) {
    return {x.status, error_body(x.what(), x.type, x.code, x.param)};
  } catch (const json::exception& x) {
    return {400, error_body(std::string("invalid JSON: ") + x.what(), "invalid_request_error")};
  } catch (const std::invalid_argument& x) {
    return {400, error_body(x.what(), "invalid_request_error")};
  } catch (const Unsupported& x) {
    return {501, error_body(x.what(), "not_supported_error", "unsupported")};
  } catch (const std::exception& x) {
    return {500, error_body(x.what(), "server_error")};
  } catch (...) {
    return {500, error_body("unknown error", "server_error")};
  }
}

}  // namespace lmlab::server
