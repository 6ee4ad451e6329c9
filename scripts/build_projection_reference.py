"""Build joulescore/reference/data/projection_reference.csv from the published tables it cites.

Run (the commit of each source is pinned below):

    python scripts/build_projection_reference.py /work/.mirror/ml-energy+leaderboard/repo \
        /work/.mirror/ebbalg+AI-climate-overview/repo > joulescore/reference/data/projection_reference.csv

Rows: every single-GPU ML.ENERGY v3 LLM configuration at max_num_seqs 8 and 16 (vLLM, CUDA graphs), and
every AI Energy Score v1 text-generation row (transformers, eager PyTorch, batch 1, 10 new tokens, H100).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

MLENERGY_COMMIT = "0cd52dab897c5d91a45f4d413038f3b8b4251b0f"
AIES_COMMIT = "96c2d78865b13f822f09b8dd246c76687af4b7dd"
AIES_PATH = "data/AI-energy-leaderboard/text_generation.csv"
COLUMNS = ["source_project", "model", "engine", "gpu", "num_gpus", "batch", "weight_precision", "output_tokens",
           "energy_per_query_j", "avg_power_w", "median_itl_ms", "notes", "source"]


def _show(repo: str, commit: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def main(mlenergy_repo: str, aies_repo: str) -> None:
    out = csv.DictWriter(sys.stdout, COLUMNS, lineterminator="\n")
    out.writeheader()
    for task in ("lm-arena-chat", "gpqa", "sourcegraph-fim"):
        path = f"public/data/tasks/{task}.json"
        for c in json.loads(_show(mlenergy_repo, MLENERGY_COMMIT, path))["configurations"]:
            if c["num_gpus"] != 1 or c["max_num_seqs"] > 16:
                continue
            out.writerow({
                "source_project": "ML.ENERGY Leaderboard v3", "model": c["model_id"], "engine": "vllm",
                "gpu": c["gpu_model"], "num_gpus": 1, "batch": c["max_num_seqs"],
                "weight_precision": c["weight_precision"], "output_tokens": round(c["avg_output_len"], 1),
                "energy_per_query_j": round(c["energy_per_request_joules"], 2),
                "avg_power_w": round(c["avg_power_watts"], 1), "median_itl_ms": round(c["median_itl_ms"], 2),
                "notes": f"task {task}; steady-state GPU-only (Zeus/NVML); batch = max_num_seqs "
                         f"(mean running batch {c['avg_batch_size']:.1f})",
                "source": f"ml-energy/leaderboard:{path}@{MLENERGY_COMMIT}",
            })
    for row in csv.DictReader(_show(aies_repo, AIES_COMMIT, AIES_PATH).splitlines()):
        out.writerow({
            "source_project": "AI Energy Score v1", "model": row["model"], "engine": "pytorch", "gpu": "H100",
            "num_gpus": "", "batch": 1, "weight_precision": "bfloat16", "output_tokens": 10,
            "energy_per_query_j": round(float(row["total_gpu_energy"]) * 3.6e6 / 1000, 3),
            "avg_power_w": "", "median_itl_ms": "",
            "notes": f"text_generation class {row['class']}; GPU-only (CodeCarbon/NVML), transformers, batch 1, "
                     "10 new tokens; total_gpu_energy read as kWh per 1,000 queries; GPU count not published "
                     "(device_map auto), precision assumed bfloat16",
            "source": f"ebbalg/AI-climate-overview:{AIES_PATH}@{AIES_COMMIT} (copy of the AIEnergyScore/Leaderboard "
                      "space's CSV)",
        })


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
