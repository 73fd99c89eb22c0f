// report writers: markdown and CSV escaping, full-precision numbers, SVGs
// that carry every point and cell.
#include <cmath>

#include "lmlab/report.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace rp = lmlab::report;

TEST(Report, NumbersKeepEveryDigitOfAShift) {
  EXPECT_EQ(rp::number(1000000), "1000000");
  EXPECT_EQ(rp::number(1000005), "1000005");
  EXPECT_EQ(rp::number(1e8), "100000000");
  EXPECT_EQ(rp::number(-3), "-3");
  EXPECT_EQ(rp::number(0.1), "0.1");
  EXPECT_EQ(rp::number(1e-5), "1e-05");
}

TEST(Report, TablesEscapeWhatWouldBreakThem) {
  rp::Table t{.columns = {"a", "b"}, .rows = {{"x|y", "line\nbreak"}, {"1,5", "say \"hi\""}}, .align = "lr"};
  EXPECT_EQ(rp::markdown(t), "| a | b |\n| --- | ---: |\n| x\\|y | line<br>break |\n| 1,5 | say \"hi\" |\n");
  EXPECT_EQ(rp::csv(t), "a,b\nx|y,\"line\nbreak\"\n\"1,5\",\"say \"\"hi\"\"\"\n");
}

TEST(Report, ChartsCarryEveryPointAndCell) {
  rp::PanelChart c{.title = "t <&>", .x_label = "shift", .x = {0, 1, 1e6}, .x_labels = {"0", "1", "1000000"}};
  c.panels = {{.label = "KL", .y = {0, 0.5, 4}, .log_y = true}, {.label = "top-1", .y = {1, 0.9, NAN}}};
  c.point_colors = {"#9fd89a", "", "#f28b82"};
  std::string s = rp::svg(c);
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<circle"), 5u);  // the NaN is not drawn
  EXPECT_NE(s.find("t &lt;&amp;&gt;"), std::string::npos);
  EXPECT_NE(s.find(">1000000<"), std::string::npos);
  rp::Heatmap h{.title = "h", .row_labels = {"r0", "r1"}, .col_labels = {"q", "k"}, .values = {1, 2, NAN, 0.01}};
  std::string hs = rp::svg(h);
  size_t cells = 0;
  for (size_t p = hs.find("<title>r"); p != std::string::npos; p = hs.find("<title>r", p + 1)) ++cells;
  EXPECT_EQ(cells, 3u);
}

}  // namespace
}  // namespace lmlab::test
