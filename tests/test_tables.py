"""`bench table SPEC.yaml`: paper tables from leaderboard numbers (mean ± std over seeds, best bold), spec
validation with one clear error, the committed example spec, tex that compiles when pdflatex exists."""

from pathlib import Path

import pytest
import yaml

from bench.benchmarks import get_benchmark
from bench.cli import main
from bench.errors import BenchError, ConfigError
from bench.records import BenchmarkRef, DataRef, write_record
from bench.tables import build_table, load_table_spec, render_table, write_table
from test_leaderboard import _pdflatex, _tex_structure, rec

BID, BID2 = "imagenette-mini-v1", "imagenette64-v1"
ROOT = Path(__file__).resolve().parents[1]


def bench_rec(bid, method, seed, knn, linear, backbone="resnet18", **kw):
    """A record of registered benchmark ``bid`` that passes its spec-hash and data checks."""
    b = get_benchmark(bid)
    return rec(method, seed, linear, backbone=backbone, scores={"knn_top1": knn, "linear_top1": linear},
               benchmark=BenchmarkRef(name=b.name, version=b.version, spec_hash=b.spec_hash()),
               data=DataRef(spec=b.data, fingerprint=b.data_fingerprint or "f"), **kw)


@pytest.fixture
def results(tmp_path):
    recs = [bench_rec(BID, "simclr", s, k, lin, params=11_168_832) for s, (k, lin) in
            enumerate([(60.0, 70.0), (62.0, 72.0), (64.0, 74.0)])]
    recs += [bench_rec(BID, "barlow-twins", s, k, lin, params=11_168_832) for s, (k, lin) in
             enumerate([(66.0, 69.0), (68.0, 71.0)])]
    recs += [bench_rec(BID, "random", 0, 20.0, 25.0), bench_rec(BID, "random", 0, 30.0, 35.0, backbone="vit_tiny"),
             bench_rec(BID2, "simclr", 0, 50.0, 55.0), bench_rec(BID2, "random", 0, 21.0, 22.0)]
    for r in recs:
        write_record(r, tmp_path / "results")
    return tmp_path / "results"


def spec_file(tmp_path, **over) -> Path:
    spec = {"benchmarks": [BID], "scores": ["knn_top1", "linear_top1"],
            "methods": [{"method": "simclr", "name": "SimCLR"}, {"method": "barlow-twins", "name": "Barlow Twins"},
                        {"method": "random", "backbone": "resnet18", "name": "random init"}],
            "columns": ["params", "n"], "caption": "Top-1 (%) of frozen_encoders", "label": "tab:mini",
            "formats": ["tex", "md"], "results": str(tmp_path / "results"), "output": str(tmp_path / "out" / "t")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, **over}, sort_keys=False))
    return path


def test_cells_are_the_leaderboard_mean_std(tmp_path, results):
    spec = load_table_spec(spec_file(tmp_path))
    df = build_table(spec)
    assert list(df.index) == ["SimCLR", "Barlow Twins", "random init"]  # spec order, display names
    assert df.loc["SimCLR", (BID, "linear_top1_mean")] == 72.0 and df.loc["SimCLR", (BID, "linear_top1_std")] == 2.0
    assert df.loc["Barlow Twins", (BID, "knn_top1_mean")] == 67.0 and df.loc["random init", (BID, "n")] == 1
    assert df.loc["SimCLR", (BID, "params")] == 11_168_832


def test_md_and_tex_cells_best_bold(tmp_path, results):
    spec = load_table_spec(spec_file(tmp_path))
    df = build_table(spec)
    md = render_table(df, spec, "md").splitlines()
    assert md[0] == "| method | k-NN top-1 | linear top-1 | params | seeds |"
    assert md[2] == "| SimCLR | 62.0 ± 2.0 | **72.0 ± 2.0** | 11.2M | 3 |"
    assert md[3] == "| Barlow Twins | **67.0 ± 1.4** | 70.0 ± 1.4 | 11.2M | 2 |"
    assert md[4] == "| random init | 20.0 | 25.0 | – | 1 |"  # one seed: no std
    assert md[-1] == "Table: Top-1 (%) of frozen_encoders"
    tex = render_table(df, spec, "tex")
    assert r"\caption{Top-1 (\%) of frozen\_encoders}" in tex and r"\label{tab:mini}" in tex
    assert r"SimCLR & 62.0 $\pm$ 2.0 & \textbf{72.0 $\pm$ 2.0} & 11.2M & 3 \\" in tex
    assert r"Barlow Twins & \textbf{67.0 $\pm$ 1.4} & 70.0 $\pm$ 1.4 & 11.2M & 2 \\" in tex
    assert r"random init & 20.0 & 25.0 & -- & 1 \\" in tex and tex.count(r"\textbf") == 2
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and r"\begin{tabular}{lrrrr}" in tex


def test_two_benchmarks_grouped_header_and_missing_cells(tmp_path, results):
    spec = load_table_spec(spec_file(tmp_path, benchmarks=[BID, BID2], columns=[], standalone=True))
    df = build_table(spec)
    tex = render_table(df, spec, "tex")
    assert r" & \multicolumn{2}{c}{imagenette-mini-v1} & \multicolumn{2}{c}{imagenette64-v1} \\" in tex
    assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-5}" in tex
    assert r"Barlow Twins & \textbf{67.0 $\pm$ 1.4} & 70.0 $\pm$ 1.4 & -- & -- \\" in tex  # no BID2 run
    assert r"SimCLR & 62.0 $\pm$ 2.0 & \textbf{72.0 $\pm$ 2.0} & \textbf{50.0} & \textbf{55.0} \\" in tex
    _tex_structure(tex)
    md = render_table(df, spec, "md")
    assert "| method | imagenette-mini-v1 k-NN top-1 | imagenette-mini-v1 linear top-1 | imagenette64-v1 k-NN" in md


def test_cli_writes_the_spec_outputs(tmp_path, results, capsys):
    assert main(["table", str(spec_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "| SimCLR | 62.0 ± 2.0 | **72.0 ± 2.0** | 11.2M | 3 |" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t.md", "t.tex"]
    assert r"\textbf{72.0 $\pm$ 2.0}" in (tmp_path / "out" / "t.tex").read_text()
    assert main(["table", str(spec_file(tmp_path)), "--format", "tex", "--out", str(tmp_path / "o2.tex")]) == 0
    assert sorted(p.name for p in tmp_path.glob("o2*")) == ["o2.tex"]


@pytest.mark.parametrize("over, message", [
    ({"captoin": "x"}, "unknown key 'captoin' of table spec .*spec.yaml \\(did you mean 'caption'\\?\\)"),
    ({"methods": [{"method": "simclr", "nmae": "S"}]}, "unknown key 'nmae' in methods.0 .*did you mean 'name'"),
    ({"benchmarks": ["imagenette-mini-v9"]}, "unknown benchmark 'imagenette-mini-v9' \\(did you mean"),
    ({"scores": ["knn_top2"]}, "unknown score 'knn_top2' .*did you mean 'knn_top1'"),
    ({"methods": ["simclrr"]}, "method 'simclrr' .* has no records .*did you mean 'simclr'"),
    ({"methods": ["random"]}, "method 'random' has 2 setups on imagenette-mini-v1 .*add backbone:"),
    ({"columns": ["flops"]}, "bad value for 'columns.0' .*'params', 'images_seen'"),
    ({"formats": ["pdf"]}, "bad value for 'formats.0'"),
    ({"methods": []}, "bad value for 'methods'"),
    ({"benchmarks": [BID, BID]}, "lists imagenette-mini-v1 more than once"),
])
def test_bad_spec_one_clear_error(tmp_path, results, capsys, over, message):
    path = spec_file(tmp_path, **over)
    with pytest.raises(ConfigError, match=message):
        write_table(load_table_spec(path))
    assert main(["table", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_spec_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="cannot read table spec"):
        load_table_spec(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("benchmarks: [a\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_table_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_table_spec(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text(f"benchmarks: [{BID}]\nmethods: [simclr]\nresults: {tmp_path / 'none'}\n")
    with pytest.raises(BenchError, match="no records for imagenette-mini-v1"):
        build_table(load_table_spec(tmp_path / "empty.yaml"))


@pytest.mark.parametrize("name, n_rows", [("paper_table.yaml", 5), ("pixels_vs_embeddings.yaml", 3)])
def test_example_spec_works_on_committed_results(monkeypatch, name, n_rows):
    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    spec = load_table_spec(ROOT / "examples" / name)
    df = build_table(spec)
    assert len(df) == len(spec.methods) == n_rows
    md = render_table(df, spec, "md").splitlines()
    rows = [line for line in md[2:] if line.startswith("| ")]
    assert len(rows) == n_rows and all("–" not in "|".join(r.split("|")[2:5]) for r in rows)  # every score present
    assert sum(r.count("**") // 2 for r in rows) == len(spec.scores)  # one best per score column
    _tex_structure(render_table(df, spec.model_copy(update={"standalone": True}), "tex"))


def test_table_tex_compiles(tmp_path, results):
    spec = load_table_spec(spec_file(tmp_path, benchmarks=[BID, BID2], standalone=True))
    _pdflatex(render_table(build_table(spec), spec, "tex"), tmp_path)
