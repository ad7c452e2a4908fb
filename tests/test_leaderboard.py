"""Leaderboards: mean ± std and 95% CI over seeds, one benchmark version only, failed runs out, cost columns,
renderers (md, csv, tex - compiled when pdflatex exists -, html - sorted in Chromium when it exists)."""

import importlib.util
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.errors import BenchError, ConfigError
from bench.leaderboard import (build_leaderboard, ci95_halfwidth, render_leaderboard, save_leaderboard,
                               t_quantile_975, write_leaderboard)
from bench.records import BenchmarkRef, DataRef, RunRecord, config_hash, load_record, new_run_id, write_record

BID = "imagenette-mini-v1"
ROOT = Path(__file__).resolve().parents[1]


def rec(method, seed, top1, *, version=1, spec_hash="abc", status="ok", lr=0.3, **kw):
    config = {"method": method, "seed": seed, "lr": lr}
    base = dict(run_id=new_run_id(method, seed), status=status, method=method, backbone="resnet18", recipe=method,
                benchmark=BenchmarkRef(name="imagenette-mini", version=version, spec_hash=spec_hash),
                data=DataRef(spec="imagenette-mini", fingerprint="f"), seed=seed, config=config,
                config_hash=config_hash(config), git_sha=None, env={}, hardware={}, wall_time_s=1.0,
                images_seen=0, scores={"linear_top1": top1, "knn_top1": top1 - 10} if top1 is not None else {},
                selected={}, created_at="2025-01-01T00:00:00+00:00")
    return RunRecord(**{**base, **kw})


def registered_rec(method, seed, top1, **kw):
    """A record that passes ``check_records`` for the registered BID (what the CLI demands)."""
    from bench.benchmarks import get_benchmark
    b = get_benchmark(BID)
    return rec(method, seed, top1, spec_hash=b.spec_hash(),
               data=DataRef(spec=b.data, fingerprint=b.data_fingerprint or "f"), **kw)


@pytest.fixture
def records():
    return [registered_rec("simclr", s, v, wall_time_s=10.0 * (s + 1), images_seen=1000) for s, v in enumerate([70, 72, 74])] + [
        registered_rec("barlow", 0, 75.0, status="collapsed"),
        registered_rec("barlow", 1, None, status="failed", error="NaN loss"),
        registered_rec("simclr", 0, 99.0, version=2),  # another version: never mixed in
        registered_rec("random", 0, 20.0, git_sha="f" * 40,
                       training=[{"git_sha": "a" * 40}, {"git_sha": "b" * 40 + "-dirty"}, {"git_sha": None}]),
    ]


# ---------------------------------------------------------------- statistics
def _student_t_cdf(q: float, nu: int) -> float:
    x = np.linspace(0.0, q, 200_001)
    log_c = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    return 0.5 + float(np.trapezoid(np.exp(log_c) * (1 + x ** 2 / nu) ** (-(nu + 1) / 2), x))


def test_t_quantiles_are_the_student_t_975_quantiles():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile_975(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.042, abs=1e-3)
    assert t_quantile_975(31) == t_quantile_975(1000) == 1.96
    assert math.isnan(t_quantile_975(0))
    for nu in range(1, 31):  # every tabulated value integrates the t density to 0.975
        assert _student_t_cdf(t_quantile_975(nu), nu) == pytest.approx(0.975, abs=1e-5), nu


def test_ci95_halfwidth_known_values():
    assert ci95_halfwidth(1.0, 2) == pytest.approx(12.706 / math.sqrt(2), abs=1e-3)  # 8.98
    assert ci95_halfwidth(1.0, 2) == pytest.approx(8.98, abs=5e-3)
    assert ci95_halfwidth(3.0, 5) == pytest.approx(2.776 * 3.0 / math.sqrt(5), abs=1e-3)
    assert ci95_halfwidth(2.0, 40) == pytest.approx(1.96 * 2.0 / math.sqrt(40))
    assert math.isnan(ci95_halfwidth(1.0, 1)) and math.isnan(ci95_halfwidth(float("nan"), 3))


def test_mean_std_n_ci_rank(records):
    df = build_leaderboard(records, BID)
    assert list(df["method"]) == ["barlow", "simclr", "random"]
    assert list(df["rank"]) == [1, 2, 3]
    s = df.set_index("method").loc["simclr"]
    assert (s["linear_top1_mean"], s["linear_top1_std"], s["n"]) == (72.0, 2.0, 3)
    assert s["linear_top1_ci95"] == pytest.approx(4.3027 * 2.0 / math.sqrt(3), abs=1e-4)  # 4.97
    assert s["knn_top1_mean"] == 62.0 and s["wall_time_s"] == 20.0 and s["images_seen"] == 1000
    assert len(s["run_ids"].split()) == 3
    b = df.set_index("method").loc["barlow"]
    assert b["n"] == 1 and math.isnan(b["linear_top1_std"]) and math.isnan(b["linear_top1_ci95"])
    assert b["status"] == "collapsed 1/1" and df.set_index("method").loc["simclr", "status"] == "ok"
    assert df.attrs["headline"] == "linear_top1"


def test_ci_uses_the_seeds_that_have_the_score():
    recs = [rec("simclr", s, 70.0 + s) for s in range(3)]
    recs[0] = rec("simclr", 0, 70.0, scores={"linear_top1": 70.0})  # no knn score on seed 0
    s = build_leaderboard(recs, BID).iloc[0]
    assert s["knn_top1_std"] == pytest.approx(math.sqrt(0.5)) and s["linear_top1_std"] == 1.0
    assert s["knn_top1_ci95"] == pytest.approx(12.7062 * math.sqrt(0.5) / math.sqrt(2), abs=1e-4)


def test_different_configs_are_not_averaged():
    df = build_leaderboard([rec("simclr", 0, 70.0), rec("simclr", 1, 72.0), rec("simclr", 0, 50.0, lr=1.0)], BID)
    assert sorted(df["n"]) == [1, 2] and sorted(df["linear_top1_mean"]) == [50.0, 71.0]


def test_a_shipped_recipe_named_by_path_or_by_name_is_one_setup():
    df = build_leaderboard([rec("dino", 0, 70.0, recipe="recipes/dino.yaml"), rec("dino", 1, 72.0, recipe="dino"),
                            rec("dino", 2, 50.0, recipe="/tmp/my/dino.yaml")], BID)
    assert sorted(zip(df["recipe"], df["n"])) == [("/tmp/my/dino.yaml", 1), ("dino", 2)]


def test_spec_hash_mismatch_raises():
    with pytest.raises(BenchError, match="different benchmark specs"):
        build_leaderboard([rec("simclr", 0, 70.0, spec_hash="a"), rec("simclr", 1, 70.0, spec_hash="b")], BID)
    assert len(build_leaderboard([rec("simclr", 0, 70.0, spec_hash="a"), rec("dino", 0, 70.0, version=2,
                                                                          spec_hash="b")], BID)) == 1


# ---------------------------------------------------------------- cost columns and old records
def test_cost_columns_params_hardware_time():
    cpu = {"cpu": "AMD EPYC", "cpu_count": 2, "gpu": None, "gpu_count": 0}
    gpu = {"cpu": "Xeon", "cpu_count": 16, "gpu": "NVIDIA H100", "gpu_count": 2}
    df = build_leaderboard([rec("simclr", 0, 70.0, params=11_168_832, hardware=cpu, wall_time_s=1900.0),
                            rec("simclr", 1, 72.0, params=11_168_832, hardware=cpu, wall_time_s=2060.0),
                            rec("dino", 0, 60.0, params=5_500_000, hardware=gpu, wall_time_s=30.0),
                            rec("random", 0, 20.0),
                            rec("barlow", 0, 50.0, hardware={**cpu, "cpu_isa": "AVX2"}),
                            rec("barlow", 1, 51.0, hardware={**cpu, "cpu_isa": "AVX512"}),
                            # trained in two sessions on a GPU, probed later on a CPU: the column names the GPU
                            rec("ijepa", 0, 55.0, hardware=cpu, training=[{"hardware": gpu}, {"hardware": gpu}]),
                            rec("ijepa", 1, 56.0, hardware=gpu, training=[{"hardware": cpu}])], BID)
    by = df.set_index("method")
    assert by.loc["simclr", "params"] == 11_168_832 and by.loc["simclr", "hardware"] == "AMD EPYC, 2 cores"
    assert by.loc["dino", "hardware"] == "2x NVIDIA H100" and pd.isna(by.loc["random", "params"])
    # seeds trained on different CPUs (several-fold apart in speed) show both, with the vector ISA
    assert by.loc["barlow", "hardware"] == "AMD EPYC (AVX2), 2 cores; AMD EPYC (AVX512), 2 cores"
    assert by.loc["ijepa", "hardware"] == "2x NVIDIA H100; AMD EPYC, 2 cores"
    md = render_leaderboard(df, "md")
    simclr = next(line for line in md.splitlines() if "| simclr |" in line)
    assert "| 11.2M |" in simclr and "| 33 min |" in simclr and "| AMD EPYC, 2 cores |" in simclr
    assert "| 5.5M |" in md and "| 30 s |" in md and "| 2x NVIDIA H100 |" in md


def test_records_without_params_still_load(tmp_path):
    data = rec("simclr", 0, 70.0).model_dump(mode="json")
    del data["params"]  # a record written before the field existed
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    assert load_record(path).params is None
    from bench.futures.spec import FUTURES_V1
    from bench.world_model.planning import BENCHMARK_ID as PLANNING
    own_schema = {PLANNING, FUTURES_V1.id}  # planning and futures results have records of their own
    committed = sorted(p for p in (ROOT / "results").glob("*/*.json") if p.parent.name not in own_schema)
    assert committed
    assert all(load_record(p).params is None or load_record(p).params > 0 for p in committed)


# ---------------------------------------------------------------- md, csv, tex
def test_render_md_csv_tex(records):
    df = build_leaderboard(records, BID)
    md = render_leaderboard(df, "md", title=BID)
    assert md.startswith(f"## {BID}") and "| 72.0 ± 2.0 |" in md and "(n=3)" in md and "collapsed 1/1" in md
    assert "| **75.0** |" in md and "| **65.0** |" in md  # n=1: no std; best of each score column bold
    assert md.split("| rank |")[1].count("**") == 4 and "95% CI (linear_top1)" in md
    simclr = next(line for line in md.splitlines() if "| simclr |" in line)
    assert "| ±5.0 |" in simclr  # 4.3027 * 2 / sqrt(3)
    back = pd.read_csv(io.StringIO(render_leaderboard(df, "csv")))
    row = back.set_index("method").loc["simclr"]
    assert (row["linear_top1_mean"], row["linear_top1_std"], row["n"]) == (72.0, 2.0, 3)
    assert row["linear_top1_ci95"] == pytest.approx(4.968, abs=1e-3)
    assert math.isnan(back.set_index("method").loc["barlow", "linear_top1_ci95"])
    tex = render_leaderboard(df, "tex", title=BID)
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"72.0 $\pm$ 2.0" in tex
    assert r"\textbf{75.0}" in tex and r"\textbf{72.0" not in tex
    assert r"linear\_top1" in tex and r"\textbf{65.0}" in tex  # best knn_top1 (75 - 10) bold too
    assert r"95\% CI" in tex and "–" not in tex and r"\documentclass" not in tex
    with pytest.raises(ConfigError, match="unknown leaderboard format 'pdf'"):
        render_leaderboard(df, "pdf")


def _tex_structure(tex: str) -> list[str]:
    """The tabular's rows; asserts a complete booktabs document with the same number of cells per row."""
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert r"\usepackage{booktabs}" in tex and tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 1
    body = tex.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    for row in rows:  # a \multicolumn{k} cell spans k columns
        cells = row[:-2].split(" & ")
        width = sum(int(m.group(1)) if (m := re.match(r"\\multicolumn\{(\d+)\}", c.strip())) else 1 for c in cells)
        assert width == len(spec), row
    return rows


def _pdflatex(tex: str, folder: Path) -> None:
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    (folder / "t.tex").write_text(tex)
    res = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=folder,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    assert (folder / "t.pdf").stat().st_size > 1000


def test_tex_standalone_structure(records):
    df = build_leaderboard(records, BID)
    rows = _tex_structure(render_leaderboard(df, "tex", title="a_b & 100%", standalone=True))
    assert len(rows) == 1 + 3  # header + barlow, simclr, random


def test_tex_standalone_compiles(tmp_path, records):
    tex = render_leaderboard(build_leaderboard(records, BID), "tex", title="imagenette_mini & co 100%",
                             standalone=True)
    _pdflatex(tex, tmp_path)


NON_ASCII = ["Kürbis-Méthode", "straße", "α-JEPA", "Łódź Ω", "中文模型 ✓"]


def test_tex_spells_non_ascii_names_in_ascii(records):
    records += [registered_rec(name, 0, 60.0 + i) for i, name in enumerate(NON_ASCII)]
    tex = render_leaderboard(build_leaderboard(records, BID), "tex", title="Résumé α", standalone=True)
    body = tex.replace(r"$\pm$", "")
    assert tex.isascii(), [c for c in tex if not c.isascii()]  # pdflatex stops at an unknown Unicode character
    for spelled in (r'K\"{u}rbis-M\'{e}thode', r"stra\ss{}e", r"$\alpha$-JEPA", r"\L{}\'{o}d\'{z} $\Omega$",
                    "[U+4E2D][U+6587]", r"R\'{e}sum\'{e} $\alpha$"):
        assert spelled in body, spelled


def test_tex_standalone_with_non_ascii_names_compiles(tmp_path, records):
    records += [registered_rec(name, 0, 60.0 + i) for i, name in enumerate(NON_ASCII)]
    _pdflatex(render_leaderboard(build_leaderboard(records, BID), "tex", title="Résumé α", standalone=True), tmp_path)


def test_a_benchmark_id_that_is_a_path_writes_nothing_anywhere(tmp_path, records):
    df = build_leaderboard(records, BID)
    for bad in ("../escape", str(tmp_path / "abs"), "a/b", ".hidden"):
        with pytest.raises(BenchError, match="is not a plain name"):
            save_leaderboard(df, bad, tmp_path / "lb", ("md",), tmp_path / "results")
        with pytest.raises(BenchError, match="is not a plain name"):
            write_leaderboard(bad, tmp_path / "results", tmp_path / "lb")
    assert list(tmp_path.iterdir()) == []


def test_leaderboard_formats_are_written_all_or_none(tmp_path, records, monkeypatch):
    import bench.io
    for r in records:
        write_record(r, tmp_path / "results")
    _, paths = write_leaderboard(BID, tmp_path / "results", tmp_path / "lb", formats=("md", "csv", "tex"))
    before = {p: p.read_bytes() for p in paths}
    write_record(registered_rec("newcomer", 0, 90.0), tmp_path / "results")
    real, calls = bench.io._write_synced, []

    def tex_fails(tmp, data):
        calls.append(tmp)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", tmp)
        return real(tmp, data)
    monkeypatch.setattr(bench.io, "_write_synced", tex_fails)
    with pytest.raises(BenchError, match="No space left on device"):
        write_leaderboard(BID, tmp_path / "results", tmp_path / "lb", formats=("md", "csv", "tex"))
    assert {p: p.read_bytes() for p in paths} == before  # md and csv not rewritten without the tex
    assert sorted(p.name for p in (tmp_path / "lb" / BID).iterdir()) == sorted(p.name for p in paths)


# ---------------------------------------------------------------- html
def _page(tmp_path, records) -> Path:
    records[0] = records[0].model_copy(update={"selected": {"knn": {"k": 20, "T": 0.07}, "linear": {"lr": 0.3}}})
    for r in records:
        write_record(r, tmp_path / "results")
    _, paths = write_leaderboard(BID, tmp_path / "results", tmp_path / "lb", formats=("html",))
    assert [p.name for p in paths] == ["leaderboard.html"]
    return paths[0]


def test_html_page_rows_plot_links_details(tmp_path, records):
    page = _page(tmp_path, records)
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html and "<script>" in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)  # self-contained: nothing fetched
    tbody = html.split("<tbody>")[1].split("</tbody>")[0]
    assert tbody.count("<tr") == 3 and _methods(html) == ["barlow", "simclr", "random"]  # ranked rows
    assert '<td class="num" data-v="72.0">72.0 ± 2.0<small class="ci">95% CI ±5.0</small></td>' in tbody
    assert '<td class="num best" data-v="75.0">75.0</td>' in tbody and 'class="collapsed"' in tbody
    svg = html.split('<div class="plot">')[1]
    assert svg.startswith("<svg") and "</svg>" in svg and "simclr (resnet18)" in svg
    links = re.findall(r'<a href="([^"]+)">', html)
    ok = [r for r in records if r.benchmark.id == BID and r.status != "failed"]
    assert sorted(links) == sorted(f"../../results/{BID}/{r.run_id}.json" for r in ok)
    assert all((page.parent / link).resolve().is_file() for link in links)
    assert tbody.count("<details>") == 3 and "<summary>3 runs</summary>" in tbody
    assert "knn: T=0.07, k=20" in tbody and "linear: lr=0.3" in tbody and "seed 2" in tbody
    assert "code: trained aaaaaaa, bbbbbbb-dirty, ?, probed fffffff" in tbody  # the commits of each part
    failed = next(r for r in records if r.status == "failed")
    assert failed.run_id not in html


def _methods(html: str) -> list[str]:
    """The method column of the leaderboard table's body, in row order."""
    tbody = html.split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", tr)[1] for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", tbody)]


def _chromium_dom(page: Path, script: str) -> str:
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", f"<script>{script}</script></body>"))
    res = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={page.parent / 'profile'}", "--virtual-time-budget=2000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    return res.stdout


def test_html_header_click_sorts_rows(tmp_path, records):
    page = _page(tmp_path, records)
    header = ["rank", "method", "backbone", "recipe", "config", "linear_top1"]
    click = "const th = document.querySelectorAll('#leaderboard th');"
    dom = _chromium_dom(page, click + f"th[{header.index('method')}].click();")  # ascending by method name
    assert _methods(dom) == ["barlow", "random", "simclr"]
    dom = _chromium_dom(page, click + "th[5].click(); th[5].click();")  # linear_top1: asc, then desc
    assert _methods(dom) == ["barlow", "simclr", "random"]
    dom = _chromium_dom(page, click + "th[5].click();")
    assert _methods(dom) == ["random", "simclr", "barlow"]


# ---------------------------------------------------------------- files and CLI
def test_write_leaderboard(tmp_path, records):
    for r in records:
        write_record(r, tmp_path / "results")
    _, paths = write_leaderboard(BID, tmp_path / "results", tmp_path / "lb")
    assert [p.name for p in paths] == ["leaderboard.md", "leaderboard.csv", "leaderboard.tex"]
    assert all(p.parent == tmp_path / "lb" / BID for p in paths)
    assert "72.0 ± 2.0" in paths[0].read_text() and "99.0" not in paths[0].read_text()
    assert sorted(p.name for p in (tmp_path / "lb" / BID).iterdir()) == sorted(p.name for p in paths)
    with pytest.raises(BenchError, match="no records for imagenette64-v1 in"):
        write_leaderboard("imagenette64-v1", tmp_path / "results", tmp_path / "lb")
    with pytest.raises(ConfigError, match="unknown leaderboard format 'pdf'"):
        save_leaderboard(build_leaderboard(records, BID), BID, tmp_path / "lb", ("pdf",))


def test_selections_at_a_grid_edge_are_listed_under_the_markdown_table(tmp_path):
    """A hyper-parameter picked at the smallest / largest value of a >= 3-value axis is an edge (the best value may
    lie outside the grid); interior values, 2-value axes, wd 0 and failed runs are not."""
    from bench.benchmarks import get_benchmark
    from bench.leaderboard import grid_edge_notes
    b = get_benchmark(BID)
    sel = lambda lr, wd, k: {"linear": {"lr": lr, "wd": wd}, "attentive": {"lr": 0.03, "wd": 0.1}, "knn": {"k": k, "T": 0.05}}
    recs = [registered_rec("simclr", 0, 70.0, selected=sel(3.0, 0.0, 20)),
            registered_rec("simclr", 1, 71.0, selected=sel(3.0, 0.0, 200)),
            registered_rec("random", 0, 20.0, selected={**sel(0.3, 1e-3, 50), "shape_attentive": {"lr": 3e-3, "wd": 0.01}}),
            registered_rec("barlow", 0, None, status="failed", error="NaN loss", selected=sel(0.01, 0.0, 10))]
    notes = grid_edge_notes(b, recs)
    assert notes == [
        "attentive lr=0.03 (the grid's largest of 0.003, 0.01, 0.03): 3 of 3 runs (random, simclr)",
        "knn k=200 (the grid's largest of 10, 20, 50, 100, 200): 1 of 3 runs (simclr)",
        "linear lr=3 (the grid's largest of 0.01, 0.03, 0.1, 0.3, 1, 3): 2 of 3 runs (simclr)",
        "shape_attentive lr=0.003 (the grid's smallest of 0.003, 0.01, 0.03): 1 of 3 runs (random)"]
    for r in recs:
        write_record(r, tmp_path / "results")
    _, paths = write_leaderboard(BID, tmp_path / "results", tmp_path / "lb")
    md = paths[0].read_text()
    assert "Selected at an edge of the protocol's probe grid" in md and f"- {notes[2]}" in md
    assert "edge" not in paths[1].read_text() and "edge" not in paths[2].read_text()   # csv / tex: the table only


def test_cli_leaderboard_all_formats(tmp_path, capsys):
    for s, v in enumerate([70.0, 72.0]):
        write_record(registered_rec("simclr", s, v, params=1_000_000), tmp_path / "results")
    write_record(registered_rec("random", 0, 20.0), tmp_path / "results")
    assert main(["leaderboard", BID, "--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb"),
                 "--format", "md", "csv", "tex", "html", "--standalone"]) == 0
    assert "| **71.0 ± 1.4** |" in capsys.readouterr().out
    folder = tmp_path / "lb" / BID
    assert {p.name for p in folder.iterdir()} == {f"leaderboard.{f}" for f in ("md", "csv", "tex", "html")}
    _tex_structure((folder / "leaderboard.tex").read_text())
    assert "<svg" in (folder / "leaderboard.html").read_text() and "1.0M" in (folder / "leaderboard.md").read_text()


def test_screenshot_script_says_when_chromium_is_missing(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("shot", ROOT / "scripts" / "screenshot_leaderboard.py")
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    monkeypatch.setattr(shot.shutil, "which", lambda name: None)
    (tmp_path / "p.html").write_text("<html><body>x</body></html>")
    with pytest.raises(SystemExit) as e:
        shot.main([str(tmp_path / "p.html"), str(tmp_path / "p.png")])
    assert e.value.code == 2 and "no Chromium found" in capsys.readouterr().err


def test_plot_labels_name_recipe_then_config_only_where_ambiguous():
    from bench.leaderboard_html import point_labels
    df = pd.DataFrame({"method": ["random", "random", "ijepa", "ijepa", "simclr"],
                       "backbone": ["vit_tiny", "vit_tiny", "vit_tiny", "vit_tiny", "resnet18"],
                       "recipe": ["random_vit", "random_vit_cls", "ijepa", "ijepa", "simclr"],
                       "config": ["a", "b", "c", "d", "e"]})
    assert list(point_labels(df)) == ["random (vit_tiny, random_vit)", "random (vit_tiny, random_vit_cls)",
                                      "ijepa (vit_tiny, ijepa, c)", "ijepa (vit_tiny, ijepa, d)", "simclr (resnet18)"]


def test_a_row_label_names_the_objectives_its_config_adds():
    """dino with iBOT's patch term and KoLeo is not plain DINO; V-JEPA with C-JEPA's terms says so; others
    (a plugin with its own var_weight, e.g. VICReg) keep their name."""
    from bench.leaderboard import method_label
    assert method_label("dino", {"method_kwargs": {"patch_loss_weight": 1.0, "koleo_weight": 0.1}}) == \
        "dino + iBOT + KoLeo"
    assert method_label("dino", {"method_kwargs": {"patch_loss_weight": 0.0}}) == "dino"
    assert method_label("vjepa", {"method_kwargs": {"var_weight": 1.0, "cov_weight": 0.04}}) == \
        "vjepa + C-JEPA var/cov"
    assert method_label("vicreg", {"method_kwargs": {"var_weight": 25.0}}) == "vicreg"
    config = {"method": "dino", "seed": 0, "method_kwargs": {"patch_loss_weight": 1.0}}
    ibot = registered_rec("dino", 0, 50.0, config=config, config_hash=config_hash(config))
    df = build_leaderboard([ibot, registered_rec("dino", 0, 40.0)], BID)
    assert list(df["label"]) == ["dino + iBOT", "dino"] and list(df["method"]) == ["dino", "dino"]
    md = render_leaderboard(df, "md")
    assert "| 1 | dino + iBOT | resnet18 |" in md and "| 2 | dino | resnet18 |" in md


def test_errata_leave_runs_out_of_the_means_and_are_listed(tmp_path):
    """results/errata.yaml marks committed records that are known to be wrong (they are never edited): an excluded
    run counts in no mean, std or n, and the markdown / html pages say which and why."""
    from bench.records import load_errata
    runs = [registered_rec("ijepa", s, v) for s, v in enumerate([50.0, 50.0, 54.0])]
    for r in runs:
        write_record(r, tmp_path / "results")
    (tmp_path / "results" / "errata.yaml").write_text(
        f"- runs: [{runs[1].run_id}]\n  exclude: true\n  note: shares seed 0's masks\n")
    df, paths = write_leaderboard(BID, tmp_path / "results", tmp_path / "lb", ("md", "html"))
    assert df.loc[0, "n"] == 2 and df.loc[0, "linear_top1_mean"] == 52.0
    assert runs[1].run_id not in df.loc[0, "run_ids"]
    md, html = (p.read_text() for p in paths)
    assert f"- {runs[1].run_id}: shares seed 0's masks (left out of the means)" in md
    assert "shares seed 0&#x27;s masks" in html or "shares seed 0's masks" in html
    (tmp_path / "results" / "errata.yaml").write_text("- runs: []\n  note: x\n")
    with pytest.raises(BenchError, match="errata.yaml does not match the errata schema: runs: List should have"):
        load_errata(tmp_path / "results")


def test_the_committed_errata_cover_the_jepa_runs_that_shared_seed_0s_masks():
    from bench.records import load_errata
    errata = load_errata(ROOT / "results")
    assert all(e.exclude for e in errata.values())
    assert {"20261130T190126Z-ijepa-s1-7afb16", "20261130T054206Z-vjepa-s1-88a608"} <= set(errata)


def test_duplicate_records_are_one_seed_and_the_table_says_which_was_kept(tmp_path):
    """A record copied under a second file name, or re-probed under a new run_id, is not an extra seed."""
    a, b = registered_rec("simclr", 0, 70.0), registered_rec("simclr", 1, 74.0)
    again = a.model_copy(update={"run_id": new_run_id("simclr", 0), "created_at": "2025-02-01T00:00:00+00:00",
                                 "scores": {"linear_top1": 71.0}})
    df = build_leaderboard([a, b, a, again], BID)
    assert df.loc[0, "n"] == 2 and df.loc[0, "linear_top1_mean"] == 72.5  # seed 0 counts once: its latest, 71.0
    notes = df.attrs["notes"]
    assert any(f"run {a.run_id} is in 2 record files: counted once" in n for n in notes)
    assert any(f"not 2 seeds: kept the latest, {again.run_id}" in n for n in notes)
    assert "Notes:" in render_leaderboard(df, "md")


def test_records_on_different_data_are_different_rows():
    """Ad-hoc (custom-*) ids: a changed folder has another fingerprint, and its runs are never averaged in."""
    one = [rec("simclr", s, v, data=DataRef(spec="imagefolder:/d", fingerprint="a" * 64))
           for s, v in [(0, 60.0), (1, 62.0)]]
    two = [rec("simclr", 2, 100.0, data=DataRef(spec="imagefolder:/d", fingerprint="b" * 64))]
    df = build_leaderboard(one + two, BID)
    assert sorted(df["n"]) == [1, 2] and sorted(df["data"]) == ["aaaaaaaa", "bbbbbbbb"]
    assert any("2 different data sets" in n for n in df.attrs["notes"])
    md = render_leaderboard(df, "md")
    assert "| data |" in md and "| aaaaaaaa |" in md


def test_hostile_names_stay_cells_in_markdown_csv_and_the_plot(tmp_path):
    r = registered_rec("=cmd|x\ny$a$", 0, 50.0)
    df = build_leaderboard([r], BID)
    md = render_leaderboard(df, "md")
    assert "=cmd\\|x y$a$" in md and md.count("\n|") == 3  # header, rule, one row: no cell broke the table
    csv = pd.read_csv(io.StringIO(render_leaderboard(df, "csv")))
    assert csv.loc[0, "method"] == "'=cmd|x\ny$a$"  # a spreadsheet shows it as text, never runs it
    html = render_leaderboard(df, "html", title=BID)  # mathtext would fail on '$a$' in a plot label
    assert "<svg" in html
