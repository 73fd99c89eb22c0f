// Hand-written templates with exact expected outputs (each checked against
// Python jinja2 3.1.6 in transformers' environment: trim_blocks,
// lstrip_blocks, loopcontrols).
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "lmlab/chat.h"
#include "test_util.h"

namespace {

using nlohmann::json;

std::string render(const std::string& src, const json& vars = json::object(), const json& messages = json::array()) {
  lmlab::ChatOptions opts;
  opts.add_generation_prompt = false;
  opts.extra = vars;
  return lmlab::ChatTemplate(src).apply(messages, opts);
}

std::string error_of(const std::string& src, const json& vars = json::object()) {
  try {
    render(src, vars);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

struct Case {
  const char* tpl;
  const char* expected;
};

void check_all(const std::vector<Case>& cases, const json& vars = json::object()) {
  for (const auto& c : cases) {
    std::string got;
    try {
      got = render(c.tpl, vars);
    } catch (const std::exception& e) {
      got = std::string("EXCEPTION: ") + e.what();
    }
    EXPECT_EQ(got, c.expected) << "template: " << c.tpl;
  }
}

TEST(JinjaTest, WhitespaceControl) {
  check_all({
      {"a  {{- 'b' -}}  c", "abc"},
      {"  {% if true %}\n  x\n  {% endif %}\ny", "  x\ny"},
      {"a\n  {%- if true %} b {% endif -%}\n c", "a b c"},
      {"  {# note #}\n  x\n{# d #}\ny", "  x\ny"},
      {"{% if true %}\nkept{% endif %}", "kept"},
      {"x {{ 1 }}\n{{ 2 }}\n", "x 1\n2"},
      {"{%+ if true %}a{% endif %}", "a"},
      {"  {%+ if true %}a{% endif %}", "  a"},
      {"line\r\nnext\r\n", "line\nnext"},
      {"{% raw %}{{ x }}{% endraw %}", "{{ x }}"},
      {"{{ 'a' }}  {% if true %}b{% endif %}", "a  b"},
  });
}

TEST(JinjaTest, LoopVariables) {
  check_all({
      {"{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
       "{{ loop.first }}{{ loop.last }}{{ loop.length }} {% endfor %}",
       "1032TrueFalse3 2121FalseFalse3 3210FalseTrue3 "},
      {"{% for x in [1,2,3] %}{{ loop.previtem }}-{{ loop.nextitem }},{% endfor %}", "-2,1-3,2-,"},
      {"{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}", "ababa"},
      {"{% for x in [] %}a{% else %}empty{% endfor %}", "empty"},
      {"{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
       "0134"},
      {"{% for x in range(6) if x is odd %}{{ x }}/{{ loop.length }} {% endfor %}", "1/3 3/3 5/3 "},
      {"{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;"},
      {"{% set c = 0 %}{% for i in range(3) %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}", "1110"},
  });
}

TEST(JinjaTest, NamespaceSetAndMacros) {
  check_all({
      {"{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "6"},
      {"{% set a, b = 1, 'x' %}{{ b }}{{ a }}", "x1"},
      {"{% set s %}in {{ 1 + 1 }}{% endset %}[{{ s }}]", "[in 2]"},
      {"{% set s | upper %}abc{% endset %}{{ s }}", "ABC"},
      {"{% macro m(a, b='d') %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, b=2) }}", "1-d 1-2"},
      {"{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}body{% endcall %}", "<body>"},
      {"{% filter upper %}abc{{ 'd' }}{% endfilter %}", "ABCD"},
      {"{% generation %}gen{% endgeneration %}", "gen"},
      {"{% with a = 5 %}{{ a }}{% endwith %}{{ a }}", "5"},
      // A namespace holding itself: Python prints the cycle as {...} (this used to recurse until the stack overflowed).
      {"{% set ns = namespace(x=1) %}{% set ns.x = ns %}{{ ns }} {{ [ns, (ns, 2)] }}",
       "<Namespace {'x': <Namespace {...}>}> [<Namespace {'x': <Namespace {...}>}>, (<Namespace {'x': <Namespace {...}>}>, 2)]"},
  });
}

TEST(JinjaTest, ExpressionsAndPrinting) {
  check_all({
      {"{{ 1.0 }} {{ 10 / 4 }} {{ 10 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}",
       "1.0 2.5 5.0 3 -4 2 1024 0.5"},
      {"{{ 1e20 }} {{ 1.5e-5 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 123456789.0 }}",
       "1e+20 1.5e-05 0.30000000000000004 1e+16 123456789.0"},
      {"{{ [1, 2.0, 'a', \"b'\", none, true, {'k': [1]}] }}", "[1, 2.0, 'a', \"b'\", None, True, {'k': [1]}]"},
      {"{{ (1, 2) }} {{ (1,) }} {{ () }}", "(1, 2) (1,) ()"},
      {"{{ 'a' ~ 1 ~ none ~ undefined_var }}", "a1None"},
      {"{{ 'x' if false }}|{{ 'y' if true else 'z' }}", "|y"},
      {"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 2] }}", "True False True False"},
      {"{{ not 1 == 2 }} {{ none or 'd' }} {{ 0 and 1 }}", "True d 0"},
      {"{{ 'abc'[::-1] }} {{ [1, 2, 3][1:] }} {{ 'héllo'[1] }} {{ 'hello'[-3:-1] }} {{ [1,2,3,4][::2] }}",
       "cba [2, 3] é ll [1, 3]"},
      {"{{ 'a\\tb\\n' | tojson }} {{ '\\u00e9' }}", "\"a\\tb\\n\" é"},
      {"{{ x }}|{{ {'a': 1}.b }}|{{ none.x }}", "||"},
      {"{{ -3|abs }} {{ - 3 }}", "3 -3"},
      {"{{ 'a' 'b' }} {{ \"it's\" }}", "ab it's"},
  });
}

TEST(JinjaTest, Filters) {
  check_all({
      {"{{ '  x \\n'|trim }}|{{ 'xxhixx'|trim('x') }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}",
       "x|hi|Hello World|Hello"},
      {"{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'c']|sort }} {{ [3, 1, 2]|sort(reverse=true)|join(',') }}",
       "[1, 2, 3] ['A', 'b', 'c'] 3,2,1"},
      {"{{ [1, 2, 1, 3]|unique|list }} {{ [1, 2]|first }} {{ [1, 2]|last }} {{ []|first }}", "[1, 2, 3] 1 2 "},
      {"{{ 'abc'|length }} {{ {'a': 1}|length }} {{ undefined_var|length }} {{ 'héllo'|count }}", "3 1 0 5"},
      {"{{ x|default('d') }} {{ ''|default('e', true) }} {{ none|d('n') }}", "d e None"},
      {"{{ '3'|int + 1 }} {{ 'x'|int }} {{ '2.5'|float }} {{ 3.7|int }} {{ 2|float }}", "4 0 2.5 3 2.0"},
      {"{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 3|round }}", "2.0 4.0 2.67 3"},
      {"{{ {'b': 1, 'a': 2}|dictsort }} {{ {'a': 1}|items|list }}", "[('a', 2), ('b', 1)] [('a', 1)]"},
      {"{{ [{'r': 'u'}, {'r': 'a'}, {'r': 'u'}]|selectattr('r', 'equalto', 'u')|list|length }}", "2"},
      {"{{ [{'r': 'u'}, {'r': 'a'}]|rejectattr('r', 'eq', 'u')|map(attribute='r')|join }}", "a"},
      {"{{ [1, 2, 3, 4]|select('even')|list }} {{ [0, 1, '']|reject|list }} {{ ['a', 'b']|map('upper')|join('-') }}",
       "[2, 4] [0, ''] A-B"},
      {"{{ 'a\\nb\\n\\nc'|indent(2) }}|{{ 'x\\ny'|indent(2, true) }}", "a\n  b\n\n  c|  x\n  y"},
      {"{{ [1, [2], 'x']|reverse|list }} {{ 'abc'|reverse }} {{ [1, 2, 3]|sum }} {{ [4, 2, 9]|max }}",
       "['x', [2], 1] cba 6 9"},
      {"{{ '<a & b>'|e }} {{ 'one two  three'|wordcount }} {{ 'aXbX'|replace('X', '-') }}",
       "&lt;a &amp; b&gt; 3 a-b-"},
      {"{{ {'k': [1, 2.5, 'é\"'], 'n': none}|tojson }}", "{\"k\": [1, 2.5, \"é\\\"\"], \"n\": null}"},
      {"{{ {'a': {'b': []}}|tojson(indent=2) }}", "{\n  \"a\": {\n    \"b\": []\n  }\n}"},
      {"{{ [1, {'a': 2}]|tojson(separators=(',', ':')) }} {{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}",
       "[1,{\"a\":2}] {\"a\": 2, \"b\": 1}"},
      {"{{ 'é'|tojson(ensure_ascii=true) }} {{ '😀'|tojson(ensure_ascii=true) }}", "\"\\u00e9\" \"\\ud83d\\ude00\""},
      {"{{ [1, 2, 3, 4, 5]|batch(2)|list }}", "[[1, 2], [3, 4], [5]]"},
  });
}

TEST(JinjaTest, Tests) {
  check_all({
      {"{{ x is defined }} {{ x is undefined }} {{ none is none }} {{ 'a' is string }} {{ 1 is number }}",
       "False True True True True"},
      {"{{ 1 is integer }} {{ 1.0 is integer }} {{ 1.0 is float }} {{ {} is mapping }} {{ [] is iterable }}",
       "True False True True True"},
      {"{{ true is boolean }} {{ 1 is boolean }} {{ false is false }} {{ 1 is true }} {{ 'x' is sequence }}",
       "True False True False True"},
      {"{{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 2 is eq 2 }}",
       "True True True False True"},
      {"{{ 2 is not none }} {{ 'a' is in 'abc' }} {{ 3 is gt 2 }} {{ 'ab' is lower }}", "True True True True"},
  });
}

TEST(JinjaTest, StringAndDictMethods) {
  check_all({
      {"{{ ' x '.strip() }}|{{ 'xxy'.lstrip('x') }}|{{ 'a\\n\\n'.rstrip('\\n') }}", "x|y|a"},
      {"{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}",
       "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b,c']"},
      {"{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'abc'.upper() }} {{ 'ABC'.lower() }}",
       "True True ABC abc"},
      {"{{ 'a-a'.replace('a', 'b') }} {{ 'hello'.find('l') }} {{ 'hello'.count('l') }} {{ '-'.join(['a', 'b']) }}",
       "b-b 2 2 a-b"},
      {"{{ '{} and {x}'.format(1, x=2) }} {{ \"don't stop\".title() }}", "1 and 2 Don'T Stop"},
      {"{% set d = {'a': 1, 'b': 2} %}{{ d.keys()|list }} {{ d.values()|list }} {{ d.get('a') }} {{ d.get('z', 0) }} "
       "{{ d.get('z') }} {{ d['b'] }}",
       "['a', 'b'] [1, 2] 1 0 None 2"},
  });
}

TEST(JinjaTest, VariablesFromOptions) {
  lmlab::ChatOptions opts;
  opts.bos_token = "<s>";
  opts.add_generation_prompt = true;
  opts.extra = {{"enable_thinking", false}};
  lmlab::ChatTemplate t(
      "{{ bos_token }}{{ add_generation_prompt }}{{ enable_thinking is false }}{{ tools is none }}"
      "{{ documents is none }}{{ messages[0].content }}");
  EXPECT_EQ(t.apply(json::array({{{"role", "user"}, {"content", "hi"}}}), opts), "<s>TrueTrueTrueTruehi");
}

TEST(JinjaTest, ErrorsCarryPositions) {
  EXPECT_EQ(error_of("{{ raise_exception('bad role') }}"), "[chat_template] line 1, column 4: bad role");
  EXPECT_EQ(error_of("a\n  {% if %}"), "[chat_template] line 2, column 9: unexpected end of statement block, expected an expression");
  EXPECT_EQ(error_of("{% for x in y %}"), "[chat_template] line 1, column 17: unexpected end of template, expected 'endfor'");
  EXPECT_EQ(error_of("x\n{{ 'a' + 1 }}"), "[chat_template] line 2, column 8: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{{ x.y }}"), "[chat_template] line 1, column 5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ 1 | nosuch }}"), "[chat_template] line 1, column 8: No filter named 'nosuch'.");
  EXPECT_EQ(error_of("{% frobnicate %}"), "[chat_template] line 1, column 4: Encountered unknown tag 'frobnicate'.");
  EXPECT_EQ(error_of("{{ x | tojson }}"), "[chat_template] line 1, column 8: Object of type Undefined is not JSON serializable");
  EXPECT_EQ(error_of("{% break %}"), "[chat_template] line 1, column 4: 'break' outside of a loop");
  EXPECT_EQ(error_of("{{ 'abc"), "[chat_template] line 1, column 4: unexpected end of string literal");
}

TEST(JinjaTest, LimitsStopRunawayTemplates) {
  EXPECT_NE(error_of("{% for i in range(100001) %}{% endfor %}").find("Range too big"), std::string::npos);
  EXPECT_NE(error_of("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}")
                .find("evaluation budget"), std::string::npos);
  EXPECT_NE(error_of("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("recursion"), std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 100000000 }}").find("exceeded"), std::string::npos);
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nested too deeply"), std::string::npos);
}

}  // namespace
