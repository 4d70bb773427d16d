"""With --json, stdout holds exactly one JSON document: the result, the error, or both."""

from __future__ import annotations

import io
import json

import pytest

from cairn.cli.output import Output

ERROR = {"code": "CAIRN-E020", "message": "damaged", "hint": "repair", "exit": 20}


def written(output: Output, out: io.StringIO, error: dict[str, object] | None = None) -> object:
    output.finish(error)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def test_a_result() -> None:
    out = io.StringIO()
    output = Output(json_mode=True, out=out)
    output.json({"removed": 1})
    assert written(output, out) == {"removed": 1}


def test_an_error_after_a_result_joins_it() -> None:
    out = io.StringIO()
    output = Output(json_mode=True, out=out)
    output.json([{"id": "ab"}])
    assert written(output, out, ERROR) == {"result": [{"id": "ab"}], "error": ERROR}


def test_an_error_alone() -> None:
    out = io.StringIO()
    assert written(Output(json_mode=True, out=out), out, ERROR) == {"error": ERROR}


def test_a_second_result_is_a_bug() -> None:
    output = Output(json_mode=True, out=io.StringIO())
    output.json({"forget": 1})
    with pytest.raises(RuntimeError, match="one JSON result"):
        output.json({"prune": 2})


def test_human_mode_prints_no_json() -> None:
    out = io.StringIO()
    output = Output(json_mode=False, out=out)
    output.json({"removed": 1})
    output.finish(ERROR)
    assert out.getvalue() == ""
