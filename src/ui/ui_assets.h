// The web console's files (index.html, app.js, app.css), built into the binary so that the
// installed package serves /ui offline. Generated from this directory by embed_assets.cmake.
#pragma once

#include <optional>
#include <string_view>

namespace syncconfig::service::detail {

struct UiAsset {
  std::string_view content_type;
  std::string_view body;
};

// The built-in file `name` ("index.html", "app.js" or "app.css"); std::nullopt for any other.
std::optional<UiAsset> builtin_ui_asset(std::string_view name);

// The content type of a console file by its name's extension (text/html, text/javascript,
// text/css; application/octet-stream otherwise).
std::string_view ui_content_type(std::string_view name);

}  // namespace syncconfig::service::detail
