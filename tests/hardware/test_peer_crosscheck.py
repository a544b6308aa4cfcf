"""scripts/peer_crosscheck.py: splitwise-sim's effective lookup re-expressed as a plain-CSV table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from disagg_gym.hardware import build_cost

ROOT = Path(__file__).resolve().parents[2]

HEADER = "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\n"
# batch_tokens 128: prompt 40 ms (median of 40, 41, 39), token 30 ms; 256: 60 / 28 ms (two rows
# sharing 256 = 256x1 = 128x2); 512: 100 / 29 ms; another tp / GPU must be ignored.
ROWS = """llama2-70b,h100-80gb,128,1,64,40,30,8
llama2-70b,h100-80gb,128,1,64,41,30,8
llama2-70b,h100-80gb,128,1,64,39,30,8
llama2-70b,h100-80gb,256,1,64,58,28,8
llama2-70b,h100-80gb,128,2,64,62,28,8
llama2-70b,h100-80gb,512,1,64,100,29,8
llama2-70b,h100-80gb,512,1,64,999,999,4
llama2-70b,a100-80gb,512,1,64,999,999,8
"""


def load_script():
    spec = importlib.util.spec_from_file_location("peer_crosscheck", ROOT / "scripts" / "peer_crosscheck.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peer_crosscheck"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_lookup_table_reproduces_splitwise_interpolation(tmp_path: Path) -> None:
    perf = tmp_path / "perf_model.csv"
    perf.write_text(HEADER + ROWS)
    out = tmp_path / "lookup.csv"
    load_script().sws_lookup_table(perf, out, max_tokens=1000)
    c = build_cost("h100-sxm", "llama-2-70b", 8, f"table:{out}")
    # Prompt time linear in the batch's prompt tokens: 128 -> 40, 256 -> 60 (median of 58, 62),
    # 512 -> 100, whatever the prompt lengths.
    assert c.prefill_s([128]) == pytest.approx(0.040, rel=1e-12)
    assert c.prefill_s([100, 92]) == pytest.approx(0.050, rel=1e-12)  # 192 tokens: halfway 40 -> 60
    assert c.prefill_s([384]) == pytest.approx(0.080, rel=1e-12)  # halfway 60 -> 100
    # Extrapolated linearly like scipy's interp1d: 1000 tokens -> 100 + 488 * 40/256 = 176.25 ms.
    assert c.prefill_s([1000]) == pytest.approx(0.17625, rel=1e-12)
    # Token time looked up at the number of sequences, below the grid: extrapolated from the
    # 128 -> 30 ms and 256 -> 28 ms groups: 30 + (B - 128) * (-2/128) ms, flat in context.
    for batch in (1, 16, 64):
        want = (30 + (batch - 128) * (-2 / 128)) * 1e-3
        assert c.decode_s([10] * batch) == pytest.approx(want, rel=1e-12)
        assert c.decode_s([5000] * batch) == pytest.approx(want, rel=1e-12)
