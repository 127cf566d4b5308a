"""rlaux PPO beside gymnax-blines' published PPO logs on MinAtar: is each published number inside rlaux's seed range?

    # from run folders (compare's output; evaluations.npz of --eval-freq 320000 --eval-episodes 164 --eval-stochastic)
    python docs/results/baselines/check.py --runs runs/baselines
    # from the committed data alone (evaluations.csv beside this script)
    python docs/results/baselines/check.py

Writes evaluations.csv (one row per run and evaluation: the mean return of its episodes, the run's episode cap and
its setting) and report.md here. Runs read with --runs replace the rows of the same game, seed, episode cap and setting
and keep the rest, so a later sweep adds to the committed data. Only runs of the preset (setting "preset") at the
published env's episode cap (gymnax's max_steps_in_episode) make the check; runs at another cap are listed apart, and
runs of another setting (a compare ``--label``, e.g. a changed hyperparameter tried as the cause of a gap) are set
beside the published numbers in a section of their own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rlaux.compare.markdown import table
from rlaux.compare.significance import exact_test, holm
from rlaux.run_folder import RunFolder

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parents[2] / "rlaux" / "data" / "minatar_ppo_gymnax_blines.json"
#: A published checkpoint and an rlaux evaluation are the same point when this close (rlaux evaluates at multiples
#: of 320,000 env steps, gymnax-blines 64 steps earlier).
STEP_TOLERANCE = 1_000
#: The setting of runs made with the preset as it is (no ``--label``).
PRESET = "preset"
#: The check is made at 1M env steps (published checkpoints 0.32M, 0.64M, 0.96M); later evaluations (runs to the
#: published run's final budget, 10M) are set beside the published ones in a section of their own.
CHECK_BUDGET = 1_000_000


def read_runs(roots: list[str]) -> pd.DataFrame:
    rows = []
    for folder in RunFolder.find(roots):
        if not folder.evaluations.is_file():
            continue
        if not folder.finished:  # a run still training (or cut off) joins the check once it has finished
            print(f"left out, unfinished: {folder.path.name}", file=sys.stderr)
            continue
        record = folder.read()
        cap = int(record["env_spec"]["env_kwargs"]["max_episode_steps"])
        setting = record.request.get("label") or PRESET
        data = np.load(folder.evaluations)
        for step, returns in zip(data["timesteps"], data["results"], strict=True):
            rows.append({"game": record["game"], "seed": int(record["seed"]), "step": int(step),
                         "mean_return": round(float(np.mean(returns)), 6), "episodes": len(returns),
                         "max_episode_steps": cap, "setting": setting})
    return pd.DataFrame(rows)


def merge(old: pd.DataFrame, new: pd.DataFrame, key: list[str] | None = None,
          order: list[str] | None = None) -> pd.DataFrame:
    """``old`` with every ``key`` (default: game, seed, episode cap, setting) that ``new`` has replaced by ``new``'s
    rows, sorted by ``order`` (default: game, setting, episode cap, seed, step)."""
    key = key or ["game", "seed", "max_episode_steps", "setting"]
    order = order or ["game", "setting", "max_episode_steps", "seed", "step"]
    replaced = old.set_index(key).index.isin(new.set_index(key).index)
    merged = pd.concat([old[~replaced], new], ignore_index=True)
    return merged.sort_values(order, kind="stable").reset_index(drop=True)


def at_published_cap(evaluations: pd.DataFrame, reference: dict) -> pd.Series:
    """True for the rows whose runs ended episodes where the published env ends them."""
    caps = {game: log["max_steps_in_episode"] for game, log in reference["games"].items()}
    return evaluations["max_episode_steps"] == evaluations["game"].map(caps)


def compare(evaluations: pd.DataFrame, reference: dict) -> pd.DataFrame:
    rows = []
    for game, log in reference["games"].items():
        ours = evaluations[evaluations["game"] == game]
        for step, published in zip(log["env_steps"], log["mean_return"], strict=True):
            near = ours[(ours["step"] - step).abs() <= STEP_TOLERANCE]
            if near.empty:
                continue
            values = near.sort_values("seed")["mean_return"].to_numpy()
            low, high = float(values.min()), float(values.max())
            rows.append({"game": game, "step": step, "published": published, "seeds": len(values),
                         "rlaux_low": low, "rlaux_high": high, "rlaux_mean": float(values.mean()),
                         "per_seed": " ".join(f"{v:.2f}" for v in values), "inside": low <= published <= high})
    return pd.DataFrame(rows)


CHECK_COLUMNS = ["game", "env steps", "published", "rlaux per seed", "rlaux range", "rlaux mean", "inside"]


def check_rows(checked: pd.DataFrame, miss: str) -> list[list[str]]:
    """``compare``'s rows as table cells (CHECK_COLUMNS); ``miss`` marks a published number outside the range."""
    return [[r.game, f"{r.step:,}", f"{r.published:.2f}", r.per_seed, f"{r.rlaux_low:.2f} to {r.rlaux_high:.2f}",
             f"{r.rlaux_mean:.2f}", "yes" if r.inside else miss] for r in checked.itertuples()]


def report(table_: pd.DataFrame, reference: dict, elsewhere: pd.DataFrame, settings: pd.DataFrame) -> str:
    lines = ["# rlaux PPO beside gymnax-blines' published PPO (MinAtar, no sticky actions)", "",
             "Generated by `check.py` from `evaluations.csv` and `rlaux/data/minatar_ppo_gymnax_blines.json` "
             f"(gymnax-blines commit {reference['commit'][:7]}, one published run per game).", "",
             "Each row: the published mean return of 164 stochastic-policy episodes at that checkpoint, and rlaux's "
             "evaluation at the same step (164 episodes, `--eval-stochastic`) for each seed. *Inside*: the published "
             "number lies within rlaux's seed range (lowest to highest).", ""]
    lines += [table(CHECK_COLUMNS, check_rows(table_, miss="**no**")), ""]
    if len(table_):
        inside = int(table_["inside"].sum())
        lines += [f"{inside} of {len(table_)} published checkpoints lie inside rlaux's seed range.", ""]
    if len(elsewhere):
        caps = ", ".join(f"{game} {log['max_steps_in_episode']:,}" for game, log in reference["games"].items())
        lines += ["## Runs at another episode cap (not compared)", "",
                  "Evaluations of runs whose episodes were cut at another step count than the published env's "
                  f"(gymnax's max_steps_in_episode: {caps}).", ""]
        grouped = elsewhere.groupby(["game", "max_episode_steps", "step"])["mean_return"]
        rows = [[game, f"{cap:,}", f"{step:,}", " ".join(f"{v:.2f}" for v in values)]
                for (game, cap, step), values in grouped]
        lines += [table(["game", "episode cap", "env steps", "rlaux per seed"], rows), ""]
    if len(settings):
        lines += ["## Other settings tried as causes of the gaps", "",
                  "Runs of the preset with one change (named by the compare `--label` they were run with; the study's "
                  "README says what each changes), at the published episode cap, set beside the published numbers "
                  "as above. They do not count in the check.", ""]
        rows = [[setting, *cells] for setting, cells in zip(settings["setting"], check_rows(settings, miss="no"))]
        lines += [table(["setting", *CHECK_COLUMNS], rows), ""]
    return "\n".join(lines)


RERUN = HERE / "gymnax_blines_rerun.csv"


def rerun_section(rerun: pd.DataFrame, checked: pd.DataFrame, evaluations: pd.DataFrame) -> list[str]:
    """gymnax-blines' own PPO rerun here at several seeds (rerun_gymnax_blines.sh) beside the published run and
    rlaux's preset: two seed ranges, with P(rlaux > rerun) and its exact two-sided p-value per checkpoint."""
    rows = []
    for r in checked.itertuples():
        theirs = rerun[(rerun["game"] == r.game) & ((rerun["step"] - r.step).abs() <= STEP_TOLERANCE)]
        if theirs.empty:
            continue
        ours = evaluations[(evaluations["game"] == r.game) & (evaluations["setting"] == PRESET)
                           & ((evaluations["step"] - r.step).abs() <= STEP_TOLERANCE)]
        theirs_v = theirs.sort_values("seed")["mean_return"].to_numpy()
        ours_v = ours.sort_values("seed")["mean_return"].to_numpy()
        probability, p, _ = exact_test(ours_v, theirs_v)
        rows.append([r.game, f"{r.step:,}", f"{r.published:.2f}", " ".join(f"{v:.2f}" for v in theirs_v),
                     f"{theirs_v.min():.2f} to {theirs_v.max():.2f}",
                     "yes" if theirs_v.min() <= r.published <= theirs_v.max() else "no",
                     f"{ours_v.min():.2f} to {ours_v.max():.2f}", f"{len(ours_v)} vs {len(theirs_v)}",
                     f"{probability:.2f}", p])
    if not rows:
        return []
    adjusted = holm({str(i): row[-1] for i, row in enumerate(rows)})
    rows = [[*row[:-1], f"{row[-1]:.2g}", f"{adjusted[str(i)]:.2g}"] for i, row in enumerate(rows)]
    return ["## gymnax-blines' own PPO, rerun here at several seeds", "",
            "gymnax-blines' `train.py` at the published commit, unmodified (evosax, which it imports for its ES "
            "agents only, stubbed), with the library versions of its time, run on this machine's CPU for 1M steps "
            "per seed (`rerun_gymnax_blines.sh`; gymnax_blines_rerun.csv). *Published inside*: the published run "
            "lies within the rerun's own seed range. P(rlaux > rerun): probability that an rlaux preset seed "
            "scores above a rerun seed, with its exact two-sided p-value (all splits of the runs), one test per "
            f"checkpoint, and Holm's adjustment over the {len(rows)} tests of this table.", "",
            table(["game", "env steps", "published", "rerun per seed", "rerun range", "published inside",
                   "rlaux preset range", "runs (rlaux vs rerun)", "P(rlaux > rerun)", "exact p",
                   f"Holm over {len(rows)}"], rows), ""]


def final_budget_section(later: pd.DataFrame, reference: dict) -> list[str]:
    """The published checkpoints after 1M env steps beside rlaux's runs to the published final budget."""
    if later.empty:
        return []
    last = later.sort_values("step").groupby("game").tail(1)
    inside = int(later["inside"].sum())
    finals = "; ".join(f"{r.game} at {r.step:,}: published {r.published:.2f}, rlaux {r.per_seed}"
                       for r in last.itertuples())
    return ["## To the published run's final budget", "",
            "The same runs of the preset, trained on to gymnax-blines' budget (10M env steps; the first 1M of each is "
            "the run of the same seed in the table above, evaluation for evaluation), beside every later published "
            f"checkpoint, with {int(later['seeds'].max())} seed(s) so far (a range over one seed is a point, which "
            f"a published number is never inside). {inside} of {len(later)} lie inside rlaux's seed range; last "
            f"checkpoints: {finals}.", "",
            table(CHECK_COLUMNS, check_rows(later, miss="**no**")), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="*", default=None, help="run folders to read (default: evaluations.csv here)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write report.md into (default: here)")
    args = parser.parse_args()
    reference = json.loads(REFERENCE.read_text())
    committed = HERE / "evaluations.csv"
    if args.runs:
        merge(pd.read_csv(committed), read_runs(args.runs)).to_csv(committed, index=False)
    evaluations = pd.read_csv(committed)
    published_cap = at_published_cap(evaluations, reference)
    checked = pd.concat([compare(rows, reference).assign(setting=setting)
                         for setting, rows in evaluations[published_cap].groupby("setting")], ignore_index=True)
    preset = checked["setting"] == PRESET
    within = checked["step"] <= CHECK_BUDGET
    text = report(checked[preset & within], reference,
                  evaluations[~published_cap & (evaluations["setting"] == PRESET)], checked[~preset & within])
    if RERUN.is_file():
        text += "\n" + "\n".join(rerun_section(pd.read_csv(RERUN), checked[preset & within],
                                                evaluations[published_cap]))
    later = final_budget_section(checked[preset & ~within], reference)
    if later:
        text += "\n" + "\n".join(later)
    (args.out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
