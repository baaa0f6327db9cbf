"""The file of ordinary calls that the type checker reads (tests/typing/calls.py) also runs."""

import importlib.util
from pathlib import Path

CALLS = Path(__file__).resolve().parent / "typing" / "calls.py"


def test_the_calls_the_type_checker_reads_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("typing_calls", CALLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.calls(str(tmp_path / "embedder.safetensors"))
    assert capsys.readouterr().out.startswith("0.")
