"""lfmrt on Ray Data (lfmrt.ray): rows through actors equal each prompt alone in-process, bad
rows yield their error column, a killed actor loses and duplicates no row, and ``lfmrt batch
--ray`` runs on a cluster.

One local cluster serves the module (Ray's start-up is the slow part on 2 cores). Every byte
stays on loopback: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment of the driver, and so
of the head and the workers it starts, makes Ray register 127.0.0.1 instead of the machine's
network address.
"""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

# Read by Ray when it starts processes and when it is imported: set before the import.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

import lfmrt  # noqa: E402
from lfmrt.cli.main import main as lfmrt_main  # noqa: E402
from lfmrt.ray import ERROR_COLUMN, LfmrtProcessorConfig, LfmrtStage, build_processor, put_model  # noqa: E402

MAX_TOKENS = 4
GREEDY = {"temperature": 0.0, "max_tokens": MAX_TOKENS}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20,
             configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.wait_for_min_actors_s = 300  # every actor up before the first batch: two really share the work
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def model():
    return lfmrt.Model.load("demo", n_threads=1)


def _prompts(n: int) -> list[str]:
    words = ["river", "stone", "cloud", "lamp", "garden", "window", "train", "paper"]
    return [f"{words[i % 8]} {words[(i * 3) % 8]} {i}" for i in range(n)]


def _alone(model, prompt: str) -> list[int]:
    return model.generate(prompt, **GREEDY).tokens


def test_cluster_is_on_loopback(cluster):
    assert {node["NodeManagerAddress"] for node in cluster.nodes()} == {"127.0.0.1"}


def test_two_actors_give_each_prompt_alone_and_bad_rows_their_error(cluster, model):
    prompts = _prompts(200)
    rows = [{"id": i, "prompt": p} for i, p in enumerate(prompts)]
    too_long = {"id": 200, "tokenized_prompt": [5] * 5000}  # past the demo model's 4096 positions
    bad_value = {"id": 201, "prompt": "x", "sampling_params": {"temperature": -1.0}}
    unknown_key = {"id": 202, "prompt": "x", "sampling_params": {"best_of": 3}}
    # Structured outputs in vLLM's names, through Arrow's struct column of every row's keys.
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"]}
    choice = {"id": 203, "prompt": prompts[3], "sampling_params": {"guided_choice": ["red", "green"]}}
    as_json = {"id": 204, "prompt": prompts[4], "sampling_params": {"guided_json": schema, "max_tokens": 16}}
    structured = importlib.util.find_spec("llguidance") is not None  # lfmrt[structured]
    rows += [too_long, bad_value, unknown_key] + ([choice, as_json] if structured else [])
    config = LfmrtProcessorConfig(model_source="demo", concurrency=2, threads_per_actor=1, batch_size=16,
                                  sampling_params=GREEDY, should_continue_on_error=True)
    processor = build_processor(config, postprocess=lambda row: {**row, "text": row["generated_text"]})
    out = {row["id"]: row for row in processor(ray.data.from_items(rows, override_num_blocks=13)).take_all()}

    assert sorted(out) == list(range(205 if structured else 203))
    for i, prompt in enumerate(prompts):
        row = out[i]
        assert row[ERROR_COLUMN] == ""
        assert list(row["generated_tokens"]) == _alone(model, prompt), prompt
        assert row["text"] == row["generated_text"] == model.detokenize(row["generated_tokens"], skip_special_tokens=True)
        assert row["prompt"] == prompt
        assert row["num_input_tokens"] == len(model.tokenize(prompt))
        assert row["num_generated_tokens"] == len(row["generated_tokens"]) <= MAX_TOKENS
        assert row["time_taken_llm"] > 0
    assert "4096" in out[200][ERROR_COLUMN] or "context" in out[200][ERROR_COLUMN]
    assert "temperature" in out[201][ERROR_COLUMN]
    assert "best_of" in out[202][ERROR_COLUMN]
    for i in (200, 201, 202):
        assert out[i]["generated_text"] == "" and out[i]["num_generated_tokens"] == 0
        assert out[i].get("text") is None  # errors skip the postprocess (the column is null)
    if structured:
        assert out[203][ERROR_COLUMN] == "" and out[203]["generated_text"] in ("red", "green")
        assert list(out[203]["generated_tokens"]) == model.generate(prompts[3], **GREEDY, grammar='start: "red" | "green"').tokens
        assert out[204][ERROR_COLUMN] == "" and json.loads(out[204]["generated_text"])["answer"] in ("yes", "no")
        as_schema = {"type": "json_schema", "json_schema": {"name": "guided_json", "schema": schema}}
        alone = model.generate(prompts[4], **{**GREEDY, "max_tokens": 16}, response_format=as_schema)
        assert list(out[204]["generated_tokens"]) == alone.tokens


def test_a_bad_row_fails_the_job_without_continue_on_error(cluster):
    config = LfmrtProcessorConfig(model_source="demo", sampling_params=GREEDY)
    dataset = build_processor(config)(ray.data.from_items([{"prompt": "x", "sampling_params": {"top_p": "high"}}]))
    with pytest.raises(Exception, match="top_p"):
        dataset.take_all()


def test_killed_actor_loses_and_duplicates_no_row(cluster, model, tmp_path):
    import pyarrow

    marker = str(tmp_path / "killed")

    class DyingStage(LfmrtStage):
        """Kills its own process the first time a batch holding row 30 arrives (other batches
        are in flight in the same actor then: max_concurrent_batches)."""

        async def __call__(self, batch):
            if 30 in batch.column("id").to_pylist() and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            out = await super().__call__(batch)
            return out.append_column("pid", pyarrow.array([os.getpid()] * out.num_rows))

    prompts = _prompts(64)
    files = put_model("demo")  # the restarted actor loads from the object store again
    config = LfmrtProcessorConfig(model_source=files, concurrency=2, batch_size=8, sampling_params=GREEDY)
    processor = build_processor(config)
    dataset = ray.data.from_items([{"id": i, "prompt": p} for i, p in enumerate(prompts)], override_num_blocks=8)
    rows = dataset.map_batches(DyingStage, **processor.stage_map_kwargs()).take_all()

    assert os.path.exists(marker)  # an actor did die
    assert sorted(row["id"] for row in rows) == list(range(64))
    assert len({row["pid"] for row in rows}) >= 2  # the survivor and the restarted actor (or both)
    for row in rows:
        assert list(row["generated_tokens"]) == _alone(model, prompts[row["id"]])


def test_lfmrt_batch_on_ray(cluster, model, tmp_path):
    prompts = _prompts(20)
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"text": p, "n": i}) + "\n" for i, p in enumerate(prompts)))
    status = lfmrt_main(["batch", "demo", str(source), str(target), "--ray", "auto", "--actors", "2",
                         "--batch-size", "4", "--rows-per-run", "7", "--column", "text", "--temperature", "0", "-n", str(MAX_TOKENS), "--quiet"])
    assert status == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["n"] for row in rows] == list(range(20))  # in the input's order
    for row, prompt in zip(rows, prompts):
        assert row["text"] == prompt
        assert row["generated_tokens"] == _alone(model, prompt)
