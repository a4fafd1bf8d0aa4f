"""The benchmark entry point runs end to end in --smoke mode (tiny models, one round) and writes a complete, sane
report. Nothing here asserts a speed: timings belong in the benchmark's own side-by-side ratios."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = {"minigemma", "transformers eager", "transformers sdpa"}


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--smoke", "--threads", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def rows(results, kind):
    found = [row for row in results["rows"] if row["benchmark"] == kind]
    assert found, f"no {kind} rows in {[r['benchmark'] for r in results['rows']]}"
    return found


def test_machine_and_bandwidth_are_recorded(smoke_run):
    results, _ = smoke_run
    machine = results["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["torch"] and machine["threads"] == 1
    assert positive(results["bandwidth"]["copy_gb_s_best"])
    assert results["bandwidth"]["copy_gb_s_best"] >= results["bandwidth"]["copy_gb_s_median"]


def test_decode_rows_compare_all_contenders_in_both_dtypes(smoke_run):
    results, _ = smoke_run
    decode = rows(results, "decode")
    assert {row["dtype"] for row in decode} == {"float32", "bfloat16"}
    for row in decode:
        assert set(row["contenders"]) == CONTENDERS
        assert all(positive(c["rate"]) and positive(c["floor_fraction"]) for c in row["contenders"].values())
        assert set(row["ratio"]) == CONTENDERS - {"minigemma"} and all(map(positive, row["ratio"].values()))
        assert positive(row["weight_bytes"]) and positive(row["floor_tokens_s"])
    float32 = next(row for row in decode if row["dtype"] == "float32")
    assert float32["max_relative_logit_difference"] < 1e-4          # the twins compute the same function


def test_prefill_kv_cache_and_loading_rows(smoke_run):
    results, _ = smoke_run
    prefill = rows(results, "prefill")[0]
    assert all(positive(c["rate"]) for c in prefill["contenders"].values())
    kv = rows(results, "kv_cache")[0]
    assert positive(kv["with_cache_s"]) and positive(kv["without_cache_s"]) and positive(kv["speedup"])
    loading = rows(results, "loading")[0]
    assert set(loading["contenders"]) == {"minigemma", "transformers"} and positive(loading["checkpoint_bytes"])
    for result in loading["contenders"].values():
        assert positive(result["median_s"]) and math.isfinite(result["extra_peak_bytes"])
        assert all(positive(run["peak_rss_bytes"]) for run in result["runs"])


def test_skips_are_explained_and_markdown_has_every_table(smoke_run):
    results, markdown = smoke_run
    assert "gemma3-270m" in results["skipped"] and results["skipped"]["gemma3-270m"]
    for heading in ("## Decode", "## Prefill", "## KV cache", "## Loading", "## Skipped", results["machine"]["cpu"]):
        assert heading in markdown
    assert "nan" not in markdown.lower()


@pytest.mark.parametrize("argv", [["--layers", "0"], ["--threads", "0"], ["--rounds", "x"], ["--prefill-dtypes", "fp8"]])
def test_bad_arguments_are_one_usage_line(argv):
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"argument {argv[0]}" in done.stderr.strip().splitlines()[-1]
