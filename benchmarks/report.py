"""results (a dict) -> the markdown report: machine, bandwidth, then one table per benchmark."""
from __future__ import annotations

THEIRS = ("transformers eager", "transformers sdpa")


def markdown(results: dict) -> str:
    parts = [header(results), decode_table(results), prefill_table(results), kv_table(results),
             loading_table(results), skipped(results), HOW_TO_READ]
    return "\n\n".join(part for part in parts if part) + "\n"


def header(results: dict) -> str:
    m, bw, s = results["machine"], results["bandwidth"], results["settings"]
    return "\n".join([
        "# minigemma benchmarks", "",
        f"`{results['command']}` on {results['date']}, {results['wall_seconds']} s in all.", "",
        f"- machine: {m['cpu']}, {m['cores']} cores ({m['cpu_capability']}), {m['memory_gib']} GiB; "
        f"load average {m['load_average_at_start']} at start, {m.get('load_average_at_end')} at end",
        f"- software: torch {m['torch']}, transformers {m['transformers']}, Python {m['python']}; "
        f"torch threads {m['threads']} for every contender",
        f"- memory bandwidth: {bw['copy_gb_s_best']} GB/s best, {bw['copy_gb_s_median']} GB/s median "
        f"({bw['repeats']} copies of a {bw['tensor_mb']} MB float32 tensor, read + write counted)",
        f"- rounds: decode {s['rounds']}, prefill {s['prefill_rounds']} (after {s['warmup']} warm-up), "
        f"interleaved minigemma / transformers eager / transformers sdpa"])


def rows_of(results: dict, kind: str) -> list[dict]:
    return [row for row in results["rows"] if row["benchmark"] == kind]


def rate(row: dict, name: str) -> str:
    result = row["contenders"].get(name)
    return f"{result['rate']:.2f}" if result else "-"


def ratio(row: dict, name: str) -> str:
    value = row["ratio"].get(name)
    return f"{value:.2f}×" if value is not None else "-"


def decode_table(results: dict) -> str:
    rows = rows_of(results, "decode")
    if not rows:
        return ""
    lines = ["## Decode: tokens/s at batch 1 with the KV cache", "",
             "| model | dtype | weights | minigemma | tf eager | tf sdpa | mg ÷ eager | mg ÷ sdpa | floor | "
             "% of floor: mg / eager / sdpa |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        fractions = " / ".join(f"{100 * row['contenders'][n]['floor_fraction']:.0f}%"
                               for n in ("minigemma", *THEIRS) if n in row["contenders"])
        lines.append(f"| {row['model']} | {row['dtype']} | {row['weight_bytes'] / 1e9:.2f} GB | "
                     f"{rate(row, 'minigemma')} | {rate(row, THEIRS[0])} | {rate(row, THEIRS[1])} | "
                     f"{ratio(row, THEIRS[0])} | {ratio(row, THEIRS[1])} | {row['floor_tokens_s']:.2f} | {fractions} |")
    first = rows[0]
    lines += ["", f"Prompt of {first['prompt_tokens']} tokens prefilled (untimed), then {first['new_tokens']} tokens "
              "timed, one forward pass + arg-max each. Floor = bandwidth ÷ bytes of weights: the tokens/s if each "
              "token cost only reading every weight once."]
    return "\n".join(lines)


def prefill_table(results: dict) -> str:
    rows = rows_of(results, "prefill")
    if not rows:
        return ""
    lines = [f"## Prefill: tokens/s for a {rows[0]['prompt_tokens']}-token prompt", "",
             "| model | dtype | minigemma | tf eager | tf sdpa | mg ÷ eager | mg ÷ sdpa |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['dtype']} | {rate(row, 'minigemma')} | {rate(row, THEIRS[0])} | "
                     f"{rate(row, THEIRS[1])} | {ratio(row, THEIRS[0])} | {ratio(row, THEIRS[1])} |")
    return "\n".join(lines)


def kv_table(results: dict) -> str:
    rows = rows_of(results, "kv_cache")
    if not rows:
        return ""
    lines = ["## KV cache: `mg.generate` with vs without the cache", "",
             "| model | prompt | new tokens | with cache | without cache | speed-up |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['prompt_tokens']} | {row['new_tokens']} | {row['with_cache_s']:.2f} s "
                     f"| {row['without_cache_s']:.2f} s | {row['speedup']:.1f}× |")
    return "\n".join(lines)


def loading_table(results: dict) -> str:
    rows = rows_of(results, "loading")
    if not rows:
        return ""
    lines = ["## Loading a bfloat16 safetensors checkpoint (fresh process each time)", "",
             "| checkpoint | tensor bytes | loader | time | peak RSS - baseline | ÷ checkpoint bytes |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        for name, result in row["contenders"].items():
            lines.append(f"| {row['model']} | {row['checkpoint_bytes'] / 1e9:.2f} GB | {name} | "
                         f"{result['median_s']:.2f} s | {result['extra_peak_bytes'] / 1e9:.2f} GB | "
                         f"{result['peak_over_checkpoint']:.3f}× |")
    lines += ["", "Time = load + reading every weight once (transformers memory-maps the file and returns before "
              "reading it). Baseline RSS is taken after the imports."]
    return "\n".join(lines)


def skipped(results: dict) -> str:
    if not results["skipped"]:
        return ""
    return "## Skipped\n\n" + "\n".join(f"- {name}: {why}" for name, why in results["skipped"].items())


HOW_TO_READ = """## How to read this

Each comparison runs its contenders in turn, round after round (A B C A B C ...), with the same weights (the 2B-shaped
transformers model reads minigemma's own tensors), dtype, threads and prompt. A rate is the median over rounds; a
ratio "mg ÷ X" is the median over rounds of minigemma's speed divided by X's in the same round, so a machine that
slows down for a while slows both. Ratios above 1 mean minigemma is faster. Absolute figures move with the machine's
load; ratios much less."""
