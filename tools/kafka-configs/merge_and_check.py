"""Cross-checks topic.json/broker.json against Kafka's generated HTML docs, then merges
the real broker's DescribeConfigs answers (describe-topic.json, describe-broker.json)
into topic.json / broker.json as a "describe_configs" field per config.
Run: python3 src/merge_and_check.py   (from /work/scratch/kafka-configs)"""
import json, re, html, sys

def load(p): return json.load(open(p))

def parse_docs(path):
    out = {}
    txt = open(path).read()
    for m in re.finditer(r'<li>\s*<h4><a id="([^"]+)"></a>.*?</h4>\s*<p>(.*?)</p>\s*<table><tbody>(.*?)</tbody></table>', txt, re.S):
        name, doc, table = m.group(1), m.group(2), m.group(3)
        rows = dict((k, v) for k, v in re.findall(r'<tr><th>(.*?):</th><td>(.*?)</td></tr>', table, re.S))
        rows['_doc'] = doc
        out[name] = rows
    return out

problems = []
for kind, jf, hf in (('topic', 'topic.json', 'topic-configs-docs.html'), ('broker', 'broker.json', 'broker-configs-docs.html')):
    j = load(jf); docs = parse_docs(hf)
    non_internal = [c for c in j['configs'] if not c['internal']]
    if set(docs) != {c['name'] for c in non_internal}:
        problems.append((kind, 'docs set differs', set(docs) ^ {c['name'] for c in non_internal}))
    for c in non_internal:
        d = docs[c['name']]
        if d['Type'] != c['type'].lower(): problems.append((kind, c['name'], 'type', d['Type']))
        if html.unescape(d['Default']) != html.unescape(html.escape(c['docs_default'])) and d['Default'] != c['docs_default']:
            problems.append((kind, c['name'], 'default', d['Default'], c['docs_default']))
        if d['Importance'] != c['importance'].lower(): problems.append((kind, c['name'], 'importance'))
        if kind == 'broker' and d['Update Mode'] != c['dynamic']:
            problems.append((kind, c['name'], 'update mode', d['Update Mode'], c['dynamic']))
        if kind == 'topic' and d.get('Server Default Property', '') != (c['server_default_property'] or ''):
            problems.append((kind, c['name'], 'server default property', d.get('Server Default Property'), c['server_default_property']))
print('docs cross-check problems:', problems)

def slim(e):
    return {k: e[k] for k in ('value', 'source', 'source_name', 'is_sensitive', 'read_only', 'config_type',
                              'config_type_name', 'synonyms', 'documentation')}

def describe_default(e):
    """The value the broker reports as the built-in default: the entry's value if its source is
    DEFAULT_CONFIG, else the DEFAULT_CONFIG synonym of the same name, else None."""
    if e['source_name'] == 'DEFAULT_CONFIG':
        return e['value']
    for s in e['synonyms']:
        if s['source_name'] == 'DEFAULT_CONFIG' and s['name'] == e['name']:
            return s['value']
    return None

notes = {}
# ---- topic ----
t = load('topic.json'); dt = load('describe-topic.json')
fresh = {e['name']: e for e in dt['cfg-default']['configs']}
custom = {e['name']: e for e in dt['cfg-custom']['configs']}
diffs = []
for c in t['configs']:
    e = fresh.get(c['name'])
    c['describe_configs'] = slim(e) if e else None
    c['describe_configs_hidden'] = e is None
    if e:
        if e['value'] != c['default']: diffs.append((c['name'], c['default'], e['value']))
        if e['documentation'] != c['documentation']: diffs.append((c['name'], 'documentation differs'))
        if e['config_type_name'] != c['type']: diffs.append((c['name'], 'type', c['type'], e['config_type_name']))
t['describe_configs_note'] = ("describe_configs = the entry a real 3.9.2 broker (start-kafka.sh settings) returned for a topic "
                              "created with no configs (DescribeConfigs v4, include_synonyms & include_documentation).")
t['describe_vs_configdef_default_differences'] = diffs
t['describe_order_fresh_topic'] = [e['name'] for e in dt['cfg-default']['configs']]
json.dump(t, open('topic.json', 'w'), indent=2)
print('topic: describe value != ConfigDef default:', diffs)

# ---- broker ----
b = load('broker.json'); db = load('describe-broker.json')['1']
ent = {e['name']: e for e in db['configs']}
diffs = []; hidden = []
for c in b['configs']:
    e = ent.get(c['name'])
    c['describe_configs'] = slim(e) if e else None
    c['describe_configs_hidden'] = e is None
    if e is None:
        hidden.append(c['name']); continue
    c['describe_default_value'] = describe_default(e)
    if c['describe_default_value'] != c['default'] and not c['sensitive']:
        diffs.append((c['name'], c['default'], c['describe_default_value'], e['source_name']))
    if e['read_only'] != c['read_only_in_describe_configs']: diffs.append((c['name'], 'read_only mismatch'))
    if e['documentation'] != c['documentation']: diffs.append((c['name'], 'documentation differs'))
    if e['config_type_name'] != c['type']: diffs.append((c['name'], 'type', c['type'], e['config_type_name']))
b['describe_configs_note'] = ("describe_configs = the entry a real 3.9.2 broker (node.id=1, start-kafka.sh server.properties) "
                              "returned for BROKER resource '1'. Values with source STATIC_BROKER_CONFIG come from that "
                              "server.properties; describe_default_value is the DEFAULT_CONFIG value/synonym (null = no default).")
b['describe_hidden'] = hidden
b['describe_extra_entries_not_in_configdef'] = [e['name'] for e in db['configs'] if e['name'] not in {c['name'] for c in b['configs']}]
b['describe_vs_configdef_default_differences'] = diffs
b['describe_order_broker_1'] = [e['name'] for e in db['configs']]
json.dump(b, open('broker.json', 'w'), indent=2)
print('broker hidden:', hidden)
print('broker extra:', b['describe_extra_entries_not_in_configdef'])
print('broker diffs:', diffs)
