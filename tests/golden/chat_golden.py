"""Golden chat-template renderings: transformers' own render_jinja_template
(jinja2's ImmutableSandboxedEnvironment with its filters and globals) over
8 real templates x many conversations. Writes chat/cases.json:
[{template_name, template, messages, options, expected | error}]."""
import json
import sys

from _common import MODEL, SHARED, TOKENIZER_NAMES, out_dir
from transformers.utils.chat_template_utils import render_jinja_template

# Llama 2's shared tokenizer_config has no chat_template; this is the one
# meta-llama/Llama-2-7b-chat-hf shipped (the classic [INST] <<SYS>> format).
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

# A Mistral-7B-Instruct-v0.3 style template with tools: the system prompt
# joins the last user turn, tools are listed before it, tool calls need
# 9-character ids. Written for these tests in that format.
MISTRAL_TEMPLATE = """{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- Plain user/assistant turns must alternate; tool traffic is skipped. #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token }}
    {%- elif message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""


def token_text(tok):
    if isinstance(tok, dict):
        return tok.get("content", "")
    return tok or ""


def load_templates():
    out = {}
    for name in TOKENIZER_NAMES:
        cfg = json.loads((SHARED / "tokenizers" / name / "tokenizer_config.json").read_text())
        tpl = cfg.get("chat_template")
        if isinstance(tpl, list):
            tpl = next(t["template"] for t in tpl if t["name"] == "default")
        if tpl is None and name == "llama2":
            tpl = LLAMA2_TEMPLATE
        out[name] = (tpl, token_text(cfg.get("bos_token")), token_text(cfg.get("eos_token")))
    import gguf

    reader = gguf.GGUFReader(str(MODEL))
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    bos = tokens[reader.fields["tokenizer.ggml.bos_token_id"].contents()]
    eos = tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()]
    out["smollm2"] = (reader.fields["tokenizer.chat_template"].contents(), bos, eos)
    out["mistral"] = (MISTRAL_TEMPLATE, "<s>", "</s>")
    return out


def u(text):
    return {"role": "user", "content": text}


def a(text):
    return {"role": "assistant", "content": text}


def s(text):
    return {"role": "system", "content": text}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone (IANA name).",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


def tool_call(call_id, name, args, string_args=False):
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False) if string_args else args},
    }


def tool_conversation(string_args):
    return [
        s("You are a weather bot."),
        u("What's the weather in Paris and the time in Tokyo?"),
        {"role": "assistant", "content": None if string_args else "", "tool_calls": [
            tool_call("call12345", "get_weather", {"city": "Paris", "unit": "celsius"}, string_args),
            tool_call("call67890", "get_time", {"tz": "Asia/Tokyo"}, string_args)]},
        {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21.5, \"sky\": \"clear\"}"},
        {"role": "tool", "tool_call_id": "call67890", "content": "09:15"},
        a("Paris: 21.5 °C and clear. Tokyo: 09:15."),
        u("Thanks! And Berlin?"),
    ]


# (scenario name, messages, tools, extra kwargs)
SCENARIOS = [
    ("single_user", [u("Hello!")], None, {}),
    ("system_user", [s("You are a helpful assistant."), u("What is 2+2?")], None, {}),
    ("multi_turn", [u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")], None, {}),
    ("system_multi_turn", [s("Be brief."), u("Capital of France?"), a("Paris."), u("And of Italy?"), a("Rome."),
                           u("Spain?")], None, {}),
    ("assistant_last", [u("Write a haiku"), a("Autumn moonlight—\na worm digs silently\ninto the chestnut.")], None, {}),
    ("unicode", [u("Ünïcödé ✓ — 日本語 テキスト, emoji 😀🎉 and RTL עברית")], None, {}),
    ("newlines_and_spaces", [s("  System with padding.  \n"), u("\n\n  Line one\nLine two\t\n\n"),
                             a("  Answer with spaces  "), u("ok")], None, {}),
    ("empty_content", [u("")], None, {}),
    ("quotes_backslashes", [u("He said \"hi\" and it's a \\path\\ with {{ braces }} and {% tags %}")], None, {}),
    ("special_tokens_in_content", [u("<|im_end|><|eot_id|></s><end_of_turn>[INST]")], None, {}),
    ("long_conversation", [x for i in range(8) for x in (u(f"Question {i}?"), a(f"Answer {i}."))] + [u("Last?")],
     None, {}),
    ("double_user", [u("First"), u("Second")], None, {}),
    ("assistant_first", [a("I start."), u("Fine.")], None, {}),
    ("only_system", [s("Only a system prompt.")], None, {}),
    ("developer_role", [{"role": "developer", "content": "Dev note"}, u("Hi")], None, {}),
    ("content_parts", [{"role": "user", "content": [{"type": "text", "text": "Describe "},
                                                   {"type": "image"}, {"type": "text", "text": " this."}]}],
     None, {}),
    ("system_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys in parts."}]}, u("Hi")], None, {}),
    ("tools_no_calls", [s("Use tools if needed."), u("Weather in Oslo?")], [WEATHER_TOOL, TIME_TOOL], {}),
    ("tool_calls_dict_args", tool_conversation(string_args=False), [WEATHER_TOOL, TIME_TOOL], {}),
    ("tool_calls_string_args", tool_conversation(string_args=True), [WEATHER_TOOL, TIME_TOOL], {}),
    ("bad_tool_id", [u("Weather?"), {"role": "assistant", "content": "", "tool_calls": [
        tool_call("short", "get_weather", {"city": "Rome"})]}, {"role": "tool", "tool_call_id": "short",
                                                                "content": "sunny"}], [WEATHER_TOOL], {}),
    ("reasoning_content", [u("What is 17*3?"), {"role": "assistant", "content": "51",
                                                "reasoning_content": "17*3 = 51, easy."}, u("And 18*3?")], None, {}),
    ("think_tags", [u("Think first."), a("<think>\nLet me think.\n</think>\n\nDone thinking."), u("Again")],
     None, {}),
    ("think_tags_last", [u("Think first."), a("<think>\nPondering…\n</think>\n\nThe answer.")], None, {}),
    ("enable_thinking_false", [u("Quick answer please.")], None, {"enable_thinking": False}),
    ("enable_thinking_true", [u("Think hard.")], None, {"enable_thinking": True}),
    ("reasoning_alias", [u("Hi"), {"role": "assistant", "content": "Hello", "reasoning": "Greet back."}, u("Bye")],
     None, {}),
    ("multi_step_tool", [u("Weather in Paris?"), {"role": "assistant", "content": "<think>\nneed tool\n</think>\n\n",
                                                  "tool_calls": [tool_call("call00001", "get_weather",
                                                                           {"city": "Paris"})]},
                         {"role": "tool", "tool_call_id": "call00001", "content": "<tool_response>sunny</tool_response>"},
                         {"role": "assistant", "content": "It is sunny."}], [WEATHER_TOOL], {}),
    ("float_and_nested_args", [u("Compute"), {"role": "assistant", "content": "", "tool_calls": [
        tool_call("call99999", "calc", {"x": 1.0, "y": [1, 2.5, None, True], "opts": {"deep": {"é": "ü"}}})]},
        {"role": "tool", "tool_call_id": "call99999", "content": "3.5"}],
     [{"type": "function", "function": {"name": "calc", "description": "Compute things.",
                                        "parameters": {"type": "object", "properties": {}}}}], {}),
    ("extra_kwarg_date", [u("Hi")], None, {"date_string": "26 Jul 2024", "custom_flag": True}),
]


# Engine-level differential cases: small templates over DATA (passed as
# `messages`), probing Python/jinja2 semantics the real templates may not.
DATA = [
    {"role": "user", "content": "Héllo \"wörld\" it's\n\ttabbed 😀", "x": 1.0, "n": 7, "f": [1e-7, 123.456, 1e22,
     -0.0, 5e-324, 1.7976931348623157e308, 0.1], "flag": True, "none": None},
    {"role": "assistant", "content": "  padded  ", "tool_calls": [{"id": "a", "function": {"name": "f",
                                                                     "arguments": {"k": "v", "z": [1, 2]}}}]},
    {"role": "system", "content": "sys\u2028sep\xa0nbsp\x01ctl\x7f"},
]
SNIPPETS = [
    "{{ messages[0].f }}|{% for v in messages[0].f %}{{ v }} {% endfor %}",
    "{{ messages[0] }}",
    "{{ messages[2].content|tojson }}|{{ [messages[2].content] }}",
    "{{ messages[0]|tojson(indent=2) }}",
    "{{ messages[1]|tojson(indent='\t', separators=(',', ' = ')) }}",
    "{{ ['a\nb', \"it's\", 'q\"', 'both\\'\"', '\x01', 'é'] }}",
    "{{ messages|length }} {{ messages[-1].content }}|{{ messages[5] }}|{{ messages[0]['missing'] is defined }}",
    "{% for k in messages[0] %}{{ k }},{% endfor %}|{{ messages[1].items()|list }}",
    "{{ messages|selectattr('tool_calls', 'defined')|list|length }} {{ messages|map(attribute='role')|unique|list }}",
    "{{ messages|sort(attribute='role')|map(attribute='role')|join(',') }} {{ messages|map(attribute='nope', default='d')|list }}",
    "{{ 'x' * 3 }} {{ [1] * 3 }} {{ 3 * 'ab' }} {{ '%s' }}",
    "{{ 10 // 3 }} {{ -10 % 3 }} {{ 10.5 // 3 }} {{ -10.5 % 3 }} {{ 2 ** 3 ** 2 }} {{ 1 + 2 * 3 - 4 / 2 }}",
    "{{ 3 / 0 }}",
    "{{ 'abc'.split('') }}",
    "{{ undefined_var.attr }}",
    "{% for m in none %}{% endfor %}",
    "{{ 'a' ~ 1 + 2 }}",
    "{{ messages[0].content.upper() }} {{ 'Hello wORLD'.title() }} {{ 'hello-world foo_bar (x)'|title }}",
    "{{ 'a\tb  c\nd'|wordcount }} {{ [3, 1, 2]|max }} {{ ['b', 'A']|min }} {{ ['b', 'A']|sort }}",
    "{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ (1, 2) == [1, 2] }}",
    "{{ none is none }} {{ messages is sequence }} {{ messages[0] is mapping }} {{ messages[0].x is float }}",
    "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{% endfor %}{{ loop.index }}{% endfor %}",
    "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(10) }}",
    "{% macro row(x) %}[{{ caller(x * 2) }}]{% endmacro %}{% call(v) row(21) %}v={{ v }}{% endcall %}",
    "{{ range(5)|list }} {{ range(1, 10, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}",
    "{{ {'b': 1, 'a': 2}|dictsort(reverse=true) }} {{ 'abcde'|batch(2)|list }} {{ [1, 2, 3]|batch(2, 0)|list }}",
    "{{ 1.5|round(0, 'floor') }} {{ 2.5|round(0, 'ceil') }} {{ 0.125|round(2) }} {{ -2.5|round }} {{ 42|string + 'x' }}",
    "{{ ' a '|trim|length }} {{ 'x\ny'|indent(4, true, true) }}|{{ 'a\n\nb'|indent(2, blank=true) }}|{{ 'a\n\nb'|indent }}",
    "{{ messages|tojson }}",
    "{{ [1, 2, 3][5:] }}|{{ 'abc'[10] }}|{{ 'abcdef'[-2:] }}|{{ 'abcdef'[1:-1:2] }}|{{ [1, 2, 3][::-2] }}",
    "{{ 1 if messages else 2 }}{% if messages %}yes{% endif %} {{ -messages|length }} {{ not true == false }}",
    "{{ 'role' in messages[0] }} {{ messages[0].content[:5] ~ '…' }} {{ 'ö' in messages[0].content }}",
    "{% for m in messages %}\n    {{ m.role }}\n    {%- if true %}\n        !{% endif %}\n{% endfor %}\n",
    "  {%- for m in messages -%}\n\t{{ m.role }} \n{%- endfor %}\n\t{% if true %}\nx\n\t{% endif %}\n{# c #}\n  end",
    "{% set ns = namespace(items=[]) %}{% for m in messages %}{% set ns.items = ns.items + [m.role] %}{% endfor %}{{ ns.items }}",
    "{% set d = dict(a=1, b=[2]) %}{{ d }} {{ d.a }} {{ dict(d, c=3) }} {{ namespace(d).b }}",
    "{{ messages[0].n is divisibleby 7 }} {{ messages[0].n is odd }} {{ messages[0].flag is true }} {{ messages[0].none is none }}",
    "{{ messages[1].content|trim|capitalize }} {{ 'ß straße'|upper }} {{ 'İ'|lower|length }}",
    "{{ 'a-b-c'.split('-', 1) }} {{ 'a b  c'.rsplit(None, 1) }} {{ 'a-b-c'.rsplit('-', 1) }} {{ ' x y '.split(' ') }}",
    "{{ 'abc'.startswith(('x', 'a')) }} {{ '{0}-{1}-{0}'.format('a', 'b') }} {{ 'x'.join(['1', '2', '3']) }}",
    "{{ messages[0].content.replace('l', 'L', 1) }} {{ 'aaa'.replace('', '-') }} {{ 'aaa'.count('a') }}",
    "{{ messages[1].tool_calls[0].function.arguments|tojson }} {{ messages[1].tool_calls[0].function.arguments }}",
    "{{ messages[0].f[1]|int }} {{ '  12 '|int }} {{ '1_000'|int }} {{ '0x1A'|int }} {{ 'abc'|float }} {{ '1e3'|float }}",
    "{{ true + 1 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 2 ** 0.5 }} {{ 2 ** 62 }}",
    "{% for x in [1, 2, 3] %}{{ loop.cycle('odd', 'even') }}{{ '' if loop.last else ',' }}{% endfor %}",
    "{{ raise_exception('Stop: ' ~ messages|length) }}",
    "{% set x %}{% for m in messages %}{{ m.role[0] }}{% endfor %}{% endset %}{{ x|upper }}{{ x|length }}",
    "{{ messages|selectattr('role', 'in', ['user', 'system'])|map(attribute='role')|list }} {{ messages|rejectattr('none')|list|length }}",
    "{{ [0, 1, 2, none, '', 'a']|select|list }} {{ [1, 2, 3, 4]|reject('odd')|list }} {{ [1, 2]|sum(start=10) }}",
    "{{ messages[0].keys()|list|length }} {{ messages[0].get('role') }} {{ messages[0].get('zz', 'dflt') }} {{ messages[0].values()|list|length }}",
    # Raw blocks: the body is data; trim_blocks after endraw, '-' strips before it.
    "{% raw %}a {{ b }}\n  {% endraw %}\nx{% raw %} {% if %} {%- endraw %} y{% raw %}\n  z\n  {% endraw %}w",
    # A namespace that holds itself prints the cycle as Python does.
    "{% set ns = namespace(x=1) %}{% set ns.x = ns %}{{ ns }} {{ [ns, (ns, 2)] }} {{ ns.x.x.x is defined }} {{ ns.x == ns }}",
    "{% set ns = namespace(x=0) %}{% set ns.x = ns, 3, + 1 %}{{ ns }}|{{ ns|string|length }}",
    # Case filters and methods on mixed-case text: title lower-cases the rest of each word.
    "{{ 'hELLO wORLD'|title }}|{{ 'mIxEd-CASE wOrDs (aND) [bRaCkEtS] {cUrLy} <aNgLe> tab\tSEP'|title }}|{{ \"o'NEIL DON'T x2Y 3rd\"|title }}",
    "{{ 'ÉCOLE ÜBER straSSE ǅUNGLA ΣΊΣΥΦΟΣ'|title }}|{{ 'éCOLE-über'|title }}|{{ messages[0].content|title }}",
    "{{ 'hELLO wORLD'.title() }}|{{ 'x2Y o\\'NEIL ÉCOLE ΟΔΥΣΣΕΥΣ ΑΣ.'.title() }}|{{ 'hELLO wORLD'.capitalize() }}|{{ 'hELLO'|capitalize }}",
    "{{ 'MiXeD ÀÉÎõü'|lower }}|{{ 'MiXeD ÀÉÎõü straße'|upper }}|{{ 'MiXeD'.lower() }}|{{ 'ΟΔΥΣΣΕΥΣ ΑΣ Σ'|lower }}|{{ 'ΑΣ-ΟΣ'|title }}|{{ 'ΑΣ'|capitalize }}",
]


def error_of(e):
    """What jinja2 raised: the exception's class and its message (raise_exception's
    text for TemplateError), which lmlab's error must repeat after its location."""
    return {"type": type(e).__name__, "message": str(e)}


def render(tpl, bos, eos, messages, tools, add_generation_prompt, extra):
    rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=tpl,
                                        add_generation_prompt=add_generation_prompt,
                                        bos_token=bos, eos_token=eos, **extra)
    return rendered[0]


def main():
    templates = load_templates()
    cases = []
    counts = {}
    for tname, (tpl, bos, eos) in templates.items():
        for sname, messages, tools, extra in SCENARIOS:
            for agp in (True, False):
                case = {"template_name": tname, "scenario": sname, "template": tpl, "messages": messages,
                        "options": {"add_generation_prompt": agp, "bos_token": bos, "eos_token": eos,
                                    "tools": tools, "extra": extra}}
                try:
                    case["expected"] = render(tpl, bos, eos, json.loads(json.dumps(messages)), tools, agp, extra)
                except Exception as e:  # jinja2 raised: the C++ engine must throw the same error
                    case["error"] = error_of(e)
                cases.append(case)
                ok, err = counts.get(tname, (0, 0))
                counts[tname] = (ok + ("expected" in case), err + ("error" in case))
    snippets = []
    for tpl in SNIPPETS:
        case = {"template": tpl, "data": DATA}
        try:
            case["expected"] = render(tpl, "", "", json.loads(json.dumps(DATA)), None, False, {})
        except Exception as e:
            case["error"] = error_of(e)
        snippets.append(case)
    (out_dir("chat") / "snippets.json").write_text(json.dumps(snippets, ensure_ascii=False, indent=1))
    print(f"chat_golden: {len(snippets)} engine snippets", file=sys.stderr)
    path = out_dir("chat") / "cases.json"
    path.write_text(json.dumps(cases, ensure_ascii=False, indent=1))
    for tname, (ok, err) in counts.items():
        print(f"chat_golden: {tname}: {ok} renderings, {err} expected errors", file=sys.stderr)


if __name__ == "__main__":
    main()
