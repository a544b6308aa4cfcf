r"""Prefix-reuse statistics of traces and prefix workloads, and the fits behind the defaults.

Reuse ratio = sum over requests of the leading blocks whose chained hash an earlier request
had / sum of full prompt blocks; the prefix-length distribution is that of the reused prefix
(tokens, and tokens / prompt). ``disagg_gym.workload.prefix.prefix_stats`` defines both.

Examples (docs/workloads.md records their output)::

    .venv/bin/python scripts/prefix_stats.py --block-tokens 512 \
        --trace ../shared/data/traces/mooncake_conversation_trace.jsonl \
        --config configs/workloads/multi-turn-chat.yaml --seed 0
    .venv/bin/python scripts/prefix_stats.py --fit \
        --trace ../shared/data/traces/mooncake_conversation_trace.jsonl
    .venv/bin/python scripts/prefix_stats.py --bench --block-tokens 16 \
        --trace ../shared/data/traces/mooncake_conversation_trace.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from disagg_gym.argtypes import nonneg_int, positive_float, positive_int
from disagg_gym.config import from_dict, read_text_file
from disagg_gym.errors import UserError
from disagg_gym.io import run_script
from disagg_gym.rng import RngStreams
from disagg_gym.workload import WorkloadConfig, load_trace
from disagg_gym.workload.prefix import cache_block_hashes, cache_block_hashes_many
from disagg_gym.workload.prefix_fit import fit_conversation, fit_documents, stream_stats

parser = argparse.ArgumentParser(prog="prefix_stats.py", description=__doc__.split("\n")[0])
parser.add_argument("--trace", action="append", default=[], help="Mooncake JSONL (repeatable)")
parser.add_argument(
    "--config", action="append", default=[], help="scenario YAML whose workload to measure"
)
parser.add_argument("--set", action="append", default=[], help="workload override key=value")
parser.add_argument("--block-tokens", type=positive_int, default=512, help="cache block size, tokens")
parser.add_argument("--trace-block-tokens", type=positive_int, default=512, help="trace id block, tokens")
parser.add_argument("--horizon-s", type=positive_float, default=None, help="generated seconds (default: the scenario's)")
parser.add_argument("--seed", type=nonneg_int, default=0, help="workload seed")
parser.add_argument("--fit", action="store_true", help="also print the trace fits")
parser.add_argument("--json", action="store_true", help="one JSON object per source")
parser.add_argument(
    "--bench", action="store_true", help="time cache_block_hashes vs _many on each trace (CPU s)"
)


def run(args: argparse.Namespace) -> None:
    """Measures every --trace and --config source (the script's body)."""

    import yaml  # after argparse so --help is fast

    rows = []
    for path in args.trace:
        cfg = WorkloadConfig(kind="trace", trace_path=path, trace_block_tokens=args.trace_block_tokens)
        rows.append((Path(path).name, cfg, None))
    for path in args.config:
        try:
            data = yaml.safe_load(read_text_file(Path(path)))
        except yaml.YAMLError as exc:
            raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict) or not isinstance(data.get("workload"), dict):
            raise UserError(f"{path}: expected a scenario YAML with a 'workload' mapping")
        wl = dict(data["workload"])
        for item in args.set:
            key, _, value = item.partition("=")
            try:
                wl[key.removeprefix("workload.")] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise UserError(f"--set {item!r}: the value is not valid YAML") from None
        horizon = args.horizon_s if args.horizon_s is not None else float(data.get("horizon_s", 600))
        rows.append((Path(path).name, from_dict(WorkloadConfig, wl, source=path), horizon))

    for name, cfg, horizon in rows:
        t0 = time.perf_counter()
        src = cfg.build(RngStreams(args.seed), horizon_s=horizon)
        st = stream_stats(src, args.block_tokens)
        out = {"source": name, "kind": cfg.kind, **dataclasses.asdict(st)}
        out["wall_s"] = round(time.perf_counter() - t0, 2)
        if args.json:
            print(json.dumps(out))
        else:
            q = ", ".join(f"{x:,.0f}" for x in st.hit_tokens_quantiles)
            fq = ", ".join(f"{x:.3f}" for x in st.hit_fraction_quantiles)
            print(
                f"{name} ({cfg.kind}, {st.block_tokens}-token blocks): {st.requests:,} requests, "
                f"{st.blocks:,} blocks, reuse ratio {st.reuse_ratio:.4f}, hit token fraction "
                f"{st.hit_token_fraction:.4f}, no reuse {st.zero_hit_fraction:.4f}\n"
                f"  reused prefix tokens p10/25/50/75/90/99: {q}\n"
                f"  reused / prompt: mean {st.hit_fraction_mean:.3f}; p10/25/50/75/90: {fq}"
            )
        if args.fit and cfg.kind == "trace":
            data = load_trace(cfg.trace_path or "")
            for fit in (fit_conversation(data, args.trace_block_tokens), fit_documents(data, args.trace_block_tokens)):
                print(f"  {type(fit).__name__}: {json.dumps(dataclasses.asdict(fit))}")
        if args.bench and cfg.kind == "trace":
            data = load_trace(cfg.trace_path or "")
            assert data.hash_ids is not None
            hs, ps = list(data.hash_ids), data.prompt_tokens.tolist()
            best = {"one by one": 1e9, "many (chunks of 4096)": 1e9}
            for _ in range(5):  # CPU time, best of 5: the machine is shared
                t = time.process_time()
                for i in range(0, len(hs), 4096):  # keep a chunk's results, as a caller would
                    kept = [  # noqa: F841
                        cache_block_hashes(h, args.trace_block_tokens, p, args.block_tokens)
                        for h, p in zip(hs[i : i + 4096], ps[i : i + 4096])
                    ]
                best["one by one"] = min(best["one by one"], time.process_time() - t)
                t = time.process_time()
                for i in range(0, len(hs), 4096):
                    kept = cache_block_hashes_many(  # noqa: F841
                        hs[i : i + 4096], args.trace_block_tokens, ps[i : i + 4096], args.block_tokens
                    )
                best["many (chunks of 4096)"] = min(
                    best["many (chunks of 4096)"], time.process_time() - t
                )
            for label, cpu in best.items():
                print(f"  hashing {label}: {cpu:.3f} CPU s = {len(hs) / cpu:,.0f} requests/s")


if __name__ == "__main__":
    run_script("prefix_stats.py", run, parser.parse_args())
