"""Odd arguments (issue 14): generation and tokenizer arguments, the command line's one-line errors and exit codes,
Ctrl-C, and files we write (the grade report, the demo-model cache) never left half-written."""
import errno
import os
import shutil

import pytest
import torch

import minigemma as mg
from hostile import CFG, write_hf
from minigemma.cli import main
from reference import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return mg.Tokenizer(train_tokenizer(tmp_path_factory.mktemp("tok")))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return mg.Gemma(CFG).eval()


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=1e-45), r"temperature must be 0 \(greedy\) or at least 1e-06"),
    (dict(temperature=1.0, seed=2**64), "seed must be an integer from 0 to 2\\*\\*64 - 1"),
    (dict(temperature=1.0, seed=-1), "seed must be an integer from 0"),
    (dict(stop_ids=(1.5,)), "stop_ids must be integers"),
    (dict(stop_ids=("1",)), "stop_ids must be integers"),
])
def test_odd_generation_arguments(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mg.generate(model, [2, 5, 6], max_new_tokens=2, **kwargs)


def test_smallest_temperature_and_largest_seed_work(model):     # controls: the bounds themselves are accepted
    greedy = mg.generate(model, [2, 5, 6], max_new_tokens=3)
    assert torch.equal(mg.generate(model, [2, 5, 6], max_new_tokens=3, temperature=1e-6, seed=2**64 - 1), greedy)


def test_ragged_batch_is_named(model):
    with pytest.raises(ValueError, match="prompts in a batch share a length"):
        mg.generate(model, [[2, 5, 6], [2, 5]], max_new_tokens=2)


def test_non_finite_logits_stop_generation(model):
    broken = mg.Gemma(CFG).eval()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite logits at new token 0: its weights or config are invalid"):
        mg.generate(broken, [2, 5, 6], max_new_tokens=2)
    assert mg.generate(model, [2, 5, 6], max_new_tokens=2).shape == (2,)     # control: the intact copy runs


@pytest.mark.parametrize("call, message", [
    (lambda t: t.encode("caf\udce9"), r"lone surrogate \(invalid UTF-8"),
    (lambda t: t.decode([5, 10**6]), r"token id 1000000 is outside the vocabulary \(ids 0 to 399\)"),
    (lambda t: t.decode([-1]), "token id -1 is outside the vocabulary"),
    (lambda t: t.decode([1.5]), "token ids must be integers, got 1.5"),
    (lambda t: t.id_to_piece(400), "token id 400 is outside"),
])
def test_odd_tokenizer_input(tokenizer, call, message):
    with pytest.raises(mg.TokenizerError, match=message):
        call(tokenizer)
    assert tokenizer.decode(tokenizer.encode("café")) == "café"        # control


# ---- the command line: one line on stderr, exit code 2 (130 for Ctrl-C) --------------------------------------
def one_line_error(capsys, argv, pattern, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert pytest.importorskip("re").search(pattern, err), err
    return err


@pytest.fixture
def hf_dir(tmp_path, tokenizer):
    folder = write_hf(tmp_path / "ckpt")
    shutil.copy(tokenizer.path, folder / "tokenizer.model")
    return folder


def test_cli_hostile_checkpoint_is_one_line(hf_dir, capsys):
    (hf_dir / "config.json").write_text('{"model_type": "gemma", "num_hidden_layers": 1000000}')
    one_line_error(capsys, ["info", str(hf_dir)], "minigemma info: error: .*num_hidden_layers is 1000000")


def test_cli_invalid_utf8_in_argv(hf_dir, capsys):
    prompt = os.fsdecode(b"caf\xe9")                                   # what Python makes of invalid UTF-8 in argv
    one_line_error(capsys, ["generate", "--checkpoint", str(hf_dir), prompt], "lone surrogate")


def test_cli_vram_overhead_inf(capsys):
    one_line_error(capsys, ["vram", "--overhead-gib", "inf"], "--overhead-gib: expected a finite number")


@pytest.mark.parametrize("command", ["info", "generate"])
def test_ctrl_c_is_quiet_130(hf_dir, capsys, monkeypatch, command):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr("minigemma.weights.summary.read_checkpoint", interrupted)
    monkeypatch.setattr("minigemma.cli.generate.generate", interrupted)
    argv = ["info", str(hf_dir)] if command == "info" else ["generate", "--checkpoint", str(hf_dir), "Hi"]
    assert main(argv) == 130
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EISDIR])
def test_grade_json_that_cannot_be_written(tmp_path, capsys, monkeypatch, failure):
    import minigemma.grading.runner as runner
    monkeypatch.setattr(runner, "grade", lambda *args, **kwargs: [])

    def full_disk(src, dst):
        raise OSError(failure, os.strerror(failure), str(dst))
    monkeypatch.setattr("pathlib.Path.replace", lambda self, target: full_disk(self, target))
    target = tmp_path / "report.json"
    assert main(["grade", str(tmp_path), "--json", str(target)]) == 2
    captured = capsys.readouterr()
    assert "could not write" in captured.err and "the report above is complete" in captured.err
    assert captured.err.count("\n") == 1 and captured.out                    # the report itself was printed
    assert sorted(p.name for p in tmp_path.iterdir()) == []                   # no half-written or temp file left


def test_grade_json_is_written_whole(tmp_path, capsys, monkeypatch):         # control for the test above
    import json
    import minigemma.grading.runner as runner
    monkeypatch.setattr(runner, "grade", lambda *args, **kwargs: [])
    assert main(["grade", str(tmp_path), "--json", str(tmp_path / "report.json")]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["points"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
