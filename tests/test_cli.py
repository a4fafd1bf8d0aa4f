"""The `minigemma` command line on checkpoints saved by the tests (HF directory and gemma_pytorch .ckpt)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import minigemma as mg
from minigemma.cli import main
from reference import save_example_checkpoints


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    """What the README's `python tests/reference.py DIR` writes: DIR/hf and DIR/kaggle/model.ckpt."""
    return save_example_checkpoints(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def hf_dir(example_dir):
    return example_dir / "hf"


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


def test_generate_compile_decodes_through_the_compiled_step(hf_dir, monkeypatch, capsys):
    """--compile puts the model behind CompiledDecoding (whose compiled maths tests/test_compiled_decode.py checks;
    here torch.compile is replaced by a recorder, to keep the compiler's tens of seconds out of this test)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: compiled.append(options) or fn)
    args = ["generate", "--checkpoint", str(hf_dir), "The capital of France is", "--max-new-tokens", "8"]
    assert main(args) == 0
    plain = capsys.readouterr().out
    assert main([*args, "--compile"]) == 0
    assert capsys.readouterr().out == plain and compiled == [{"dynamic": False}]


def test_generate_from_a_gemma_pytorch_ckpt(hf_dir, example_dir, capsys):
    """The same weights as a Kaggle .ckpt sample the same text as the HF directory for the same seed."""
    sampling = ["Hello", "--max-new-tokens", "12", "--temperature", "0.8", "--seed", "3"]
    assert main(["generate", "--checkpoint", str(hf_dir), *sampling]) == 0
    from_hf = capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(example_dir / "kaggle" / "model.ckpt"), *sampling]) == 0
    assert capsys.readouterr().out == from_hf and len(from_hf) > len("Hello\n")


def test_streaming_holds_back_partial_utf8_characters(hf_dir, capsys):
    """Byte-fallback tokens of one character are printed together, never as U+FFFD replacement marks."""
    from minigemma.cli.generate import TextStream
    tok = mg.Tokenizer(hf_dir / "tokenizer.model")
    text = "a Жё 😀 b"
    ids = tok.encode(text, add_bos=False)
    assert len(ids) > len(text.split()) + 4, "the test text must use byte fallback"
    stream = TextStream(tok)
    for token_id in ids:
        stream(token_id)
    stream.finish()
    assert capsys.readouterr().out == text + "\n"


def test_info_reads_headers_not_weights(hf_dir, monkeypatch, capsys):
    import minigemma.weights.tensor_files as tf
    monkeypatch.setattr(tf, "iter_safetensors", lambda path: (_ for _ in ()).throw(AssertionError("read weights")))
    assert main(["info", str(hf_dir)]) == 0
    assert "parameters" in capsys.readouterr().out


def test_empty_prompt_is_refused(hf_dir, capsys):
    assert main(["generate", "--checkpoint", str(hf_dir), ""]) == 2
    assert "the prompt is empty" in capsys.readouterr().err


def test_bad_input_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minigemma info: error: checkpoint not found") and "Traceback" not in err
    assert main(["generate", "--checkpoint", str(tmp_path / "missing"), "hi"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err              # not "no tokenizer.model"
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["generate", "--checkpoint", str(tmp_path / "notes.txt"), "hi"]) == 2
    assert "unknown checkpoint type" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--max-new-tokens", "-3"], ["--temperature", "-1"], ["--top-p", "2"],
                                    ["--top-k", "0"]])
def test_sampling_options_are_checked_before_anything_is_printed(hf_dir, option, capsys):
    assert main(["generate", "--checkpoint", str(hf_dir), "hi", *option]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and f"error: argument {option[0]}: expected" in err


def test_info_on_a_ckpt_tells_loaded_bytes_from_file_bytes(example_dir, capsys):
    path = example_dir / "kaggle" / "model.ckpt"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "in memory as float32" in out and f"file bytes  {path.stat().st_size:,}" in out


def test_output_piped_into_a_closed_reader_ends_quietly():
    """Like `minigemma vram | head -1`, made certain: the reader is gone before the command writes anything."""
    script = Path(sys.executable).parent / "minigemma"
    proc = subprocess.Popen([str(script), "vram", "--context", "1k"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and err == "", err


def test_generate_without_tokenizer_says_what_to_pass(hf_dir, tmp_path, capsys):
    directory = shutil.copytree(hf_dir, tmp_path / "no_tok")
    (directory / "tokenizer.model").unlink()
    assert main(["generate", "--checkpoint", str(directory), "hi"]) == 2
    assert "pass --tokenizer" in capsys.readouterr().err


def test_console_script_and_module_run(hf_dir):
    script = Path(sys.executable).parent / "minigemma"            # installed by pip from [project.scripts]
    for command in ([str(script)], [sys.executable, "-m", "minigemma"]):
        result = subprocess.run([*command, "info", str(hf_dir)], capture_output=True, text=True)
        assert result.returncode == 0 and "parameters" in result.stdout, result.stderr


def test_broken_checkpoint_is_one_line_in_the_cli(hf_dir, tmp_path, capsys):
    directory = shutil.copytree(hf_dir, tmp_path / "broken")
    (directory / "config.json").write_text("{not json")
    assert main(["info", str(directory)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json is not valid JSON" in err
