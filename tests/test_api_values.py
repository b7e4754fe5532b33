"""The Python API with what Python users have: numpy arrays and scalars, torch tensors, lists;
results as numpy arrays and torch tensors; reports that show their table in a notebook.

Gradients are checked against hand-written torch autograd or the derivative by hand, never
against gradcli's own route.
"""

from __future__ import annotations

import doctest
import html
import io
import re

import numpy as np
import pytest
import torch

import gradcli
from gradcli import render
from gradcli.errors import GradcliError
from tests.helpers import ROOT


def test_a_numpy_array_is_a_value():
    report = gradcli.grad("sum(w**2)", w=np.array([1.0, 2.0]))
    assert report.status == "ok"
    np.testing.assert_array_equal(report.gradient["w"].array, [2.0, 4.0])  # d/dw sum(w^2) = 2w
    assert report.dtype == "float32" and report.gradient["w"].tensor.dtype == torch.float32


@pytest.mark.parametrize("scalar", [np.float64(2.0), np.float32(2.0), np.int64(2), 2, 2.0])
def test_numbers_numpy_scalars_among_them(scalar):
    report = gradcli.grad("x**3", x=scalar)
    assert report.gradient["x"].array == 12.0  # 3 x^2 at 2


def test_lists_and_tuples_nested_and_mixed_with_numpy_scalars():
    report = gradcli.grad("sum(x*y)", x=[[1, 2], [3, 4]], y=(np.float32(5), 6.0))
    np.testing.assert_array_equal(report.gradient["x"].array, [[5, 6], [5, 6]])  # y broadcast over rows
    np.testing.assert_array_equal(report.gradient["y"].array, [4, 6])  # column sums of x
    assert report.gradient["x"].array.shape == (2, 2)


def test_strings_as_typed_still_work():
    report = gradcli.grad("sum(x**2)", x="[1, 2, 3]")
    np.testing.assert_array_equal(report.gradient["x"].array, [2, 4, 6])
    assert gradcli.grad("x**2", {"x": "ones(2)"}).gradient["x"].array.tolist() == [2.0, 2.0]
    # the values by keyword too, a mapping or NAME=VALUE strings, as before
    assert gradcli.grad("x*y", values={"x": 1, "y": np.float32(2)}).gradient["x"].array == 2.0
    assert gradcli.grad(expression="x*y", values=["x=1", "y=2"]).gradient["y"].array == 1.0


def test_a_torch_tensor_keeps_its_dtype_and_the_caller_s_tensor_is_untouched():
    w = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64, requires_grad=True)
    report = gradcli.grad("sum(exp(w) * sin(w))", w=w)
    assert report.status == "ok" and report.dtype == "float64" and report.device == "cpu"
    # the same gradient by hand-written autograd
    leaf = w.detach().clone().requires_grad_()
    (expected,) = torch.autograd.grad((torch.exp(leaf) * torch.sin(leaf)).sum(), [leaf])
    got = report.gradient["w"].tensor
    assert got.dtype == torch.float64 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # gradcli computed on its own leaves: the caller's tensor has no .grad and is unchanged
    assert w.grad is None and w.requires_grad and w.tolist() == [0.3, -1.2, 2.5]


def test_dtype_given_overrides_the_tensors_and_several_dtypes_promote():
    w = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert gradcli.grad("sum(w**2)", w=w, dtype="float32").dtype == "float32"
    half = torch.tensor([1.0, 2.0], dtype=torch.float16)
    assert gradcli.grad("sum(a*b)", a=half, b=w).dtype == "float64"
    assert gradcli.grad("sum(a*b)", a=half, b=torch.tensor([1, 2])).dtype == "float16"  # integers don't count


def test_tensors_on_different_devices_are_refused_with_the_devices_named():
    with pytest.raises(GradcliError) as info:
        gradcli.grad("sum(a*b)", a=torch.ones(2), b=torch.ones(2, device="meta"))
    assert info.value.message == "the tensors given are on different devices (cpu, meta)"
    assert "device=" in (info.value.hint or "")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_tensor_is_computed_on_its_device():
    w = torch.tensor([1.0, 2.0], device="cuda", dtype=torch.float64)
    report = gradcli.grad("sum(w**3)", w=w)
    assert report.device.startswith("cuda") and report.dtype == "float64" and report.status == "ok"
    got = report.gradient["w"].tensor
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), torch.tensor([3.0, 12.0], dtype=torch.float64))


def test_the_vector_of_vjp_may_be_an_array():
    report = gradcli.vjp("x**2", x=np.array([1.0, 2.0]), vector=np.array([1.0, 0.5]))
    np.testing.assert_array_equal(report.vjp["x"].array, [2.0, 2.0])  # v * 2x


def test_hessian_and_jacobian_results_by_name():
    h = gradcli.hessian("x*y**2", x=1, y=2)
    np.testing.assert_array_equal(h.hessian.array, [[0, 4], [4, 2]])  # [[0, 2y], [2y, 2x]]
    assert h.hessian.tensor.shape == (2, 2)
    j = gradcli.jacobian("[r*cos(t), r*sin(t)]", r=1.0, t=0.5)
    np.testing.assert_allclose(j.jacobian["r"].array, [np.cos(0.5), np.sin(0.5)], rtol=1e-6)
    np.testing.assert_allclose(j.jacobian["t"].array, [-np.sin(0.5), np.cos(0.5)], rtol=1e-6)
    assert set(j.results) == {"r", "t"}


def test_asking_a_report_for_another_command_s_result_says_where_it_is():
    report = gradcli.jacobian("[x, x**2]", x=1)
    with pytest.raises(AttributeError, match=r"a jacobian report has no gradient: its results are report.jacobian"):
        report.gradient  # noqa: B018 - the property raises


def test_a_tensor_from_a_result_is_a_copy():
    report = gradcli.grad("sum(w**2)", w=np.array([1.0, 2.0]))
    report.gradient["w"].tensor.add_(100)
    assert report.gradient["w"].array.tolist() == [2.0, 4.0]


@pytest.mark.parametrize("value, message", [
    ([[1, 2], [3]], "in the value of x: the list is ragged: its rows have different lengths"),
    (np.array([True, False]), "in the value of x: the numpy value holds true/false values"),
    (torch.tensor([1 + 2j]), "in the value of x: the tensor holds complex numbers"),
    (float("nan"), "in the value of x: nan is not a finite number"),
    (np.array([1.0, np.inf]), "x=<numpy value, shape [2]>: 1 value(s) are not finite numbers"),
    (torch.tensor([np.nan]), "x=<torch tensor, shape [1]>: 1 value(s) are not finite numbers"),
    (object(), "the value of x is of type object, not a number or an array"),
    ("1..2", "in the value of x: 1..2 is not a value: a range is START:STOP:COUNT"),
])
def test_a_bad_value_is_an_error_naming_the_variable(value, message):
    with pytest.raises(GradcliError) as info:
        gradcli.grad("sum(x)", x=value)
    assert info.value.message == message


def test_a_large_array_is_refused_by_max_elements_before_it_is_copied():
    with pytest.raises(GradcliError, match="has 1,000 elements .* the limit is 100"):
        gradcli.grad("sum(x)", x=np.zeros(1000), max_elements=100)


def test_minimize_takes_a_tensor_and_leaves_it_alone():
    start = torch.tensor([3.0], dtype=torch.float64)
    report = gradcli.minimize("sum((w - 1)**2)", w=start, lr=0.25, steps=50)
    assert report.status == "ok" and report.dtype == "float64"
    assert abs(report.end.parameters["w"].array[0] - 1.0) < 1e-6
    assert start.tolist() == [3.0]


# ------------------------------------------------------------------ in a notebook

def test_a_report_shows_its_table_and_verdict_in_a_notebook():
    report = gradcli.grad("sin(x)*y", x=0.5, y=np.float64(2.0))
    page = report._repr_html_()
    assert page is not None and page.startswith('<pre class="gradcli-report" data-status="ok"')
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    terminal = io.StringIO()
    render.render(report, "table", terminal, terminal)
    assert text == terminal.getvalue()  # the table the terminal shows, notes and verdict included
    assert "symbolic derivative" in text and "✓ agree" in text and "autograd agrees with sympy" in text


def test_a_failed_check_shows_as_failed_in_a_notebook():
    report = gradcli.grad("mean((t - p)**2)", p="[1,2,3]", t="[2,3,4]", wrt="p", dtype="float16", rtol=0, atol=0)
    assert report.status == "failed"
    page = report._repr_html_()
    assert page is not None and 'data-status="failed"' in page and "✗ disagree" in html.unescape(page)


def test_text_that_looks_like_html_is_escaped():
    page = gradcli.grad("max(x, 0)", x=-1)._repr_html_()
    assert page is not None
    stripped = re.sub(r"<pre[^>]*>|</pre>", "", page)
    assert "<" not in stripped and ">" not in stripped  # every < > in the text is escaped


def test_diff_and_functions_render_in_a_notebook_without_torch():
    page = gradcli.diff("x**3", ["x"])._repr_html_()
    assert page is not None and "3⋅x" in html.unescape(page)
    page = gradcli.list_functions("huber")._repr_html_()
    assert page is not None and "huber(input, target, delta=1)" in html.unescape(page)


# ------------------------------------------------------------------ the README's example

def test_the_readme_python_example_runs_as_shown():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Python API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    test = doctest.DocTestParser().get_doctest(block, {}, "README.md: Python API", "README.md", 0)
    assert len(test.examples) >= 8
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries == len(test.examples)
