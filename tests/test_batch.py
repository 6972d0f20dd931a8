"""Batch inference without Ray: the row schema (lfmrt.ray.rows), the BatchEngine that runs rows
through the Scheduler, and ``lfmrt batch`` in-process: order kept, errors per row, and a run
killed mid-way then restarted completes every row exactly once (JSONL and Parquet)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import lfmrt
from lfmrt.cli.main import main as lfmrt_main
from lfmrt.ray import ERROR_COLUMN, BatchEngine, LfmrtProcessorConfig
from lfmrt.ray.rows import STRUCTURED, check_sampling_params, finished_row

MAX_TOKENS = 4
GREEDY = {"temperature": 0.0, "max_tokens": MAX_TOKENS}


@pytest.fixture(scope="module")
def model():
    return lfmrt.Model.load("demo", n_threads=1)


def _prompts(n: int) -> list[str]:
    words = ["amber", "birch", "coral", "delta", "ember", "fjord", "grove"]
    return [f"{words[i % 7]} {words[(i * 2) % 7]} no. {i}" for i in range(n)]


def test_sampling_params_take_vllm_names_and_name_the_bad_field():
    assert check_sampling_params({"temperature": 0, "top_k": -1, "max_tokens": 8.0, "stop": ["\n"], "n": 1,
                                  "seed": None}) == {"temperature": 0.0, "top_k": 0, "max_tokens": 8, "stop": ["\n"]}
    with pytest.raises(TypeError, match="sampling_params.top_p"):
        check_sampling_params({"top_p": "high"})
    with pytest.raises(ValueError, match="sampling_params.best_of"):
        check_sampling_params({"best_of": 2})
    with pytest.raises(ValueError, match="sampling_params.n"):
        check_sampling_params({"n": 2})
    with pytest.raises(TypeError, match="sampling_params.max_tokens"):
        check_sampling_params({"max_tokens": 2.5})


def test_processor_config_names_the_bad_field():
    with pytest.raises(ValueError, match="concurrency"):
        LfmrtProcessorConfig(model_source="demo", concurrency=(3, 2))
    with pytest.raises(ValueError, match="batch_size"):
        LfmrtProcessorConfig(model_source="demo", batch_size=0)
    with pytest.raises(ValueError, match="engine_kwargs: unknown n_gpu_layers"):
        LfmrtProcessorConfig(model_source="demo", engine_kwargs={"n_gpu_layers": 1})
    with pytest.raises(TypeError, match="sampling_params.temperature"):
        LfmrtProcessorConfig(model_source="demo", sampling_params={"temperature": "0"})


def test_engine_rows_equal_each_prompt_alone(model):
    """Rows submitted from another thread, more than max_batch at once, in three forms
    (prompt, tokenized_prompt, messages), each equal to the prompt run alone."""
    prompts = _prompts(24)
    engine = BatchEngine(model, sampling_defaults=GREEDY, max_batch=5)
    try:
        futures = [engine.submit({"prompt": p}) for p in prompts]
        tokenized = engine.submit({"tokenized_prompt": model.tokenize(prompts[0])})
        conversation = [{"role": "user", "content": prompts[1]}]
        chat = engine.submit({"messages": conversation, "sampling_params": {"max_tokens": 2}})
        outputs = [f.result(timeout=120) for f in futures]
        for prompt, out in zip(prompts, outputs):
            alone = model.generate(prompt, **GREEDY)
            assert out["generated_tokens"] == alone.tokens
            assert out["generated_text"] == alone.text
            assert out["num_input_tokens"] == len(model.tokenize(prompt))
            assert out["finish_reason"] == alone.finish_reason
        assert tokenized.result(timeout=60)["generated_tokens"] == outputs[0]["generated_tokens"]
        rendered = model.apply_chat_template(conversation)
        chat_out = chat.result(timeout=60)
        assert chat_out["prompt"] == rendered
        assert chat_out["generated_tokens"] == model.generate(
            model.tokenize(rendered, add_special_tokens=False), temperature=0.0, max_tokens=2).tokens
    finally:
        engine.close()


def test_engine_fails_a_bad_row_alone(model):
    engine = BatchEngine(model, sampling_defaults=GREEDY)
    try:
        good = engine.submit({"prompt": "amber"})
        too_long = engine.submit({"tokenized_prompt": [5] * 5000})
        no_prompt = engine.submit({"text": "amber"})
        assert good.result(timeout=60)["num_generated_tokens"] > 0
        with pytest.raises(ValueError):
            too_long.result(timeout=60)
        with pytest.raises(ValueError, match="no prompt, messages or tokenized_prompt"):
            no_prompt.result(timeout=60)
        row = finished_row({"id": 7}, no_prompt.exception(), continue_on_error=True)
        assert row["id"] == 7 and row["generated_text"] == "" and row[ERROR_COLUMN].startswith("ValueError: ")
    finally:
        engine.close()


def test_structured_output_takes_vllm_and_openai_names():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    as_schema = {"response_format": {"type": "json_schema", "json_schema": {"name": "guided_json", "schema": schema}}}
    assert check_sampling_params({"guided_json": schema})[STRUCTURED].options == as_schema
    assert check_sampling_params({"guided_json": json.dumps(schema)})[STRUCTURED].options == as_schema
    assert check_sampling_params({"structured_outputs": {"json": schema, "regex": None}})[STRUCTURED].options == as_schema
    assert check_sampling_params({"guided_decoding": {"regex": "a+", "backend": "xgrammar"}})[STRUCTURED].options == {"regex": "a+"}
    assert check_sampling_params({"guided_regex": "a+", "guided_decoding_backend": "outlines"})[STRUCTURED].key == "guided_regex"
    assert check_sampling_params({"guided_json_object": True})[STRUCTURED].options == {"response_format": {"type": "json_object"}}
    assert check_sampling_params({"response_format": {"type": "json_object", "json_schema": None}})[STRUCTURED].options == {
        "response_format": {"type": "json_object"}}  # Arrow's absent keys read as None
    assert check_sampling_params({"guided_choice": ['no "way"', "yes"]})[STRUCTURED].options == {
        "grammar": 'start: "no \\"way\\"" | "yes"'}
    with pytest.raises(ValueError, match="give one structured output, not guided_json and guided_regex"):
        check_sampling_params({"guided_json": schema, "guided_regex": "a"})
    with pytest.raises(ValueError, match="structured_outputs: whitespace_pattern is not supported"):
        check_sampling_params({"structured_outputs": {"json": schema, "whitespace_pattern": " "}})
    with pytest.raises(ValueError, match="exactly one of"):
        check_sampling_params({"guided_decoding": {"json": schema, "regex": "a"}})
    with pytest.raises(TypeError, match="sampling_params.guided_choice must be a non-empty list"):
        check_sampling_params({"guided_choice": "yes"})
    with pytest.raises(ValueError, match="sampling_params.guided_json: not a JSON schema"):
        check_sampling_params({"guided_json": "{not json"})
    with pytest.raises(TypeError, match="sampling_params.guided_regex must be a string"):
        check_sampling_params({"guided_regex": 5})


def test_engine_rows_follow_their_structured_output_as_generate_does(model):
    """Each row's constraint is its own (rows with and without one step together), the text
    equals Model.generate with the same constraint alone, and a bad schema or regex is that
    row's error."""
    pytest.importorskip("llguidance")
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no", "maybe"]}},
              "required": ["answer"], "additionalProperties": False}
    settings = {"temperature": 0.0, "max_tokens": 24}
    cases = [
        ({"guided_json": schema}, {"response_format": {"type": "json_schema", "json_schema": {"name": "guided_json", "schema": schema}}}),
        ({"guided_regex": "[0-9]{3}-[a-z]{2}"}, {"regex": "[0-9]{3}-[a-z]{2}"}),
        ({"guided_choice": ["red", "green", "blue"]}, {"grammar": 'start: "red" | "green" | "blue"'}),
        ({"structured_outputs": {"grammar": 'start: "x" "y"+ "z"'}}, {"grammar": 'start: "x" "y"+ "z"'}),
        ({}, {}),
    ]
    prompts = _prompts(len(cases) * 2)
    engine = BatchEngine(model, sampling_defaults=settings, max_batch=4)
    try:
        futures = [engine.submit({"prompt": p, "sampling_params": cases[i % len(cases)][0]}) for i, p in enumerate(prompts)]
        bad_regex = engine.submit({"prompt": "amber", "sampling_params": {"guided_regex": "([a-"}})
        bad_schema = engine.submit({"prompt": "amber", "sampling_params": {"guided_json": {"type": "nonsense"}}})
        for i, (prompt, future) in enumerate(zip(prompts, futures)):
            out = future.result(timeout=120)
            asked, options = cases[i % len(cases)]
            alone = model.generate(prompt, **settings, **options)
            assert out["generated_tokens"] == alone.tokens, asked
            assert out["generated_text"] == alone.text
            if asked:
                assert json.loads(out["params"])[next(iter(asked))] == next(iter(asked.values()))
        texts = [f.result()["generated_text"] for f in futures]
        assert json.loads(texts[0])["answer"] in ("yes", "no", "maybe")
        assert re.fullmatch("[0-9]{3}-[a-z]{2}", texts[1])
        assert texts[2] in ("red", "green", "blue")
        assert re.fullmatch("xy+z", texts[3])
        with pytest.raises(ValueError, match="(?s)sampling_params.guided_regex: .*unclosed character class"):
            bad_regex.result(timeout=60)
        with pytest.raises(ValueError, match="(?s)sampling_params.guided_json: .*nonsense"):
            bad_schema.result(timeout=60)
    finally:
        engine.close()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_lfmrt_batch_local_keeps_order_columns_and_errors(model, tmp_path):
    prompts = _prompts(30)
    rows = [{"key": f"k{i}", "prompt": p} for i, p in enumerate(prompts)]
    rows[5] = {"key": "k5", "prompt": "amber", "sampling_params": {"temperature": "hot"}}
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(source, rows)
    assert lfmrt_main(["batch", "demo", str(source), str(target), "--temperature", "0", "-n", str(MAX_TOKENS),
                       "--max-batch", "4", "--quiet"]) == 0
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["key"] for row in out] == [row["key"] for row in rows]
    assert "sampling_params.temperature" in out[5][ERROR_COLUMN]
    for i, prompt in enumerate(prompts):
        if i != 5:
            assert out[i][ERROR_COLUMN] == ""
            assert out[i]["generated_tokens"] == model.generate(prompt, **GREEDY).tokens


def test_lfmrt_batch_json_schema_applies_to_rows_without_their_own(model, tmp_path):
    pytest.importorskip("llguidance")
    schema = {"type": "object", "properties": {"label": {"enum": ["bird", "tree", "stone"]}},
              "required": ["label"], "additionalProperties": False}
    schema_file, source, target = tmp_path / "schema.json", tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    schema_file.write_text(json.dumps(schema))
    prompts = _prompts(6)
    rows = [{"prompt": p} for p in prompts]
    rows[2]["sampling_params"] = {"guided_regex": "[a-z]{4}"}
    _write_jsonl(source, rows)
    assert lfmrt_main(["batch", "demo", str(source), str(target), "--json-schema", str(schema_file),
                       "--temperature", "0", "-n", "24", "--quiet"]) == 0
    out = [json.loads(line) for line in target.read_text().splitlines()]
    for i, row in enumerate(out):
        assert row[ERROR_COLUMN] == ""
        if i == 2:
            assert re.fullmatch("[a-z]{4}", row["generated_text"])
        else:
            assert json.loads(row["generated_text"])["label"] in ("bird", "tree", "stone")



@pytest.mark.parametrize("text, reason", [('{"type": "nonsense"}', "Invalid type: nonsense"),
                                          ('{"type": "string", "minLength": 5, "maxLength": 2}', "Unsatisfiable"),
                                          ("[1, 2]", "a JSON schema is an object"),
                                          ("{not json", "not JSON")])
def test_lfmrt_batch_bad_json_schema_stops_before_any_row_naming_the_file(tmp_path, capsys, text, reason):
    pytest.importorskip("llguidance")
    source, target, bad = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "bad.json"
    _write_jsonl(source, [{"prompt": p} for p in _prompts(2)])
    bad.write_text(text)
    assert lfmrt_main(["batch", "demo", str(source), str(target), "--json-schema", str(bad), "--quiet"]) != 0
    message = capsys.readouterr().err
    assert f"--json-schema {bad}: " in message and reason in message, message
    assert not target.exists()


def _run_until_killed(args, target, at_least):
    """Starts ``lfmrt batch`` and SIGKILLs it once ``target`` holds ``at_least`` rows."""
    process = subprocess.Popen([sys.executable, "-m", "lfmrt.cli.main", "batch", *args, "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if _rows_so_far(target) >= at_least:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"finished before it could be interrupted: {process.stderr.read().decode()}"
    process.send_signal(signal.SIGKILL)
    process.wait()


def _rows_so_far(target):
    if str(target).endswith(".parquet"):
        parts = str(target) + ".parts"
        return len(os.listdir(parts)) * 1000 if os.path.isdir(parts) else 0  # any part: interrupt now
    return target.read_bytes().count(b"\n") if target.exists() else 0


def test_lfmrt_batch_killed_and_restarted_completes_every_row_once(model, tmp_path):
    prompts = _prompts(400)
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_jsonl(source, [{"prompt": p} for p in prompts])
    args = ["demo", str(source), str(target), "--temperature", "0", "-n", "8", "--max-batch", "8"]
    _run_until_killed(args, target, at_least=40)
    done = _rows_so_far(target)
    assert 40 <= done < 400
    with open(target, "a", encoding="utf-8") as f:  # as a run killed mid-write leaves it
        f.write('{"prompt": "torn')
    assert lfmrt_main(["batch", *args, "--quiet"]) == 0
    out = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["prompt"] for row in out] == prompts
    for row in out[done - 3:done + 3]:  # both sides of the restart
        assert row["generated_tokens"] == model.generate(row["prompt"], temperature=0.0, max_tokens=8).tokens


def test_lfmrt_batch_parquet_killed_and_restarted_by_id(model, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    prompts = _prompts(300)
    ids = [f"doc-{(i * 7919) % 1000:03d}" for i in range(300)]
    source, target = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pq.write_table(pyarrow.table({"doc": ids, "body": prompts}), source)
    args = ["demo", str(source), str(target), "--column", "body", "--id-column", "doc",
            "--temperature", "0", "-n", "8", "--max-batch", "8"]
    _run_until_killed(args, target, at_least=1)
    assert lfmrt_main(["batch", *args, "--quiet"]) == 0
    assert not os.path.exists(str(target) + ".parts")
    out = pq.read_table(target).to_pylist()
    assert sorted(row["doc"] for row in out) == sorted(ids)
    by_id = {row["doc"]: row for row in out}
    for doc, prompt in list(zip(ids, prompts))[::37]:
        assert by_id[doc]["body"] == prompt
        assert by_id[doc]["generated_tokens"] == model.generate(prompt, temperature=0.0, max_tokens=8).tokens
    # Every row is done: a third run writes nothing new.
    assert lfmrt_main(["batch", *args, "--quiet"]) == 0
    assert pq.read_table(target).num_rows == 300
