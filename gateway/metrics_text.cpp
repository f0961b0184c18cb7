#include "gateway/metrics_text.hpp"

#include <stdexcept>

namespace airlock::gateway {
namespace {

bool valid_name(const std::string& name, bool colon_allowed) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_allowed && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// HELP text escapes backslash and newline; label values also the double quote.
void append_escaped(std::string& out, const std::string& text, bool quote) {
  for (const char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (quote && c == '"') out += "\\\"";
    else out += c;
  }
}

}  // namespace

std::string render_prometheus(const std::vector<MetricFamily>& families) {
  std::string out;
  for (const MetricFamily& f : families) {
    if (!valid_name(f.name, true)) throw std::invalid_argument("bad metric name: " + f.name);
    out.append("# HELP ").append(f.name).append(" ");
    append_escaped(out, f.help, false);
    out.append("\n# TYPE ").append(f.name);
    switch (f.type) {
      case MetricFamily::Type::kCounter: out += " counter\n"; break;
      case MetricFamily::Type::kGauge: out += " gauge\n"; break;
      case MetricFamily::Type::kHistogram: out += " histogram\n"; break;
    }
    for (const MetricSample& s : f.samples) {
      if (!s.suffix.empty() && s.suffix != "_bucket" && s.suffix != "_sum" && s.suffix != "_count") {
        throw std::invalid_argument("bad sample suffix: " + s.suffix);
      }
      out.append(f.name).append(s.suffix);
      if (!s.labels.empty()) {
        out += '{';
        for (std::size_t i = 0; i < s.labels.size(); ++i) {
          const auto& [name, value] = s.labels[i];
          if (!valid_name(name, false) || name.starts_with("__")) throw std::invalid_argument("bad label name: " + name);
          out.append(i ? "," : "").append(name).append("=\"");
          append_escaped(out, value, true);
          out += '"';
        }
        out += '}';
      }
      out.append(" ").append(std::to_string(s.value)).append("\n");
    }
  }
  return out;
}

}  // namespace airlock::gateway
