// Errors as the server answers them: an OpenAI-style JSON body
// {"error": {"message", "type", "param", "code"}} with the HTTP status taken
// from one table, so every route maps the same exception the same way.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace lmlab::server {

// An error whose status the server decides itself: unknown model or route,
// missing key, busy queue, body too large.
class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string type, std::string code, const std::string& message, std::string param = "")
      : std::runtime_error(message), status(status), type(std::move(type)), code(std::move(code)),
        param(std::move(param)) {}
  int status;
  std::string type, code, param;
};

struct ErrorReply {
  int status = 500;
  nlohmann::json body;
};

nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& code = "",
                          const std::string& param = "");

// The table: ApiError → its own status; std::invalid_argument and JSON errors
// → 400 invalid_request_error; lmlab::Unsupported → 501; std::runtime_error and
// anything else → 500 server_error.
ErrorReply error_reply(std::exception_ptr e);

}  // namespace lmlab::server
