"""Every command's JSON output against the documented schema, docs/schema.json.

The schema is JSON Schema (draft 2020-12); the few keywords it uses are checked by the small
validator below, so that the test needs no dependency gradcli does not have.
"""

import json
import math
from pathlib import Path

import pytest

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "schema.json").read_text())
KEYWORDS = {"$schema", "$id", "title", "description", "$defs", "$ref", "anyOf", "type", "properties", "required",
            "additionalProperties", "items", "enum", "const", "minimum"}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _resolve(ref: str):
    node = SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _is(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, TYPES[kind])


def errors(value, schema, path="$") -> list[str]:
    """Where value breaks schema (empty: it conforms)."""
    unknown = set(schema) - KEYWORDS
    assert not unknown, f"the validator does not know {unknown}"
    if "$ref" in schema:
        return errors(value, _resolve(schema["$ref"]), path)
    if "anyOf" in schema:
        found = [errors(value, s, path) for s in schema["anyOf"]]
        if all(found):
            return [f"{path}: matches none of the alternatives; closest: " + "; ".join(min(found, key=len))]
        return []
    out = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(value, k) for k in kinds):
            return [f"{path}: {value!r:.60} is not {schema['type']}"]
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r:.60} is not one of {schema['enum']}")
    if "minimum" in schema and _is(value, "number") and value < schema["minimum"]:
        out.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: no {key!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                out += errors(item, properties[key], f"{path}.{key}")
            elif extra is False:
                out.append(f"{path}: {key!r} is not in the schema")
            elif isinstance(extra, dict):
                out += errors(item, extra, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(item, schema["items"], f"{path}[{i}]")
    return out


def test_the_validator_rejects_what_the_schema_forbids():
    assert errors({"schema_version": 3}, SCHEMA)  # far from complete
    tensor = {"$ref": "#/$defs/tensor"}
    assert not errors({"data": [1.0, "nan"], "shape": [2], "dtype": "float32"}, tensor)
    assert errors({"data": [1.0], "shape": [1], "dtype": "int8"}, tensor)
    assert errors({"data": [1.0], "shape": [1], "dtype": "float32", "extra": 1}, tensor)
    assert errors({"data": [float("nan")], "shape": [1], "dtype": "float32"}, tensor)  # NaN must be a string


COMMANDS = [
    ["grad", "x**2*y", "x=3", "y=2"],
    ["grad", "mean((t - p)**2)", "p=[1,2,3]", "t=[2,3,4]", "--wrt", "p", "--dtype", "float16"],
    ["grad", "sin(x)*exp(y)", "x=1", "y=2", "--method", "all"],
    ["grad", "x**3", "x=2", "--order", "3"],
    ["grad", "(x + w)*(w + 1)", "w=1", "x=2", "--accumulate", "2"],
    ["grad", "2*x**2 + 5", "x=5", "--explain"],
    ["grad", "log(x)", "x=-1"],  # outside the domain: NaN in the numbers
    ["grad", "sum(x)", "x=rand(3)", "--seed", "3"],
    ["grad", "floor(x)", "x=0.5", "--no-check"],
    ["jacobian", "[x[0]**2 + x[1]*4, x[1]**3 + log(x[0])]", "x=[2,3]"],
    ["jacobian", "[x*y, x + y]", "x=1", "y=2", "--method", "all"],
    ["jacobian", "[r*cos(t), r*sin(t)]", "r=1", "t=0.5"],  # the assembled matrix and its formulas
    ["grad", "sum(x**2)", "x=rand(2000)", "--seed", "3"],  # an input too large to echo: its summary
    ["hessian", "x**2*y + sin(x*y)", "x=1", "y=2"],
    ["vjp", "(x + 1)**2", "x=eye(2)", "v=ones(2,2)"],
    ["jvp", "[x[0]*x[1], sin(x[0])]", "x=[1,2]", "v=[1,0]"],
    ["eval", "3 + 2*x + x**2", "x=2"],
    ["graph", "(x + w)*(w + 1)", "w=1", "x=2"],
    ["diff", "sin(x)*exp(x**2)", "x", "--order", "2"],
    ["functions"],
    ["functions", "huber"],
    ["plot", "sin(x)", "x=-1:1:5"],
    ["plot", "x**2 - y**2", "x=-1:1:3", "y=-1:1:3", "--grid"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a[:2]) + (" " + a[-1] if a[-1].startswith("--") else "")
                                                for a in COMMANDS])
@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_every_command_follows_the_schema(run, args, fmt):
    result = run(*args, "--format", fmt)
    assert result.exit_code in (0, 1), result.stderr
    lines = result.stdout.splitlines() if fmt == "ndjson" else [result.stdout]
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert errors(doc, SCHEMA) == [], json.dumps(doc)[:2000]


def test_every_batch_line_follows_the_schema(sh):
    requests = "\n".join([
        'grad "x**2" x=3',
        'jacobian "[x*y, x+y]" x=1 y=2',
        'grad "x.y" x=1',
        'frobnicate x',
        '{"command": "hessian", "expr": "x**2*y", "values": {"x": 1, "y": 2}}',
        'diff "x**3*y"',
        'graph "x*y" x=1 y=2',
        'grad "log(x)" x=-1',
        'plot "sin(x)" x=-1:1:3',
        'functions huber',
    ])
    result = sh("batch", input=requests + "\n")
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 10
    for doc in docs:
        assert errors(doc, SCHEMA) == [], json.dumps(doc)[:2000]
    assert {"error" in d for d in docs} == {True, False}


def test_a_batch_line_lost_with_its_worker_follows_the_schema():
    from gradcli.cli.batch import lost_line

    status, text = lost_line((7, 'grad "x" x=1\n'), "its worker process died (signal 9)")
    doc = json.loads(text)
    assert status == 3 and doc["line"] == 7 and doc["exit_status"] == 3
    assert "worker process died" in doc["error"]["message"]
    assert errors(doc, SCHEMA) == [], doc
