// Static files of the web lab: the built-in copy, or --web-dir for working
// on the lab without rebuilding (Chart.js still comes from the built-in copy).
#include <fstream>
#include <sstream>

#include "server/http.h"
#include "server/web.h"

namespace lmlab::server {

namespace {

const WebAsset* find_asset(const std::string& path) {
  for (const WebAsset& a : web_assets())
    if (path == a.path) return &a;
  return nullptr;
}

const char* mime_of(const std::string& path) {
  auto ends = [&](const char* ext) { return path.ends_with(ext); };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".png")) return "image/png";
  return "application/octet-stream";
}

}  // namespace

void add_web_routes(httplib::Server& svr, ServerContext& c) {
  svr.Get(R"(/(|index\.html|app\.js|api\.js|style\.css|panels/[a-z_]+\.js|vendor/chart\.min\.js))",
          [&c](const httplib::Request& req, httplib::Response& res) {
            std::string path = req.path == "/" ? "/index.html" : req.path;
            res.set_header("Cache-Control", "no-cache");
            if (!c.options.web_dir.empty() && !path.starts_with("/vendor/")) {
              std::ifstream f(c.options.web_dir + path, std::ios::binary);
              if (f) {
                std::stringstream ss;
                ss << f.rdbuf();
                res.set_content(ss.str(), mime_of(path));
                return;
              }
            }
            if (const WebAsset* a = find_asset(path)) {
              res.set_content(reinterpret_cast<const char*>(a->data), a->size, a->mime);
              return;
            }
            res.status = 404;
          });
}

}  // namespace lmlab::server
