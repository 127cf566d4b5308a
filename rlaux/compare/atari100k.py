"""The report's Atari 100k section: rlaux's human-normalised final scores beside the published agents."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from rlaux.compare import plots, stats
from rlaux.compare.markdown import image, interval, table


def atari100k_section(
    scores: pd.DataFrame,
    variants: list[str],
    out: Path,
    fig_dir: Path,
    colors: Mapping[str, tuple],
    reps: int,
    seed: int,
) -> list[str]:
    """Our human-normalised final-score IQM beside the published Atari 100k agents, same games."""
    published = set(stats.atari100k_normalised_scores()["SPR"])
    atari = scores[[stats.is_atari(f) for f in scores["family"]]].copy()
    atari["game_key"] = [stats.game_key(g or e) for g, e in zip(atari["game"], atari["env"], strict=True)]
    ours_games = sorted(set(atari["game_key"]) & published)
    outside = sorted(set(atari["game_key"]) - published)
    lines = ["## Atari 100k: beside published agents (human-normalised final score)", ""]
    lines += [
        "Published per-run scores (SPR, DrQ(eps), CURL, SimPLe, IRIS; rliable's collection, "
        "see `rlaux/data/README.md`) were obtained with 100k agent steps (400k frames), no sticky "
        "actions: the comparison is fair only for runs trained under that protocol.",
        "",
    ]
    matrices: dict[str, np.ndarray] = {}
    if ours_games:
        atari = atari[atari["game_key"].isin(ours_games)]
        atari = atari.assign(env=atari["game_key"])
        ours, _, _ = stats.score_matrices(atari, "final_norm", [v for v in variants if v in set(atari["variant"])])
        matrices.update({f"ours: {v}": m for v, m in ours.items() if m.size})
        lines += [f"Games (ours and published, same set): {', '.join(ours_games)}", ""]
        reference = stats.atari100k_matrices(ours_games)
    else:
        lines += ["No Atari run of ours is on one of the 26 games: published agents shown on all 26 games.", ""]
        reference = stats.atari100k_matrices()
    if outside:
        lines += [f"Our games outside the Atari 100k set (left out here): {', '.join(outside)}", ""]
    matrices.update(reference)
    iqms = stats.iqm_intervals(matrices, reps, seed)
    rows = [[name, f"{m.shape[0]} x {m.shape[1]}", interval(*iqms[name])] for name, m in matrices.items()]
    lines += [table(["agent", "runs x games", "IQM [95% CI]"], rows), ""]
    colors = dict(colors)
    colors.update({f"ours: {v}": colors[v] for v in variants})
    point = {name: np.array([iqms[name][0]]) for name in matrices}
    bounds = {name: np.array([[iqms[name][1]], [iqms[name][2]]]) for name in matrices}
    png = plots.plot_aggregate_intervals(
        point,
        bounds,
        fig_dir / "atari100k_iqm.png",
        metric_names=["IQM"],
        colors=colors,
        xlabel="Human-normalised score",
    )
    lines += [image(png, out, "Atari 100k IQM"), ""]
    return lines


__all__ = ["atari100k_section"]
