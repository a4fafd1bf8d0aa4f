"""The `minigemma` command line on checkpoints saved by the tests (HF directory and gemma_pytorch .ckpt)."""
import shutil
import subprocess
import sys

import pytest
import torch

import minigemma as mg
from minigemma.cli import main
from reference import reference_model, save_gemma_pytorch, save_hf, train_tokenizer

CFG = mg.GemmaConfig.tiny(vocab_size=400)     # the tiny tokenizer below has 400 pieces


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = save_hf(reference_model(CFG), tmp_path_factory.mktemp("hf"))
    train_tokenizer(directory, vocab_size=CFG.vocab_size)
    return directory


def test_info_reports_config_parameters_dtype_bytes(hf_dir, capsys):
    assert main(["info", str(hf_dir)]) == 0
    out = capsys.readouterr().out
    params = mg.load_model(hf_dir).num_parameters()
    assert f"parameters  {params:,}" in out
    assert "num_kv_heads          1" in out and "dtype       float32" in out
    assert f"bytes       {params * 4:,}" in out


def test_generate_streams_the_greedy_continuation(hf_dir, capsys):
    assert main(["generate", "--checkpoint", str(hf_dir), "The capital of France is", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    tok = mg.Tokenizer(hf_dir / "tokenizer.model")
    expected = tok.decode(mg.generate(mg.load_model(hf_dir), tok.encode("The capital of France is"), 8))
    assert out == "The capital of France is" + expected + "\n"


def test_generate_from_a_gemma_pytorch_ckpt(hf_dir, tmp_path, capsys):
    save_gemma_pytorch(reference_model(CFG), tmp_path / "model.ckpt", max_seq_len=CFG.max_seq_len)
    shutil.copy(hf_dir / "tokenizer.model", tmp_path / "tokenizer.model")
    assert main(["generate", "--checkpoint", str(tmp_path / "model.ckpt"), "Hello", "--max-new-tokens", "4",
                 "--temperature", "0.8", "--seed", "3"]) == 0
    assert capsys.readouterr().out.startswith("Hello")


def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minigemma info: error: checkpoint not found") and "Traceback" not in err
    assert main(["generate", "--checkpoint", str(tmp_path / "missing"), "hi"]) == 2


def test_generate_without_tokenizer_says_what_to_pass(hf_dir, tmp_path, capsys):
    directory = shutil.copytree(hf_dir, tmp_path / "no_tok")
    (directory / "tokenizer.model").unlink()
    assert main(["generate", "--checkpoint", str(directory), "hi"]) == 2
    assert "pass --tokenizer" in capsys.readouterr().err


def test_console_script_runs(hf_dir):
    result = subprocess.run([sys.executable, "-m", "minigemma", "info", str(hf_dir)], capture_output=True, text=True)
    assert result.returncode == 0 and "parameters" in result.stdout
