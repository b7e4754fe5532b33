"""gradcli plot: the plotted numbers, the images, the terminal drawing, CSV, and the missing extra.

The numbers are checked against closed forms (cos for sin, 3x^2 + 5 for x^3 + 5x) as well as
against sympy's derivative, which the plot carries beside autograd's.
"""

import csv
import io
import json
import math
import struct
import subprocess
import sys

import numpy as np
import pytest

from gradcli.commands.plot import plot_data
from gradcli.errors import GradcliError
from gradcli.render import plot as draw

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def series(data, label):
    return next(s for s in data.series if s.label == label)


# --------------------------------------------------------------------------- the numbers

def test_seed_21_sin_and_its_derivative_cos():
    data = plot_data("sin(x)", ["x=-5:5:200"])
    x = data.axes["x"].array
    assert x.shape == (200,)
    assert x == pytest.approx(np.linspace(-5, 5, 200).astype(np.float32), abs=0)
    assert data.f.array == pytest.approx(np.sin(x), abs=1e-6)
    d = series(data, "df/dx")
    assert d.formula == "cos(x)"
    assert d.autograd.array == pytest.approx(np.cos(x), abs=1e-6)  # the closed form
    assert d.symbolic.array == pytest.approx(np.cos(x), abs=1e-12)  # sympy's, in float64
    assert d.status == "agree" and d.compared == 200
    assert d.max_abs_error == pytest.approx(float(np.abs(d.autograd.array - d.symbolic.array).max()), rel=1e-12)
    assert 0 < d.max_abs_error < 1e-6  # float32 against float64: small, and honestly not zero
    assert data.status == "ok"


def test_seed_22_each_partial_derivative_along_its_own_variable():
    data = plot_data("x**3 + 5*x + y**2", ["x=-5:5:200", "y=-5:5:200"])
    x, y = data.axes["x"].array, data.axes["y"].array
    assert data.kind == "line" and data.variables == ["x", "y"]
    assert data.f.array == pytest.approx(x**3 + 5 * x + y**2, rel=1e-6, abs=1e-4)  # at the pairs (x_i, y_i)
    dx, dy = series(data, "df/dx"), series(data, "df/dy")
    assert dx.autograd.array == pytest.approx(3 * x**2 + 5, rel=1e-6)
    assert dy.autograd.array == pytest.approx(2 * y, rel=1e-6)
    assert dx.formula == "3*x**2 + 5" and dy.formula == "2*y"
    assert dx.symbolic.array == pytest.approx(3 * x.astype(np.float64) ** 2 + 5, rel=1e-14)
    assert (dx.pretty, dy.pretty) == ("∂f/∂x", "∂f/∂y")
    assert [s.status for s in data.series] == ["agree", "agree"]


def test_order_gives_each_higher_derivative():
    data = plot_data("sin(x)", ["x=-3:3:61"], order=4, dtype="float64")
    x = data.axes["x"].array
    expected = {"df/dx": np.cos(x), "d2f/dx2": -np.sin(x), "d3f/dx3": -np.cos(x), "d4f/dx4": np.sin(x)}
    assert [s.label for s in data.series] == list(expected)
    for label, closed in expected.items():
        s = series(data, label)
        assert s.autograd.array == pytest.approx(closed, abs=1e-12)
        assert s.symbolic.array == pytest.approx(closed, abs=1e-12)
        assert s.status == "agree"
    assert series(data, "d3f/dx3").pretty == "d³f/dx³"


def test_paired_variables_with_order_two_are_pure_partials():
    data = plot_data("x**3 + 5*x + y**2", ["x=-2:2:9", "y=-2:2:9"], order=2)
    x = data.axes["x"].array
    assert series(data, "d2f/dx2").autograd.array == pytest.approx(6 * x)
    assert series(data, "d2f/dy2").autograd.array == pytest.approx(np.full(9, 2.0))


def test_a_single_value_is_a_constant():
    data = plot_data("a*sin(x)", ["x=0:pi:7", "a=2"])
    assert data.variables == ["x"] and list(data.constants) == ["a"]
    x = data.axes["x"].array
    assert series(data, "df/dx").autograd.array == pytest.approx(2 * np.cos(x), abs=1e-6)
    assert series(data, "df/dx").formula == "a*cos(x)"


def test_values_as_keywords_for_the_library():
    data = plot_data("x**2", x="-1:1:5")
    assert series(data, "df/dx").autograd.array.tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_grid_gives_the_gradient_at_every_node():
    data = plot_data("x**2*y - y", ["x=-2:2:5", "y=-1:1:3"], grid=True, dtype="float64")
    X, Y = data.axes["x"].array, data.axes["y"].array
    assert data.kind == "grid" and X.shape == Y.shape == data.f.array.shape == (3, 5)  # rows follow y
    assert X[0].tolist() == [-2, -1, 0, 1, 2] and Y[:, 0].tolist() == [-1, 0, 1]
    assert data.f.array == pytest.approx(X**2 * Y - Y)
    assert series(data, "df/dx").autograd.array == pytest.approx(2 * X * Y)
    assert series(data, "df/dy").autograd.array == pytest.approx(X**2 - 1)
    for s in data.series:
        assert s.symbolic.array == pytest.approx(s.autograd.array, abs=1e-12)
        assert s.status == "agree" and s.compared == 15


def test_points_outside_the_domain_are_left_out_and_said():
    # One verdict for one point: `gradcli grad log(x) x=-1` says not finite (exit 1), so a plot
    # through x = -1 says it too; the points inside the domain are still compared, and drawn.
    data = plot_data("log(x)", ["x=-5:5:200"])
    d = series(data, "df/dx")
    assert d.status == "not finite" and d.compared == 100 and data.status == "failed"
    assert "not finite at 100 of 200 points" in d.note and "the other 100 agree" in d.note
    assert d.counts() == {"agree": 100, "not finite": 100}
    assert any("not finite at 100 of 200 points" in w for w in data.warnings)
    x = data.axes["x"].array
    assert d.autograd.array[x > 0] == pytest.approx(1 / x[x > 0], rel=1e-6)


def test_a_disagreement_fails_the_plot(monkeypatch):
    import gradcli.commands.plot as plot_module

    real = plot_module.symbolic_order

    def off_by_a_little(*args, **kwargs):
        refs = real(*args, **kwargs)
        refs[0].value = refs[0].value + 1e-3
        return refs
    monkeypatch.setattr(plot_module, "symbolic_order", off_by_a_little)
    data = plot_data("sin(x)", ["x=-1:1:11"])
    d = series(data, "df/dx")
    assert d.status == "disagree" and d.max_abs_error == pytest.approx(1e-3, rel=1e-3)
    assert data.status == "failed"
    assert "DISAGREES" in draw.check_text(d, data)


def test_no_check_plots_autograd_alone():
    data = plot_data("sin(x)", ["x=-1:1:11"], check=False)
    d = series(data, "df/dx")
    assert d.status == "skipped" and d.symbolic is None
    assert [name for name, _ in data.columns()] == ["x", "f", "df/dx"]


@pytest.mark.parametrize("values, options, message", [
    (["x=1"], {}, "nothing to plot over"),
    (["x=[[1,2],[3,4]]"], {}, "a plot runs along 1-D ranges"),
    (["x=[1]"], {}, "a plot needs at least 2"),
    (["x=-1:1:3", "y=-1:1:4"], {}, "the same number of points: x has 3, y has 4"),
    (["x=-1:1:3", "y=-1:1:4", "z=0:1:2"], {"grid": True}, "--grid draws a function of two variables; 3 have"),
    (["x=-1:1:3", "y=1"], {"grid": True}, "1 have ranges"),
    (["x=-1:1:3", "y=rand(4)"], {"grid": True}, "a grid runs along ranges, not random values"),
    (["x=-1:1:3", "y=-1:1:3"], {"grid": True, "order": 2}, "--order is for line plots"),
    (["x=-1:1:3", "y=-1:1:3"], {"order": 11}, "--order must be between 1 and 10"),
    (["x=-1:1:1000", "y=-1:1:1001"], {"grid": True}, "the grid would have 1,000 x 1,001 = 1,001,000 points"),
    (["x=-1:1:3"], {}, "no value for y"),
])
def test_plain_errors(values, options, message):
    with pytest.raises(GradcliError) as err:
        plot_data("x*y" if len(values) > 1 or "no value" in message else "sin(x)", values, **options)
    assert message in err.value.message


def test_a_missing_value_is_asked_for_as_a_range():
    with pytest.raises(GradcliError) as err:
        plot_data("x*y", ["x=-1:1:3"])
    assert "y=-5:5:200" in err.value.hint


@pytest.mark.parametrize("expression", ["sum(x)", "x[0]*x", "mean(x)*x", "[x, x**2]"])
def test_expressions_that_mix_the_points_are_refused(expression):
    with pytest.raises(GradcliError):
        plot_data(expression, ["x=-1:1:3"])


# --------------------------------------------------------------------------- CSV and JSON

def test_csv_when_stdout_is_not_a_terminal(run):
    result = run("plot", "sin(x)", "x=-pi:pi:9")  # CliRunner's stdout is not a terminal
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["x", "f", "df/dx", "df/dx symbolic", "df/dx check"]
    assert {r[-1] for r in rows[1:]} == {"agree"}
    assert len(rows) == 10
    data = plot_data("sin(x)", ["x=-pi:pi:9"])
    table = np.array([[float(v) for v in row[:-1]] for row in rows[1:]])  # the last column is the check
    # Full precision: every number reads back as exactly the one computed.
    assert table[:, 0].tolist() == data.axes["x"].array.tolist()
    assert table[:, 1].tolist() == data.f.array.tolist()
    assert table[:, 2].tolist() == series(data, "df/dx").autograd.array.tolist()
    assert table[:, 3].tolist() == series(data, "df/dx").symbolic.array.tolist()
    assert table[:, 2] == pytest.approx(np.cos(table[:, 0]), abs=1e-6)


def test_csv_of_a_grid_has_a_row_per_node(run):
    result = run("plot", "x*y", "x=0:1:4", "y=0:2:3", "--grid", "--format", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 12
    assert list(rows[0]) == ["x", "y", "f", "df/dx", "df/dx symbolic", "df/dx check", "df/dy", "df/dy symbolic",
                             "df/dy check"]
    for r in rows:
        assert float(r["f"]) == pytest.approx(float(r["x"]) * float(r["y"]))
        assert float(r["df/dx"]) == pytest.approx(float(r["y"]))
        assert float(r["df/dy"]) == pytest.approx(float(r["x"]))


def test_json_document(run):
    result = run("plot", "x**2", "x=0:2:3", "--order", "2", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 3 and doc["command"] == "plot" and doc["kind"] == "line"
    assert doc["axes"]["x"]["data"] == [0.0, 1.0, 2.0]
    assert doc["f"]["data"] == [0.0, 1.0, 4.0]
    first, second = doc["series"]
    assert first["label"] == "df/dx" and first["autograd"]["data"] == [0.0, 2.0, 4.0]
    assert first["symbolic"]["formula"] == "2*x" and first["check"]["status"] == "agree"
    assert first["check"]["points"] == {"agree": 3}
    assert second["label"] == "d2f/dx2" and second["autograd"]["data"] == [2.0, 2.0, 2.0]
    assert doc["check"]["status"] == "ok"


def test_json_says_nan_as_a_string(run):
    doc = json.loads(run("plot", "log(x)", "x=-1:1:3", "--json").stdout)
    assert doc["f"]["data"][0] == "nan"


def test_a_disagreement_exits_1(run, monkeypatch):
    import gradcli.commands.plot as plot_module

    real = plot_module.symbolic_order

    def wrong(*args, **kwargs):
        refs = real(*args, **kwargs)
        refs[0].value = -refs[0].value
        return refs
    monkeypatch.setattr(plot_module, "symbolic_order", wrong)
    result = run("plot", "sin(x)", "x=-1:1:5")
    assert result.exit_code == 1
    assert "df/dx" in result.stderr  # the numbers still come, and stderr says what disagreed


def test_batch_takes_plot_lines(run):
    result = run("batch", input='plot "x**2" x=0:1:3\n')
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["command"] == "plot" and doc["series"][0]["autograd"]["data"] == [0.0, 1.0, 2.0]


def test_errors_are_one_line_with_exit_2(run):
    result = run("plot", "sin(x)", "x=1")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: nothing to plot over")
    assert "Traceback" not in result.stderr


def test_help_has_examples(run):
    result = run("plot", "--help")
    assert result.exit_code == 0
    assert 'gradcli plot "sin(x)" x=-5:5:200' in result.stdout
    assert "--grid" in result.stdout and "--out" in result.stdout


# --------------------------------------------------------------------------- images

@pytest.mark.parametrize("args, size", [
    (["sin(x)", "x=-5:5:200"], (1200, 810)),  # 8 x 5.4 inches at 150 dpi
    (["x**3 + 5*x + y**2", "x=-5:5:200", "y=-5:5:200"], (1860, 840)),
    (["x**2 - y**2", "x=-2:2:41", "y=-2:2:41", "--grid"], (1140, 1050)),
])
def test_png_is_written_with_a_sane_size(run, tmp_path, args, size):
    path = tmp_path / "plot.png"
    result = run("plot", *args, "--out", str(path))
    assert result.exit_code == 0, result.stderr
    assert png_size(path) == size
    assert path.stat().st_size > 20_000  # a drawing, not an empty canvas
    assert result.stdout.startswith(f"wrote {path}: f(")
    assert "autograd agrees with sympy's" in result.stdout


def test_png_resolution_follows_dpi(run, tmp_path):
    path = tmp_path / "small.png"
    assert run("plot", "sin(x)", "x=-5:5:200", "--out", str(path), "--dpi", "100").exit_code == 0
    assert png_size(path) == (800, 540)


def test_svg_is_written(run, tmp_path):
    path = tmp_path / "plot.svg"
    assert run("plot", "sin(x)", "x=-5:5:100", "--order", "2", "--out", str(path)).exit_code == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<?xml") and "<svg" in text and text.rstrip().endswith("</svg>")
    assert 'width="576pt" height="388.8pt"' in text  # 8 x 5.4 inches
    again = tmp_path / "again.svg"
    run("plot", "sin(x)", "x=-5:5:100", "--order", "2", "--out", str(again))
    assert again.read_bytes() == path.read_bytes()  # no date or random ids: the same plot, the same file


def test_pdf_is_written(run, tmp_path):
    path = tmp_path / "plot.pdf"
    assert run("plot", "x**2 - y**2", "x=-2:2:21", "y=-1:1:11", "--grid", "--out", str(path)).exit_code == 0
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(data) > 5_000


def test_out_with_csv_gives_both(run, tmp_path):
    path = tmp_path / "both.png"
    result = run("plot", "sin(x)", "x=0:1:3", "--out", str(path), "--format", "csv")
    assert result.exit_code == 0
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert result.stdout.splitlines()[0] == "x,f,df/dx,df/dx symbolic,df/dx check"


def test_an_unknown_image_suffix_is_refused(run, tmp_path):
    result = run("plot", "sin(x)", "x=0:1:3", "--out", str(tmp_path / "plot.jpg"))
    assert result.exit_code == 2
    assert "must end in .png, .svg or .pdf" in result.stderr
    assert not (tmp_path / "plot.jpg").exists()


def test_an_unwritable_path_is_an_error_not_a_crash(run, tmp_path):
    result = run("plot", "sin(x)", "x=0:1:3", "--out", str(tmp_path / "no" / "such" / "dir.png"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot write")


def test_an_empty_plot_still_draws(tmp_path):
    data = plot_data("log(x)", ["x=-2:-1:5"])  # nothing is finite: nothing to compare either
    assert series(data, "df/dx").status == "not finite" and data.status == "failed"
    draw.write_image(data, str(tmp_path / "empty.png"))
    assert png_size(tmp_path / "empty.png")[0] == 1200


def test_a_constant_function_on_a_grid(tmp_path):
    data = plot_data("0*x + 0*y + 3", ["x=0:1:5", "y=0:1:5"], grid=True)
    draw.write_image(data, str(tmp_path / "flat.png"))
    assert png_size(tmp_path / "flat.png") == (1140, 1050)


# --------------------------------------------------------------------------- the terminal

@pytest.mark.parametrize("width", [60, 72, 100])
@pytest.mark.parametrize("values, grid", [
    (["x=-5:5:200"], False),
    (["x=-5:5:200", "y=-5:5:200"], False),
    (["x=-2:2:41", "y=-2:2:41"], True),
])
def test_terminal_drawing_has_the_width_asked_for(width, values, grid):
    expression = "sin(x)" if len(values) == 1 else ("x**2 - y**2" if grid else "x**3 + 5*x + y**2")
    data = plot_data(expression, values, grid=grid)
    out = io.StringIO()
    draw.render_terminal(data, out, width=width, height=16, color=False)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) == width
    assert "\x1b[" not in out.getvalue()  # no colour codes when colour is off
    assert len(lines) >= 16


def test_terminal_plot_shows_the_curves_and_the_check():
    data = plot_data("sin(x)", ["x=-5:5:200"])
    out = io.StringIO()
    draw.render_terminal(data, out, width=80, height=14, color=False)
    text = out.getvalue()
    assert text.startswith("gradcli plot  f(x) = sin(x)\n")
    assert "++ f(x)" in text and "xx df/dx" in text  # the legend: one character per series
    assert "df/dx: agree: autograd agrees with sympy's cos(x): largest difference 3.41e-8 over 200 points" in \
        " ".join(text.split())


def test_terminal_grid_arrows_point_uphill():
    data = plot_data("x**2 - y**2", ["x=-2:2:41", "y=-2:2:41"], grid=True)
    out = io.StringIO()
    draw.render_terminal(data, out, width=60, height=15, color=False)
    row = next(line for line in out.getvalue().splitlines() if line.startswith(" 0 │"))  # y = 0
    cells = row.split("│", 1)[1]
    assert set(cells[:20]) == {"←"} and set(cells[-20:]) == {"→"}  # f grows away from x = 0


def test_terminal_colour_uses_ansi_codes():
    data = plot_data("x**2 - y**2", ["x=-1:1:5", "y=-1:1:5"], grid=True)
    out = io.StringIO()
    draw.render_terminal(data, out, width=50, height=8, color=True)
    assert "\x1b[" in out.getvalue()


def test_format_terminal_through_the_entry_point(sh):
    result = sh("plot", "sin(x)", "x=-5:5:200", "--format", "terminal", env={"COLUMNS": "64", "LINES": "30"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) == 64
    assert "\x1b[" not in result.stdout  # a pipe gets no colour


def test_the_entry_point_prints_csv_into_a_pipe(sh):
    result = sh("plot", "x**3 + 5*x + y**2", "x=-5:5:200", "y=-5:5:200")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 200
    for r in rows[::20]:
        x, y = float(r["x"]), float(r["y"])
        assert float(r["df/dx"]) == pytest.approx(3 * x * x + 5, rel=1e-6)
        assert float(r["df/dy"]) == pytest.approx(2 * y, rel=1e-6, abs=1e-6)


# --------------------------------------------------------------------------- the optional extra

@pytest.mark.parametrize("module, args, purpose", [
    ("matplotlib", ["--out", "plot.png"], "--out (an image file)"),
    ("uniplot", ["--format", "terminal"], "drawing in the terminal"),
])
def test_a_missing_extra_says_what_to_install(run, monkeypatch, tmp_path, module, args, purpose):
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as if it were not installed
    monkeypatch.chdir(tmp_path)
    result = run("plot", "sin(x)", "x=0:1:3", *args)
    assert result.exit_code == 2
    assert result.stderr == (f'error: {purpose} needs {module}, which is not installed: pip install "gradcli[plot]"\n'
                             'hint: in a clone of gradcli: .venv/bin/pip install -e ".[plot]"\n')
    assert result.stdout == ""
    assert not (tmp_path / "plot.png").exists()


def test_without_the_extra_csv_and_json_still_work_and_nothing_plots_is_imported(tmp_path):
    script = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "sys.modules['uniplot'] = None\n"
        "from typer.testing import CliRunner\n"
        "from gradcli.cli.app import app\n"
        "r = CliRunner().invoke(app, ['plot', 'sin(x)', 'x=0:1:3'])\n"
        "print(r.exit_code, r.stdout.splitlines()[0])\n"
        "r = CliRunner().invoke(app, ['plot', 'sin(x)', 'x=0:1:3', '--out', 'a.png'])\n"
        "print(r.exit_code, r.stderr.splitlines()[0])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "0 x,f,df/dx,df/dx symbolic,df/dx check"
    assert second == ('2 error: --out (an image file) needs matplotlib, which is not installed: '
                      'pip install "gradcli[plot]"')


def test_csv_does_not_import_matplotlib(tmp_path):
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gradcli.cli.app import app\n"
        "r = CliRunner().invoke(app, ['plot', 'sin(x)', 'x=0:1:3'])\n"
        "print(r.exit_code, 'matplotlib' in sys.modules, 'uniplot' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.stdout.split() == ["0", "False", "False"], result.stderr


def test_math_of_the_seed_range():
    # x=-5:5:200 is linspace(-5, 5, 200): the step is 10/199, and both ends are included
    data = plot_data("x", ["x=-5:5:200"], dtype="float64")
    x = data.axes["x"].array
    assert x[0] == -5 and x[-1] == 5 and (x[1] - x[0]) == pytest.approx(10 / 199)
    assert math.isclose(series(data, "df/dx").autograd.array.sum(), 200)


def test_a_pole_does_not_loosen_the_check_elsewhere():
    # tan's derivative reaches thousands near its poles; each point is judged on its own scale
    data = plot_data("tan(x)", ["x=-5:5:200"])
    d = series(data, "df/dx")
    assert d.status == "agree" and d.compared == 200
    assert d.max_abs_error > 1e-4 and d.max_rel_error < 1e-6  # large only where the values are
    x = data.axes["x"].array.astype(np.float64)
    assert d.symbolic.array == pytest.approx(1 / np.cos(x) ** 2, rel=1e-12)


def test_y_range_leaves_out_a_few_huge_values_only():
    x = np.linspace(-5, 5, 200)
    assert draw.y_limits([np.sin(x), np.cos(x)]) is None
    assert draw.y_limits([x**3, 3 * x**2 + 5]) is None
    low, high = draw.y_limits([np.tan(x), 1 / np.cos(x) ** 2])
    assert -100 < low < -1 and 10 < high < 500


def test_terminal_says_when_it_clips():
    data = plot_data("tan(x)", ["x=-5:5:200"])
    out = io.StringIO()
    draw.render_terminal(data, out, width=80, height=14, color=False)
    assert "(y clipped)" in out.getvalue()


def test_a_step_function_is_checked_between_its_jumps(run):
    data = plot_data("floor(x)", ["x=-2:2:9"])
    d = series(data, "df/dx")
    # A jump is a kink in the verdict's words: the derivative does not exist there; not a failure.
    assert d.status == "kink" and data.status == "ok"
    assert d.compared == 4  # -1.5, -0.5, 0.5, 1.5; at the integers floor jumps and has no derivative
    assert d.symbolic.array.tolist()[1::2] == [0.0] * 4
    assert d.point_verdicts() == ["kink", "agree"] * 4 + ["kink"]
    assert d.counts() == {"agree": 4, "kink": 5}
    assert "4 of 9 points" in draw.check_text(d, data)
    assert draw.check_text(d, data).startswith("df/dx: kink: autograd agrees with sympy's")
    assert run("plot", "floor(x)", "x=-2:2:9").exit_code == 0


def test_a_derivative_sympy_cannot_evaluate_is_said_not_failed(run, monkeypatch):
    from gradcli.commands import plot as plot_module
    from gradcli.core.reference import SymbolicGradient

    def unavailable(*args, **kwargs):
        return [SymbolicGradient("?", None, "sympy's derivative cannot be evaluated: no torch lowering for X")]
    monkeypatch.setattr(plot_module, "symbolic_order", unavailable)
    data = plot_data("sin(x)", ["x=-2:2:9"], check="symbolic")
    d = series(data, "df/dx")
    assert d.status == "unavailable" and data.status == "unchecked"  # never "ok" with nothing checked
    assert draw.check_text(d, data).startswith("df/dx: unavailable: sympy's derivative cannot be evaluated")
    # by default, finite differences check what sympy cannot
    d = series(plot_data("sin(x)", ["x=-2:2:9"]), "df/dx")
    assert d.status == "agree" and d.compared == 9


def test_a_kink_on_the_range():
    data = plot_data("abs(x - 0.5)", ["x=0:1:3"], dtype="float64")  # x = 0.5 sits on the kink
    d = series(data, "df/dx")
    assert d.autograd.array.tolist() == [-1.0, 0.0, 1.0]  # torch's convention at the kink: sign(0) = 0
    assert d.formula == "sign(x - 0.5)" and d.status == "kink"
    assert d.compared == 2  # the kink has no derivative to compare with
    assert d.point_verdicts() == ["agree", "kink", "agree"] and data.status == "ok"


def test_float16_plots_with_float16_tolerances():
    data = plot_data("sin(x)*exp(y)", ["x=-2:2:30", "y=-1:1:30"], dtype="float16")
    assert data.dtype == "float16" and data.status == "ok"
    for s in data.series:
        assert 0 < s.max_abs_error < 0.02


def test_values_beyond_the_dtype_are_left_out_and_not_finite():
    # x=-3:3:61 passes 1.7e-16, not 0: there cot'' = 2cot(x)csc(x)^2 is about 4e47, past float32's 3.4e38
    # as `gradcli grad` says of that one point: not finite (autograd can only say inf there)
    data = plot_data("cot(x)", ["x=-3:3:61"], order=2)
    d = series(data, "d2f/dx2")
    assert d.status == "not finite" and d.compared == 60
    assert "beyond what float32 can hold" in d.note
    assert data.status == "failed"


def test_infinite_and_huge_values_draw_in_the_terminal():
    # near 0, log's second derivative is -1/x^2, about -4e31: clipped, and never rasterised whole
    data = plot_data("log(x)", ["x=-3:3:61"], order=2)
    out = io.StringIO()
    draw.render_terminal(data, out, width=70, height=12, color=False)
    assert "(y clipped)" in out.getvalue()
    assert max(len(line) for line in out.getvalue().splitlines()) == 70
