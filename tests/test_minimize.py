"""gradcli minimize: seed cases 8, 9, 14 and 15, each optimizer against torch.optim driven by
hand on the same lowered function, divergence, --tol, --trace, the progress bar, --plot.

The second route for the optimizers is torch itself: the same lowered loss (session.prepare's fn),
the optimizer built here with its settings written out, and the seeds' loop
(zero_grad, backward, step) written by hand. Where the arithmetic is the same, the
parameters must be the same to the bit.
"""

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gradcli.commands.minimize import OPTIMIZERS, minimize
from gradcli.core import session
from gradcli.errors import GradcliError
from gradcli.render import LossProgress, wants_progress

ROOT = Path(__file__).resolve().parent.parent
LINE = str(ROOT / "examples" / "data" / "line.csv")
CLUSTERS = str(ROOT / "examples" / "data" / "clusters.csv")
F32_1_4 = float(torch.tensor(1.4, dtype=torch.float32))  # float32's 1.4, as the seed's tensor([1.4000])


# --------------------------------------------------------------------------- seed 001 (cases 8, 9)

def test_seed_8_one_gradient_descent_step(run_json):
    code, doc = run_json("minimize", "(θ*x - y)**2", "θ=1", "x=2", "y=3", "--wrt", "θ", "--lr", "0.1", "--steps", "1")
    assert code == 0
    assert doc["start"]["loss"] == 1.0  # E = 1
    assert doc["start"]["gradient"]["θ"]["data"] == -4.0  # dE/dθ = -4
    assert doc["end"]["parameters"]["θ"]["data"] == F32_1_4  # θ = 1 - 0.1 * -4
    assert doc["steps"] == {"requested": 1, "taken": 1, "evaluations": 2}
    assert doc["stopped"]["reason"] == "steps"
    assert doc["check"]["status"] == "ok"
    assert doc["check"]["points"]["start"]["variables"]["θ"]["value"]["data"] == -4.0  # sympy's 2x(θx - y)
    assert doc["constants"]["x"]["data"] == 2.0 and doc["constants"]["y"]["data"] == 3.0


def test_seed_8_table_shows_the_numbers(run):
    result = run("minimize", "(θ*x - y)**2", "θ=1", "x=2", "y=3", "--wrt", "θ", "--lr", "0.1", "--steps", "1")
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("│ θ"))
    assert [c.strip() for c in row.strip("│").split("│")][:4] == ["θ", "1", "1.4", "-4"]
    loss = next(line for line in result.stdout.splitlines() if line.startswith("│ loss"))
    assert [c.strip() for c in loss.strip("│").split("│")][1] == "1"
    assert "torch.optim.SGD([θ], lr=0.1)" in result.stdout
    assert "agrees with sympy" in result.stdout


@pytest.mark.parametrize("loss", ["(θ*x - y)**2", "mse(θ*x, y)"])
def test_seed_9_with_torch_optim_sgd_and_mse(run_json, loss):
    code, doc = run_json("minimize", loss, "θ=1", "x=2", "y=3", "--wrt", "θ", "--optimizer", "sgd", "--lr", "0.1",
                         "--steps", "1")
    assert code == 0
    assert doc["optimizer"]["call"] == "torch.optim.SGD([θ], lr=0.1)"
    assert doc["start"]["loss"] == 1.0 and doc["start"]["gradient"]["θ"]["data"] == -4.0
    assert doc["end"]["parameters"]["θ"]["data"] == F32_1_4


def test_seed_8_through_the_installed_command(sh):
    result = sh("minimize", "(θ*x - y)**2", "θ=1", "x=2", "y=3", "--wrt", "θ", "--lr", "0.1", "--steps", "1", "--plain")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1.4\n"


# --------------------------------------------------------------------------- seed 002 (cases 14, 15)

def test_seed_14_line_fit_loss_below_1(run_json):
    code, doc = run_json("minimize", "mean(0.5*(y - (w*x + b))**2)", "w=0", "b=0", "--data", LINE, "--wrt", "w,b",
                         "--lr", "0.05", "--steps", "100")
    assert code == 0
    assert doc["start"]["loss"] > 100 and doc["end"]["loss"] < 1
    assert doc["steps"]["taken"] == 100
    x, y = np.loadtxt(LINE, delimiter=",", skiprows=1, unpack=True)
    w, b = doc["end"]["parameters"]["w"]["data"], doc["end"]["parameters"]["b"]["data"]
    assert np.mean(0.5 * (y - (w * x + b)) ** 2) == pytest.approx(doc["end"]["loss"], rel=1e-5)  # by numpy
    assert 1.5 < w < 2.5  # on its way to the line's slope 2
    assert doc["constants"]["x"]["shape"] == [20]  # the data are constants


def test_seed_14_as_seed_cases_spells_it_parameters_start_at_zero(run_json):
    """seed-cases.md gives no start values: --wrt w,b alone; they start at 0, and it says so."""
    code, doc = run_json("minimize", "mean(0.5*(y - (w*x + b))**2)", "--data", LINE, "--wrt", "w,b", "--lr", "0.05",
                         "--steps", "100")
    assert code == 0
    assert doc["start"]["parameters"]["w"]["data"] == 0.0 and doc["start"]["parameters"]["b"]["data"] == 0.0
    assert doc["end"]["loss"] < 1
    assert "w, b start at 0 (no value given)" in doc["warnings"]


def test_a_data_column_cannot_be_a_parameter(run):
    result = run("minimize", "mean(0.5*(y - (w*x + b))**2)", "w=0", "b=0", "--data", LINE, "--wrt", "w,x")
    assert result.exit_code == 2
    assert "x is a column of" in result.stderr and "data are constants" in result.stderr


def test_seed_15_logistic_regression_accuracy_above_099(run_json):
    code, doc = run_json("minimize", "bce(sigmoid(w1*x1 + w2*x2 + b), y)", "w1=0", "w2=0", "b=0", "--data",
                         CLUSTERS, "--wrt", "w1,w2,b", "--optimizer", "momentum", "--lr", "0.01", "--steps", "1000")
    assert code == 0
    assert doc["optimizer"]["momentum"] == 0.9
    p = {n: t["data"] for n, t in doc["end"]["parameters"].items()}
    x1, x2, y = np.loadtxt(CLUSTERS, delimiter=",", skiprows=1, unpack=True)
    predicted = (1 / (1 + np.exp(-(p["w1"] * x1 + p["w2"] * x2 + p["b"])))) >= 0.5  # the seed's y_pred.ge(0.5)
    accuracy = float(np.mean(predicted == (y == 1)))
    assert accuracy > 0.99
    assert doc["end"]["loss"] < doc["start"]["loss"] == pytest.approx(math.log(2))


def test_the_data_sets_are_what_the_generator_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", ROOT / "examples" / "data" / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = tmp_path
    module.main()
    for name in ("line.csv", "clusters.csv"):
        assert (tmp_path / name).read_text() == (ROOT / "examples" / "data" / name).read_text()


# --------------------------------------------------------------------------- each optimizer, by hand

# Written out here, not taken from gradcli: torch.optim's defaults plus lr (and momentum).
BY_HAND = {
    "sgd": lambda ps, lr: torch.optim.SGD(ps, lr=lr),
    "momentum": lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.9),
    "adam": lambda ps, lr: torch.optim.Adam(ps, lr=lr),
    "adamw": lambda ps, lr: torch.optim.AdamW(ps, lr=lr),
    "rmsprop": lambda ps, lr: torch.optim.RMSprop(ps, lr=lr),
    "lbfgs": lambda ps, lr: torch.optim.LBFGS(ps, lr=lr),
}

PROBLEMS = [
    # (loss, values, wrt, data, lr)
    ("mean(0.5*(y - (w*x + b))**2)", ["w=0", "b=0"], "w,b", LINE, 0.01),
    ("sum((p - t)**2) + 0.1*sum(p**4)", ["p=[1,2,3]", "t=[0,1,-1]"], "p", None, 0.02),
    ("bce(sigmoid(w1*x1 + w2*x2 + b), y)", ["w1=0", "w2=0", "b=0"], "w1,w2,b", CLUSTERS, 0.05),
]


def by_hand(loss, values, wrt, data, optimizer, lr, steps):
    """The seeds' loop, on the lowered loss gradcli runs."""
    st = session.prepare(loss, values, wrt=wrt, dtype="float32", device="cpu", rtol=None, atol=None, seed=None,
                    max_elements=10**8, data=data)
    params = {n: st.tensors[n].detach().clone().requires_grad_(True) for n in st.wrt}
    env = {**st.tensors, **params}
    opt = BY_HAND[optimizer](list(params.values()), lr)

    def closure():
        opt.zero_grad()
        loss_value = st.fn(env)
        loss_value.backward()
        return loss_value

    for _ in range(steps):
        if optimizer == "lbfgs":
            opt.step(closure)
        else:
            opt.zero_grad()
            st.fn(env).backward()
            opt.step()
    return {n: p.detach() for n, p in params.items()}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("problem", range(len(PROBLEMS)), ids=["line", "vector", "logistic"])
def test_each_optimizer_is_torch_optim_to_the_bit(optimizer, problem):
    loss, values, wrt, data, lr = PROBLEMS[problem]
    steps = 5 if optimizer == "lbfgs" else 25
    report = minimize(loss, values, wrt=wrt, data=data, optimizer=optimizer, lr=lr, steps=steps, device="cpu")
    expected = by_hand(loss, values, wrt, data, optimizer, lr, steps)
    assert report.steps_taken == steps and report.stopped == "steps"
    for name, tensor in expected.items():
        got = torch.from_numpy(report.end.parameters[name].array).to(torch.float32)
        assert torch.equal(got, tensor), (name, got, tensor)
        assert not torch.equal(tensor, torch.from_numpy(report.start.parameters[name].array).float())  # it moved
    assert report.status == "ok"


def test_momentum_option_sets_sgd_momentum():
    report = minimize("(x - 3)**2", ["x=0"], optimizer="sgd", momentum=0.5, lr=0.1, steps=3)
    assert report.call == "torch.optim.SGD([x], lr=0.1, momentum=0.5)"
    x, v = 0.0, 0.0
    for _ in range(3):  # torch's SGD with momentum: v = mu*v + g (v = g on the first step); x -= lr*v
        g = 2 * (x - 3)
        v = 0.5 * v + g
        x -= 0.1 * v
    assert report.end.parameters["x"].data == pytest.approx(x, rel=1e-6)


def test_lbfgs_reaches_the_minimum_of_a_quadratic_in_one_step():
    report = minimize("(x - 3)**2 + 2*(y + 1)**2", ["x=0", "y=0"], optimizer="lbfgs", lr=1, steps=1)
    assert report.end.parameters["x"].data == pytest.approx(3, abs=1e-4)
    assert report.end.parameters["y"].data == pytest.approx(-1, abs=1e-4)
    assert report.evaluations > 2  # L-BFGS evaluates the loss several times in a step


# --------------------------------------------------------------------------- divergence

def test_divergence_stops_at_once_with_the_last_finite_parameters(run_json):
    code, doc = run_json("minimize", "(x - 3)**2", "x=0", "--lr", "1.5", "--steps", "1000")
    assert code == 1
    # By hand in float32: x <- x - 1.5 * 2(x - 3), until the loss is not finite.
    x = torch.tensor(0.0)
    history = []
    while math.isfinite(float((x - 3) ** 2)):
        history.append(float(x))
        x = x - 1.5 * 2 * (x - 3)
    assert doc["stopped"]["reason"] == "diverged"
    assert doc["stopped"]["diverged_at_step"] == len(history)
    assert doc["steps"]["taken"] == len(history)
    assert doc["end"]["step"] == len(history) - 1
    assert doc["end"]["parameters"]["x"]["data"] == history[-1]
    assert math.isfinite(doc["end"]["loss"])
    assert doc["losses"][-1] == "inf" and len(doc["losses"]) == len(history) + 1
    assert "learning rate" in doc["stopped"]["hint"]
    assert doc["status"] == "failed"


def test_divergence_through_the_installed_command(sh):
    result = sh("minimize", "sqrt(x)", "x=1", "--lr", "10", "--steps", "50")
    assert result.returncode == 1
    assert "diverged: the loss became NaN at step 1" in result.stdout
    assert "hint: is the learning rate too large? try --lr 1" in result.stdout
    assert "Traceback" not in result.stderr


def test_divergence_in_a_machine_format_is_said_on_stderr(run):
    result = run("minimize", "sqrt(x)", "x=1", "--lr", "10", "--format", "csv")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["end"] == "1.0"  # the last finite point is the start
    assert "note: diverged: the loss became NaN at step 1" in result.stderr
    assert "hint: is the learning rate too large?" in result.stderr


def test_a_loss_not_finite_at_the_start():
    report = minimize("log(x)", ["x=-1"], steps=10)
    assert report.stopped == "diverged" and report.diverged_at == 0 and report.steps_taken == 0
    assert "at the start" in report.stop_text
    assert report.status == "failed"


# --------------------------------------------------------------------------- --tol

def test_tol_stops_when_the_gradient_norm_falls_below_it(run_json):
    code, doc = run_json("minimize", "(x - 3)**2", "x=0", "--lr", "0.1", "--steps", "1000", "--tol", "1e-3")
    assert code == 0
    x = torch.tensor(0.0)  # by hand, in float32
    k = 0
    while abs(float(2 * (x - 3))) >= 1e-3:
        x = x - 0.1 * 2 * (x - 3)
        k += 1
    assert doc["stopped"]["reason"] == "tol" and doc["stopped"]["tol"] == 1e-3
    assert doc["steps"]["taken"] == k
    assert doc["end"]["gradient_norm"] < 1e-3
    assert doc["end"]["parameters"]["x"]["data"] == float(x)


def test_tol_over_several_parameters_uses_the_norm_of_all_gradients():
    report = minimize("(a - 1)**2 + (b - 2)**2", ["a=0", "b=0"], lr=0.1, steps=1000, tol=0.01)
    g = np.array([report.end.gradient["a"].data, report.end.gradient["b"].data])
    assert report.end.gradient_norm == pytest.approx(float(np.linalg.norm(g)), rel=1e-6)
    assert report.end.gradient_norm < 0.01


# --------------------------------------------------------------------------- --trace

def hand_sgd_history(steps: int, lr: float = 0.1):
    """(loss, x) after each step of SGD on (x - 3)**2 from x = 0, in float32."""
    x = torch.tensor(0.0)
    out = []
    for _ in range(steps + 1):
        out.append((float((x - 3) ** 2), float(x)))
        x = x - lr * 2 * (x - 3)
    return out


@pytest.mark.parametrize("name, options", [("t.csv", []), ("t.ndjson", []), ("t.jsonl", []),
                                           ("t.log", ["--trace-format", "csv"])])
def test_trace_has_a_record_per_step(run, tmp_path, name, options):
    path = tmp_path / name
    result = run("minimize", "(x - 3)**2", "x=0", "--steps", "5", "--trace", str(path), *options, "--json")
    assert result.exit_code == 0, result.stderr
    text = path.read_text()
    if name.endswith(("csv", "log")):
        rows = list(csv.DictReader(io.StringIO(text)))
        records = [(int(r["step"]), float(r["loss"]), float(r["x"]), float(r["gradient_norm"])) for r in rows]
    else:
        lines = [json.loads(line) for line in text.splitlines()]
        records = [(r["step"], r["loss"], r["parameters"]["x"], r["gradient_norm"]) for r in lines]
    expected = hand_sgd_history(5)
    assert [r[0] for r in records] == list(range(6))
    assert [(r[1], r[2]) for r in records] == expected
    assert [r[3] for r in records] == [float(abs(2 * (torch.tensor(x) - 3))) for _, x in expected]  # in float32
    assert json.loads(result.stdout)["trace"] == {"path": str(path), "format": "ndjson" if "json" in name else "csv"}


def test_trace_of_a_vector_parameter_names_each_element(tmp_path):
    path = tmp_path / "t.csv"
    minimize("sum((w - t)**2)", ["w=[[0,0],[0,0]]", "t=[[1,2],[3,4]]"], wrt="w", steps=2, trace=str(path))
    header = next(csv.reader(io.StringIO(path.read_text())))
    assert header == ["step", "loss", "gradient_norm", "w[0,0]", "w[0,1]", "w[1,0]", "w[1,1]"]


def test_trace_is_flushed_every_step(tmp_path):
    """While the run goes on, the file already holds every step so far (what tail -f shows): the
    temporary file the trace streams into, which becomes the trace when the run ends."""
    path = tmp_path / "t.ndjson"
    seen, temp = [], []
    minimize("(x - 3)**2", ["x=0"], steps=4, trace=str(path), trace_note=temp.append,
             progress=lambda step, loss: seen.append(len(Path(temp[0]).read_text().splitlines())))
    assert seen == [1, 2, 3, 4, 5]
    assert len(path.read_text().splitlines()) == 5 and not Path(temp[0]).exists()


def test_trace_to_stdout_puts_the_table_on_stderr(run):
    result = run("minimize", "(x - 3)**2", "x=0", "--steps", "3", "--trace", "-")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [float(r["x"]) for r in rows] == [x for _, x in hand_sgd_history(3)]
    assert "gradcli minimize" in result.stderr and "gradcli minimize" not in result.stdout


def test_trace_to_stdout_with_a_machine_format_is_refused(run):
    result = run("minimize", "(x - 3)**2", "x=0", "--trace", "-", "--json")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --trace - writes the trace to standard output")


def test_trace_with_an_unknown_suffix_asks_for_the_format(run, tmp_path):
    result = run("minimize", "(x - 3)**2", "x=0", "--trace", str(tmp_path / "t.txt"))
    assert result.exit_code == 2
    assert "cannot tell the format" in result.stderr and "--trace-format" in result.stderr


# --------------------------------------------------------------------------- progress bar

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_for_a_table_on_a_terminal_and_never_with_the_trace_on_stdout():
    assert wants_progress("table", False, Terminal())
    for fmt in ("json", "ndjson", "csv", "plain"):
        assert not wants_progress(fmt, False, Terminal())
    assert not wants_progress("table", True, Terminal())
    assert not wants_progress("table", False, io.StringIO())  # stderr is not a terminal


def test_progress_bar_waits_before_it_shows_and_shows_the_loss(monkeypatch):
    err = Terminal()
    bar = LossProgress(100, err)
    clock = [bar._started]
    bar._clock = lambda: clock[0]
    bar(1, 5.0)
    assert bar._bar is None  # a short run never shows one
    clock[0] += LossProgress.SHOW_AFTER + 0.01
    bar(50, 0.25)
    assert bar._bar is not None and bar._bar.tasks[0].completed == 50
    assert bar._bar.tasks[0].fields["loss"] == "0.25"
    bar.close()


def test_no_progress_in_machine_formats(run):
    result = run("minimize", "(x - 3)**2", "x=0", "--steps", "20000", "--json")
    assert result.exit_code == 0
    assert result.stderr == ""
    json.loads(result.stdout)


# --------------------------------------------------------------------------- the check

def test_a_disagreement_at_the_end_exits_1(run, monkeypatch):
    import gradcli.commands.minimize as module

    real = module.symbolic_gradients
    calls = []

    def wrong_the_second_time(*args, **kwargs):
        refs = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # a reference that disagrees, at 50 digits too
            wrong = refs["x"].value + 1
            refs["x"].value = wrong
            refs["x"].precise = lambda: float(wrong)
        return refs
    monkeypatch.setattr(module, "symbolic_gradients", wrong_the_second_time)
    result = run("minimize", "(x - 3)**2", "x=0", "--steps", "3", "--json", "--check", "symbolic")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["check"]["points"]["start"]["variables"]["x"]["status"] == "agree"
    assert doc["check"]["points"]["end"]["variables"]["x"]["status"] == "disagree"
    assert doc["check"]["points"]["end"]["step"] == 3
    assert len(calls) == 2  # the first and the last point, never each step
    # By default finite differences arbitrate: they side with autograd, so the wrong value is
    # sympy's error (exit 0, as in every command: README, How gradcli checks)
    calls.clear()
    arbitrated = run("minimize", "(x - 3)**2", "x=0", "--steps", "3", "--json")
    assert arbitrated.exit_code == 0
    end = json.loads(arbitrated.stdout)["check"]["points"]["end"]["variables"]["x"]
    assert end["status"] == "sympy error" and end["erred"] == "sympy"


def test_no_check():
    report = minimize("(x - 3)**2", ["x=0"], steps=2, check=False)
    assert report.checks == {} and report.to_dict()["check"]["performed"] is False


# --------------------------------------------------------------------------- --plot

def test_plot_writes_the_loss_curve(run, tmp_path):
    path = tmp_path / "loss.png"
    result = run("minimize", "(x - 3)**2", "x=0", "--steps", "30", "--plot", str(path))
    assert result.exit_code == 0, result.stderr
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(run, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run("minimize", "(x - 3)**2", "x=0", "--plot", str(tmp_path / "loss.png"))
    assert result.exit_code == 2
    assert result.stderr == ('error: --plot (the loss curve) needs matplotlib, which is not installed: '
                             'pip install "gradcli[plot]"\n'
                             'hint: in a clone of gradcli: .venv/bin/pip install -e ".[plot]"\n')
    assert result.stdout == ""


# --------------------------------------------------------------------------- values, options, errors

def test_data_columns_are_constants_and_the_default_parameters_are_the_values_given():
    report = minimize("mean(0.5*(y - (w*x + b))**2)", ["w=0", "b=0"], data=LINE, steps=3, lr=0.01)
    assert report.wrt == ["w", "b"]
    assert set(report.constants) == {"x", "y"}


def test_a_tensor_loss_is_summed_and_says_so():
    report = minimize("(θ*x - y)**2", ["θ=1", "x=[2,2]", "y=[3,3]"], wrt="θ", lr=0.05, steps=1)
    assert report.start.loss == 2.0 and report.start.gradient["θ"].data == -8.0
    assert report.end.parameters["θ"].data == F32_1_4
    assert any("its sum is minimised" in w for w in report.warnings)


def test_zero_steps_evaluates_the_start():
    report = minimize("(x - 3)**2", ["x=0"], steps=0)
    assert report.steps_taken == 0 and report.start.loss == report.end.loss == 9.0


def test_batch_takes_minimize_lines(sh):
    # In a subprocess: an in-process batch keeps its claim on standard input for the session.
    result = sh("batch", input='minimize "(θ*x - y)**2" θ=1 x=2 y=3 --wrt θ --steps 1\n')
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["command"] == "minimize" and doc["end"]["parameters"]["θ"]["data"] == F32_1_4


@pytest.mark.parametrize("args, message", [
    (["--lr", "0"], "--lr must be a finite number > 0"),
    (["--steps", "-1"], "--steps must be between 0"),
    (["--tol", "-1"], "--tol must be a finite number >= 0"),
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum does not apply to --optimizer adam"),
    (["--momentum", "1"], "--momentum must be at least 0 and below 1"),
    (["--wrt", "z"], "--wrt z: z is not a variable"),
    (["--plot", "loss.txt"], "the file name must end in .png, .svg or .pdf"),
])
def test_bad_options_are_one_line_errors(run, args, message):
    result = run("minimize", "(x - 3)**2", "x=0", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_every_variable_from_data_and_no_wrt_is_an_error():
    with pytest.raises(GradcliError, match="no parameter to move"):
        minimize("mean((y - x)**2)", [], data=LINE)


def test_help_has_the_seed_example(run):
    result = run("minimize", "--help")
    assert result.exit_code == 0
    assert 'gradcli minimize "(θ*x - y)**2" θ=1 x=2 y=3 --wrt θ --lr 0.1 --steps 1' in result.stdout


def test_the_core_module_imports_neither_typer_nor_rich():
    import subprocess

    code = ("import sys\n"
            "from gradcli.commands.minimize import minimize\n"
            "minimize('(x - 3)**2', ['x=0'], steps=2)\n"
            "print(sorted(m for m in ('typer', 'rich', 'matplotlib') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_loss_that_grows_but_stays_finite_is_warned_of():
    """lr 1.5 on (x - 3)**2 doubles the distance each step: 1e31 after 50 steps, not yet inf."""
    report = minimize("(x - 3)**2", ["x=0"], lr=1.5, steps=50)
    assert report.stopped == "steps" and report.end.loss > 1e30
    assert any("the loss grew from 9" in w and "--lr 0.15" in w for w in report.warnings)
    calm = minimize("(x - 3)**2", ["x=0"], lr=0.1, steps=50)
    assert not any("grew" in w for w in calm.warnings)


def test_no_start_value_and_no_data_says_so(run):
    result = run("minimize", "(x - 3)**2", "--steps", "3")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no parameter to move: give each parameter a start value")


def test_an_infinite_gradient_at_the_start_is_said_not_blamed_on_the_learning_rate(run):
    result = run("minimize", "sqrt(x)", "x=0", "--steps", "3")
    assert result.exit_code == 1
    out = result.stdout + result.stderr
    assert "the gradient at the start is not finite" in out
    assert "learning rate" not in out
    assert out.count("the derivative is not finite at this point") == 1  # said once, not per check
